// Reconciliation against a real `node dist/cli.js serve --backend devmapper`:
// the server is killed with SIGKILL in the middle of Prepare, Commit and
// Remove (at exact steps, through the devmapper:* points of TSBLOCK_FAULT_POINTS), killed while idle,
// and its pool device is removed by hand (what a reboot does); after every
// restart the committed snapshots must all be there with their content, and
// at the end no dm device, loop device or thin id may be left that no
// snapshot owns (the pool's metadata is read back with thin_dump).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { listDevices, removeDevice } from '../../src/sys/dm.js';
import { mountOne, releaseMount } from '../../src/sys/mount.js';
import { attachLoop, detachLoop } from '../../src/sys/loop.js';
import { FAULT_ENV, type FaultPointName } from '../../src/base/faults.js';
import { leaksUnder } from '../helpers/leaks.js';
import { KIND_ACTIVE, KIND_COMMITTED } from '../helpers/client.js';
import { HAS_DM, SKIP_REASON, removeDevicesWithPrefix, scratchDir } from './helpers.js';
import { CLI, Server, SnapClient, type MountMsg } from './serve-helpers.js';

const HAS_CLI = existsSync(CLI);
const skipReason = !HAS_DM ? SKIP_REASON : !HAS_CLI ? 'dist/cli.js is not built (npm run build)' : '';

