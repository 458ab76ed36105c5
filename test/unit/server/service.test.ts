// The gRPC edge under test: real grpc-js server on a unix socket, real client
// built from the same proto files, over the real snapshotter core (real
// SQLite store in a temp dir) with the in-memory backend below it.

import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  NotImplementedError,
  ResourceExhaustedError,
  UnavailableError,
} from '../../../src/errdefs.js';
import { CoreSnapshotter } from '../../../src/core/snapshotter.js';
import { UNIX_PATH_MAX, listenUnix, shutdownServer } from '../../../src/server/listen.js';
import { snapshotsClientConstructor } from '../../../src/proto/load.js';
import { serveInProcess, type InProcessServer } from '../../helpers/server.js';
import { Kind, type Snapshotter, type Usage } from '../../../src/snapshots/snapshotter.js';
import { MetaStore } from '../../../src/storage/metastore.js';
import { MemoryBackend } from '../../fakes/memory-backend.js';

/**
 * UsageBackend is the in-memory backend with a usage beyond 2^32, to check
 * the 64-bit fields; the core above it is the real one.
 */
class UsageBackend extends MemoryBackend {
  override async usage(): Promise<Usage> {
    return { size: 2 ** 40 + 5, inodes: 42 };
  }
}

/**
 * failing wraps the real core so that the next call throws `failWith`
 * (errors a backend or the kernel would raise), and counts Cleanup calls.
 */
function failing(core: CoreSnapshotter): Snapshotter & { failWith?: Error; cleanups: number } {
  const state = { failWith: undefined as Error | undefined, cleanups: 0 };
  return new Proxy(core as unknown as Snapshotter & typeof state, {
    get(target, prop, receiver) {
      if (prop === 'failWith' || prop === 'cleanups') return state[prop];
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (prop === 'cleanup') state.cleanups++;
        const e = state.failWith;
        state.failWith = undefined;
        if (e) return Promise.reject(e);
        return v.apply(target, args);
      };
    },
    set(_target, prop, value) {
      if (prop === 'failWith') state.failWith = value;
      return true;
    },
  });
}

type Client = grpc.Client & Record<string, any>;

function call<T = any>(client: Client, method: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](req, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

function list(client: Client, req: object): Promise<{ messages: any[][]; infos: any[] }> {
  return new Promise((resolve, reject) => {
    const messages: any[][] = [];
    const stream = client.List(req) as grpc.ClientReadableStream<any>;
    stream.on('data', (m) => messages.push(m.info));
    stream.on('error', reject);
    stream.on('end', () => resolve({ messages, infos: messages.flat() }));
  });
}

async function expectCode(p: Promise<unknown>, code: grpc.status, details?: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  expect(err, 'call should have failed').toBeDefined();
  expect(grpc.status[err!.code]).toBe(grpc.status[code]);
  if (details) expect(err!.details).toMatch(details);
}

let dir: string;
let server: grpc.Server;
let served: InProcessServer | undefined;
let client: Client;
let core: CoreSnapshotter;
let backend: UsageBackend;
let sn: ReturnType<typeof failing>;
let logged: any[];
let socket: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsblock-svc-'));
  socket = join(dir, 'run', 'tsblock.sock');
  backend = new UsageBackend();
  core = await CoreSnapshotter.open({ store: new MetaStore(join(dir, 'metadata.db')), backend });
  sn = failing(core);
  logged = [];
  served = await serveInProcess(sn, socket, { log: (l) => logged.push(l) });
  server = served.server;
  const Ctor = snapshotsClientConstructor();
  client = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure()) as Client;
});