describe.skipIf(skipReason !== '')(`devmapper reconciliation with a real server${skipReason ? ` (skipped: ${skipReason})` : ''}`, { timeout: 600_000 }, () => {
  let dir = '';
  let root = '';
  let socket = '';
  let log = '';
  let pool = '';
  let server: Server | undefined;
  let client: SnapClient | undefined;
  let views = 0;
  /** expected is what every committed snapshot must hold: name → file → content. */
  const expected = new Map<string, Record<string, string>>();

  const start = async (crashAt?: FaultPointName): Promise<SnapClient> => {
    client?.close();
    server = await Server.start({ root, socket, log, env: { [FAULT_ENV]: crashAt ?? '' } });
    client = new SnapClient(socket);
    return client;
  };

  // withMounted mounts a snapshot's mounts (as containerd would), runs fn, unmounts.
  const withMounted = <T>(mounts: MountMsg[], fn: (d: string) => T): T => {
    expect(mounts).toHaveLength(1);
    expect(mounts[0]!.source).toMatch(/^\/dev\/mapper\/.+-snap-\d+$/);
    if (!pool) pool = mounts[0]!.source.slice('/dev/mapper/'.length).replace(/-snap-\d+$/, '');
    const target = join(dir, `mnt-${views++}`);
    mkdirSync(target);
    const h = mountOne({ type: mounts[0]!.type, source: mounts[0]!.source, options: mounts[0]!.options }, target);
    try {
      return fn(target);
    } finally {
      releaseMount(h);
      rmSync(target, { recursive: true, force: true });
    }
  };

  const layer = async (c: SnapClient, name: string, parent: string, files: Record<string, string>): Promise<void> => {
    const key = `active-${name}`;
    withMounted(await c.prepare(key, parent), (d) => {
      for (const [f, v] of Object.entries(files)) writeFileSync(join(d, f), v);
    });
    await c.commit(name, key);
    expected.set(name, { ...(parent ? expected.get(parent) : {}), ...files });
  };

  // checkCommitted reads every committed snapshot back through a View.
  const checkCommitted = async (c: SnapClient): Promise<void> => {
    const infos = await c.list();
    const committed = infos.filter((i) => i.kind === KIND_COMMITTED).map((i) => i.name);
    expect(committed.sort()).toEqual([...expected.keys()].sort());
    for (const [name, files] of expected) {
      const key = `check-${name}-${views}`;
      const seen = withMounted(await c.view(key, name), (d) => {
        const out: Record<string, string> = {};
        for (const f of readdirSync(d)) out[f] = readFileSync(join(d, f), 'utf8');
        return out;
      });
      expect(seen, `content of ${name}`).toEqual(files);
      await c.remove(key);
    }
  };

  // crashDuring starts a server that dies at `point`, runs op, and checks it died by SIGKILL.
  const crashDuring = async (point: FaultPointName, op: (c: SnapClient) => Promise<unknown>): Promise<void> => {
    const c = await start(point);
    await expect(op(c)).rejects.toThrow();
    const { signal } = await server!.exited;
    expect(signal, `server should have died at ${point}`).toBe('SIGKILL');
  };

  // poolDevices lists the dm devices of the server's pool (snapshots and base).
  const poolDevices = (): string[] => listDevices().map((d) => d.name).filter((n) => pool !== '' && n.startsWith(`${pool}-`));

  beforeAll(() => {
    dir = scratchDir('tsblock-reconcile-');
    root = join(dir, 'root');
    socket = join(dir, 'tsblock.sock');
    log = join(dir, 'server.log');
    console.log(`reconcile: server log ${log}`);
  });

  afterAll(async () => {
    client?.close();
    await server?.kill9();
    if (pool) await removeDevicesWithPrefix(pool);
    const left = leaksUnder(dir);
    // The guest's /var/tmp is thrown away: keep the server log where run.sh collects logs.
    if (existsSync(log) && process.env.TSBLOCK_VM_OUT) copyFileSync(log, join(process.env.TSBLOCK_VM_OUT, 'reconcile-server.log'));
    rmSync(dir, { recursive: true, force: true });
    expect(left).toEqual([]);
  });

  it('builds a committed chain, then survives kill -9 while idle', async () => {
    const c = await start();
    await layer(c, 'c1', '', { a: 'one' });
    await layer(c, 'c2', 'c1', { b: 'two' });
    // An active snapshot left mounted-from-nowhere (a container that was running).
    await c.prepare('running', 'c2');
    await server!.kill9();
    const c2 = await start();
    await checkCommitted(c2);
    expect((await c2.stat('running')).kind).toBe(KIND_ACTIVE);
    await server!.kill9();
  });

  it('kill -9 in the middle of Prepare (thin made, row trying): the half-made snapshot is gone after restart', async () => {
    await crashDuring('devmapper:create:after-thin', (c) => c.prepare('half', 'c2'));
    const c = await start();
    await expect(c.stat('half')).rejects.toThrow();
    await checkCommitted(c);
    // The key is free again.
    withMounted(await c.prepare('half', 'c2'), (d) => expect(readFileSync(join(d, 'b'), 'utf8')).toBe('two'));
    await c.remove('half');
    await server!.kill9();
  });

  it('kill -9 in the middle of Commit (before deactivate, and after the backend): the active snapshot commits after restart', async () => {
    await crashDuring('devmapper:commit:before-deactivate', async (c) => {
      withMounted(await c.prepare('a3', 'c2'), (d) => writeFileSync(join(d, 'x'), 'three'));
      await c.commit('c3', 'a3');
    });
    await crashDuring('devmapper:commit:after-backend', (c) => c.commit('c3', 'a3'));
    const c = await start();
    expect((await c.stat('a3')).kind).toBe(KIND_ACTIVE);
    withMounted(await c.mounts('a3'), (d) => expect(readFileSync(join(d, 'x'), 'utf8')).toBe('three'));
    await c.commit('c3', 'a3');
    expected.set('c3', { ...expected.get('c2'), x: 'three' });
    await checkCommitted(c);
    await server!.kill9();
  });

  it('kill -9 in the middle of Remove (before and after the thin id is deleted): nothing comes back, nothing leaks', async () => {
    await crashDuring('devmapper:remove:before-delete-thin', async (c) => {
      await c.prepare('gone1', 'c3');
      await c.remove('gone1');
    });
    let c = await start();
    await expect(c.stat('gone1')).rejects.toThrow();
    await checkCommitted(c);
    await server!.kill9();
    await crashDuring('devmapper:remove:after-delete-thin', async (cc) => {
      await cc.prepare('gone2', 'c1');
      await cc.remove('gone2');
    });
    c = await start();
    await expect(c.stat('gone2')).rejects.toThrow();
    await checkCommitted(c);
    await server!.kill9();
  });

  it('comes back after its pool device and every thin device were removed by hand (a reboot)', async () => {
    expect(poolDevices().length).toBeGreaterThan(0);
    // Children first; the owned pool's loop devices auto-clear with it.
    for (const n of poolDevices().filter((x) => x !== pool)) await removeDevice(n);
    await removeDevice(pool);
    expect(poolDevices()).toEqual([]);
    expect(listDevices().some((d) => d.name === pool)).toBe(false);
    const c = await start();
    await checkCommitted(c);
    withMounted(await c.mounts('running'), (d) => expect(readFileSync(join(d, 'b'), 'utf8')).toBe('two'));
    await c.remove('running');
    const { signal, code } = await server!.stop();
    expect({ signal, code }).toEqual({ signal: null, code: 0 });
    server = undefined;

    // Nothing of the pool is left in the kernel, no loop device on its files...
    expect(poolDevices()).toEqual([]);
    expect(listDevices().some((d) => d.name === pool)).toBe(false);
    expect(leaksUnder(dir)).toEqual([]);
    // ...and the pool holds exactly the thin ids the store owns: one per live snapshot, plus the base.
    const db = new Database(join(root, 'metadata.db'), { readonly: true });
    let rows: { thin_id: number; snapshot_id: number; state: string }[];
    let live: number[];
    try {
      rows = db.prepare('SELECT thin_id, snapshot_id, state FROM dm_devices ORDER BY thin_id').all() as typeof rows;
      live = (db.prepare('SELECT id FROM snapshots ORDER BY id').all() as { id: number }[]).map((r) => r.id);
    } finally {
      db.close();
    }
    expect(rows.every((r) => r.state === 'ready')).toBe(true);
    expect(rows.map((r) => r.snapshot_id).filter((id) => id !== 0).sort((a, b) => a - b)).toEqual(live);
    expect(live).toHaveLength(expected.size);
    // thin_dump opens with O_DIRECT, which tmpfs files refuse: read through a loop device.
    const metaLoop = attachLoop(join(root, 'devmapper', 'metadata'), { readOnly: true });
    let dump;
    try {
      dump = await execa('thin_dump', [metaLoop.path]);
    } finally {
      detachLoop(metaLoop.path);
    }
    const poolIds = [...dump.stdout.matchAll(/<device dev_id="(\d+)"/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
    expect(poolIds).toEqual(rows.map((r) => r.thin_id));
  });
});