afterEach(async () => {
  client?.close();
  await served?.close(1000);
  served = undefined;
  await core?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('Snapshots service over a unix socket', () => {
  it('serves the socket with mode 0660 in a created parent dir', async () => {
    const st = await stat(socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    expect((await stat(join(dir, 'run'))).mode & 0o777).toBe(0o755);
  });

  it('runs the prepare → commit → view → remove lifecycle', async () => {
    const labels = { 'containerd.io/gc.root': 'x', 'containerd.io/snapshot.ref': 'sha256:abc' };
    const p = await call(client, 'Prepare', { snapshotter: 'tsblock', key: 'extract-1', parent: '', labels });
    expect(p.mounts).toEqual([{ type: 'ext4', source: 'mem:1', target: '', options: ['rw'] }]);

    const m = await call(client, 'Mounts', { snapshotter: 'tsblock', key: 'extract-1' });
    expect(m.mounts).toEqual(p.mounts);

    await call(client, 'Commit', { snapshotter: 'tsblock', name: 'layer-1', key: 'extract-1', labels: { extra: 'y' } });
    const st = await call(client, 'Stat', { snapshotter: 'tsblock', key: 'layer-1' });
    // As containerd's metastore: the committed snapshot carries Commit's labels.
    expect(st.info).toMatchObject({ name: 'layer-1', parent: '', kind: Kind.Committed, labels: { extra: 'y' } });

    const v = await call(client, 'View', { snapshotter: 'tsblock', key: 'view-1', parent: 'layer-1', labels: {} });
    expect(v.mounts[0].options).toEqual(['ro']);
    expect((await call(client, 'Stat', { key: 'view-1' })).info).toMatchObject({ kind: Kind.View, parent: 'layer-1' });

    await expectCode(call(client, 'Remove', { key: 'layer-1' }), grpc.status.FAILED_PRECONDITION, /with child/);
    await call(client, 'Remove', { snapshotter: 'tsblock', key: 'view-1' });
    await call(client, 'Remove', { snapshotter: 'tsblock', key: 'layer-1' });
    expect(core.listRows()).toEqual([]);
    expect(backend.stored.size).toBe(0);
  });

  it('round-trips timestamps with nanoseconds', async () => {
    const t0 = Date.now() / 1000;
    await call(client, 'Prepare', { key: 'a', parent: '' });
    const { info } = await call(client, 'Stat', { key: 'a' });
    const direct = await core.stat('a');
    expect(info.created_at).toEqual({ seconds: direct.created.seconds, nanos: direct.created.nanos });
    expect(info.created_at.nanos % 1000).toBe(0);
    expect(info.created_at.nanos).toBeGreaterThan(0);
    expect(info.created_at.seconds).toBeGreaterThanOrEqual(Math.floor(t0));
    expect(info.updated_at).toEqual(info.created_at);
  });

  it('round-trips many and long labels', async () => {
    const labels: Record<string, string> = { 'containerd.io/gc.ref.snapshot.tsblock/0': 'é∂ unicode', empty: '' };
    for (let i = 0; i < 50; i++) labels[`k${i}`] = 'v'.repeat(4000);
    await call(client, 'Prepare', { key: 'l', parent: '', labels });
    // An empty value is no label, as in containerd's metastore (boltutil.WriteLabels).
    const { empty: _dropped, ...kept } = labels;
    expect((await call(client, 'Stat', { key: 'l' })).info.labels).toEqual(kept);
  });

  it('ignores whatever the snapshotter field says', async () => {
    await call(client, 'Prepare', { snapshotter: 'something-else', key: 'a', parent: '' });
    await call(client, 'Stat', { snapshotter: '', key: 'a' });
    await call(client, 'Usage', { snapshotter: 'devmapper', key: 'a' });
    expect(logged).toEqual([]);
  });

  it('reports usage as 64-bit numbers', async () => {
    await call(client, 'Prepare', { key: 'a', parent: '' });
    expect(await call(client, 'Usage', { key: 'a' })).toEqual({ size: 2 ** 40 + 5, inodes: 42 });
  });

  it('updates labels with and without an update mask', async () => {
    await call(client, 'Prepare', { key: 'a', parent: '', labels: { keep: '1', drop: '2' } });
    const base = (await call(client, 'Stat', { key: 'a' })).info;

    const masked = await call(client, 'Update', {
      info: { ...base, labels: { added: '3' } },
      update_mask: { paths: ['labels.added', 'labels.drop'] },
    });
    expect(masked.info.labels).toEqual({ keep: '1', added: '3' });
    const ns = (t: { seconds: string | number; nanos: number }) => BigInt(t.seconds) * 1_000_000_000n + BigInt(t.nanos);
    expect(ns(masked.info.updated_at)).toBeGreaterThan(ns(base.updated_at));
    expect(masked.info.created_at).toEqual(base.created_at);

    // No mask: the labels are replaced, as containerd's metastore does.
    const unmasked = await call(client, 'Update', { info: { name: 'a', labels: { more: '4' } } });
    expect(unmasked.info.labels).toEqual({ more: '4' });
    const whole = await call(client, 'Update', { info: { name: 'a', labels: { only: '5' } }, update_mask: { paths: ['labels'] } });
    expect(whole.info.labels).toEqual({ only: '5' });

    await expectCode(call(client, 'Update', { info: { name: 'a' }, update_mask: { paths: ['parent'] } }), grpc.status.INVALID_ARGUMENT);
    await expectCode(call(client, 'Update', {}), grpc.status.INVALID_ARGUMENT, /info/);
    await expectCode(call(client, 'Update', { info: { name: 'nope' } }), grpc.status.NOT_FOUND);
  });

  it('runs Cleanup', async () => {
    expect(await call(client, 'Cleanup', { snapshotter: 'tsblock' })).toEqual({});
    expect(sn.cleanups).toBe(1);
  });

  it('streams List in batches of at most 100', async () => {
    for (let i = 0; i < 250; i++) await sn.prepare(`s${String(i).padStart(3, '0')}`, '');
    const { messages, infos } = await list(client, { snapshotter: 'x', filters: [] });
    expect(infos).toHaveLength(250);
    expect(messages.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...messages.map((m) => m.length))).toBeLessThanOrEqual(100);
    expect(new Set(infos.map((i) => i.name)).size).toBe(250);
    expect(infos[0]).toMatchObject({ kind: Kind.Active, created_at: { nanos: expect.any(Number) } });
  });

  it('keeps each List message well under 4 MiB when labels are big', async () => {
    const labels: Record<string, string> = {};
    for (let i = 0; i < 4; i++) labels[`label-${i}`] = 'x'.repeat(4000);
    for (let i = 0; i < 400; i++) await sn.prepare(`big${i}`, '', { labels });
    const { messages, infos } = await list(client, {});
    expect(infos).toHaveLength(400);
    for (const m of messages) {
      expect(Buffer.byteLength(JSON.stringify(m))).toBeLessThan(1.1 * 1024 * 1024);
    }
    expect(messages.length).toBeGreaterThan(4); // 400 × 16 KB needs > 6 messages of ≤ 1 MiB
  });

  it('applies List filters (OR of strings, AND within one)', async () => {
    await sn.prepare('a', '', { labels: { l: '1' } });
    await sn.commit('p', 'a');
    await sn.prepare('b', 'p', { labels: { l: '2' } });
    await sn.view('v', 'p');
    const names = async (filters: string[]) => (await list(client, { filters })).infos.map((i) => i.name).sort();
    expect(await names(['kind==active', 'kind==view'])).toEqual(['b', 'v']);
    expect(await names(['parent==p,labels.l==2'])).toEqual(['b']);
    expect(await names([])).toEqual(['b', 'p', 'v']);
    expect(await names(['name==nothing'])).toEqual([]);
  });

  it('fails List with INVALID_ARGUMENT on a bad filter and logs it', async () => {
    await sn.prepare('a', '');
    await expectCode(list(client, { filters: ['name==='] }), grpc.status.INVALID_ARGUMENT, /unsupported operator/);
    expect(logged).toEqual([expect.objectContaining({ rpc: 'List', code: 'INVALID_ARGUMENT', key: 'name===' })]);
  });

  it('maps snapshotter errors to the right gRPC codes', async () => {
    await sn.prepare('a', '');
    await expectCode(call(client, 'Stat', { key: 'missing' }), grpc.status.NOT_FOUND, /missing: not found/);
    await expectCode(call(client, 'Prepare', { key: 'a', parent: '' }), grpc.status.ALREADY_EXISTS);
    await expectCode(call(client, 'Prepare', { key: 'b', parent: 'a' }), grpc.status.INVALID_ARGUMENT, /not committed/);
    await expectCode(call(client, 'Prepare', { key: 'b', parent: 'nope' }), grpc.status.NOT_FOUND);
    await expectCode(call(client, 'Commit', { name: 'c', key: 'a' }).then(() => call(client, 'Commit', { name: 'd', key: 'c' })), grpc.status.FAILED_PRECONDITION, /not active/);
    await expectCode(call(client, 'Prepare', { key: '', parent: '' }), grpc.status.INVALID_ARGUMENT, /key must not be empty/);
    await expectCode(call(client, 'Commit', { name: '', key: 'a' }), grpc.status.INVALID_ARGUMENT, /name/);
    const injected: Array<[Error, grpc.status]> = [
      [new UnavailableError('closing'), grpc.status.UNAVAILABLE],
      [new ResourceExhaustedError('pool full'), grpc.status.RESOURCE_EXHAUSTED],
      [new NotImplementedError('nope'), grpc.status.UNIMPLEMENTED],
      [new TypeError('bug'), grpc.status.UNKNOWN],
    ];
    for (const [err, code] of injected) {
      sn.failWith = err;
      await expectCode(call(client, 'Mounts', { key: 'a' }), code, new RegExp(err.message));
    }
    sn.failWith = new UnavailableError('closing');
    await expectCode(list(client, {}), grpc.status.UNAVAILABLE);
    sn.failWith = new ResourceExhaustedError('pool full');
    await expectCode(call(client, 'Cleanup', {}), grpc.status.RESOURCE_EXHAUSTED);
  });

  it('logs one line per failure with the RPC, the key and the error', async () => {
    await expectCode(call(client, 'Stat', { key: 'missing' }), grpc.status.NOT_FOUND);
    await call(client, 'Prepare', { key: 'ok', parent: '' });
    await expectCode(call(client, 'Commit', { name: 'c', key: 'missing' }), grpc.status.NOT_FOUND);
    expect(logged).toEqual([
      { msg: 'Stat failed', rpc: 'Stat', key: 'missing', code: 'NOT_FOUND', error: 'snapshot missing: not found' },
      { msg: 'Commit failed', rpc: 'Commit', key: 'missing -> c', code: 'NOT_FOUND', error: 'failed to get active snapshot "missing": not found' },
    ]);
  });
});

describe('listenUnix', () => {
  it('refuses a socket another server answers on', async () => {
    const other = new grpc.Server();
    try {
      await expect(listenUnix(other, socket)).rejects.toThrow(UnavailableError);
      await expect(listenUnix(other, socket)).rejects.toThrow(/another server is listening/);
      // The live server still works.
      await call(client, 'Cleanup', {});
    } finally {
      other.forceShutdown();
    }
  });

  it('replaces a stale socket left by a dead process', async () => {
    const stale = join(dir, 'stale.sock');
    // A process that dies by SIGKILL while listening leaves its socket file behind.
    const script = `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`;
    const res = spawnSync(process.execPath, ['-e', script], { timeout: 10_000 });
    expect(res.signal).toBe('SIGKILL');
    expect((await stat(stale)).isSocket()).toBe(true);
    const srv = await serveInProcess(core, stale, { listen: { mode: 0o600, gid: process.getgid!() } });
    try {
      expect((await stat(stale)).mode & 0o777).toBe(0o600);
      const Ctor = snapshotsClientConstructor();
      const c = new Ctor(`unix://${stale}`, grpc.credentials.createInsecure()) as Client;
      try {
        await expectCode(call(c, 'Stat', { key: 'x' }), grpc.status.NOT_FOUND);
      } finally {
        c.close();
      }
    } finally {
      await srv.close(500);
    }
  });

  it('binds sockets whose path is near the 107-byte limit (the private bind path would not fit)', async () => {
    // [path length, basename length]: a long name (the private path is the
    // shorter one), then a long dir with a short name, where the private
    // path (dir + 10 bytes) no longer fits and the socket is bound in place.
    for (const [len, nameLen] of [[UNIX_PATH_MAX, 40], [UNIX_PATH_MAX - 5, 6], [UNIX_PATH_MAX, 6]] as const) {
      const base = join(dir, 'd'.repeat(len - nameLen - 1 - Buffer.byteLength(dir) - 1));
      const p = join(base, 'n'.repeat(nameLen));
      expect(Buffer.byteLength(p)).toBe(len);
      const srv = await serveInProcess(core, p);
      try {
        expect((await stat(p)).mode & 0o777).toBe(0o660);
        const Ctor = snapshotsClientConstructor();
        const c = new Ctor(`unix://${p}`, grpc.credentials.createInsecure()) as Client;
        try {
          await expectCode(call(c, 'Stat', { key: 'x' }), grpc.status.NOT_FOUND);
        } finally {
          c.close();
        }
        // no private bind dir left beside it
        expect((await readdir(base)).filter((n) => n.startsWith('.'))).toEqual([]);
      } finally {
        await srv.close(500);
        await rm(p, { force: true });
      }
    }
  });

  it('refuses to replace a file that is not a socket', async () => {
    const file = join(dir, 'not-a-socket');
    await writeFile(file, 'precious');
    const srv = new grpc.Server();
    try {
      await expect(listenUnix(srv, file)).rejects.toThrow(/not a socket/);
      expect((await stat(file)).isFile()).toBe(true);
    } finally {
      srv.forceShutdown();
    }
  });
});

describe('shutdownServer', () => {
  it('returns promptly when nothing is in flight', async () => {
    const t0 = Date.now();
    await shutdownServer(server, 5000);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
