// The operator verbs on the devmapper backend, in the VM, against a real
// `tsblock serve --backend devmapper` (owned 1G pool, 64M devices), every
// one with --json parsed: ls (also as the built binary), info (the
// /dev/mapper device), usage (with the pool's data/metadata use), rm
// through the daemon, gc (dry run, then reclaiming an orphan thin device
// through the daemon), doctor (dm-thin and a healthy pool), pool status;
// pool create on a fresh root; and after the daemon stopped, rm / ls /
// usage / gc / import / diff under the root's lock (the CLI brings the pool
// up and takes it down again).

import { createServer } from 'node:net';
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultOwnedPoolName } from '../../src/backends/devmapper/config.js';
import { applyLayer } from '../../src/apply/applier.js';
import { LAYER_TAR } from '../../src/apply/export.js';
import { diffCommand } from '../../src/cli/commands/diff.js';
import { doctorCommand } from '../../src/cli/commands/doctor.js';
import { importCommand } from '../../src/cli/commands/import.js';
import { gcCommand } from '../../src/cli/commands/gc.js';
import { infoCommand } from '../../src/cli/commands/info.js';
import { lsCommand } from '../../src/cli/commands/ls.js';
import { poolCommand } from '../../src/cli/commands/pool.js';
import { rmCommand } from '../../src/cli/commands/rm.js';
import { usageCommand } from '../../src/cli/commands/usage.js';
import { NotFoundError } from '../../src/errdefs.js';
import { activate, deviceInfo, listDevices } from '../../src/sys/dm.js';
import { createThin, deleteThin, thinTable } from '../../src/sys/dm-thin.js';
import { withTempMount } from '../../src/sys/mount.js';
import { loopsUnder } from '../helpers/leaks.js';
import { buildTar, diffIdOf, file } from '../fixtures/layers/build.js';
import { writeLayoutArchive } from '../fixtures/layers/oci.js';
import { capture, parseProm, sample } from '../integration/cli/helpers.js';
import { activeSnapDevices, opsSkipReason, startDmServer, stopDmServer, waitFor, type DmServer } from './ops-helpers.js';
import { removeDevicesWithPrefix } from './helpers.js';
import { CLI } from './serve-helpers.js';

const MiB = 1024 ** 2;

/** freePort asks the kernel for a loopback port nobody holds. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
const why = opsSkipReason ? ` (skipped: ${opsSkipReason})` : '';
if (opsSkipReason) console.warn(`devmapper CLI tests skipped: ${opsSkipReason}`);

/** run calls a verb with the server's flags and returns exit code and parsed JSON stdout. */
async function run(verb: (argv: string[], io: ReturnType<typeof capture>['io']) => Promise<number>, argv: string[]): Promise<{ code: number; json: any; err: string }> {
  const c = capture();
  const code = await verb([...argv, '--json'], c.io);
  return { code, json: JSON.parse(c.out()), err: c.err() };
}

describe.skipIf(opsSkipReason !== '')(`tsblock CLI verbs on devmapper${why}`, { timeout: 600_000 }, () => {
  let s: DmServer | undefined;
  const srv = (): DmServer => s!;
  const f = () => srv().flags;
  const snapDev = new RegExp('^/dev/mapper/tsblock-[0-9a-f]{8}-snap-\\d+$');

  let metricsPort = 0;
  beforeAll(async () => {
    metricsPort = await freePort();
    s = await startDmServer('tsblock-dmcli-', ['--metrics-address', `127.0.0.1:${metricsPort}`]);
    const c = s.client;
    const write = async (key: string, parent: string, name: string, bytes: number, labels: Record<string, string> = {}) => {
      const m = await c.prepare(key, parent, labels);
      await withTempMount(m, async (mnt) => writeFileSync(join(mnt, name), Buffer.alloc(bytes, 1)), { parent: s!.dir });
    };
    await write('extract-1', '', 'layer1.bin', 2 * MiB);
    await c.commit('layer-1', 'extract-1', { 'containerd.io/snapshot.ref': 'sha256:one' });
    await write('extract-2', 'layer-1', 'layer2.bin', 1 * MiB);
    await c.commit('layer-2', 'extract-2');
    await write('container-1', 'layer-2', 'rw.bin', 3 * MiB, { 'containerd.io/gc.root': 'x' });
    await c.view('view-1', 'layer-1');
  }, 600_000);

  afterAll(async () => {
    const leaks = await stopDmServer(s);
    expect(leaks).toEqual([]);
  }, 300_000);

  it('ls --json lists kind, parent, size, usage and the /dev/mapper device; the built binary agrees', async () => {
    const { code, json } = await run(lsCommand, f());
    expect(code).toBe(0);
    const by = Object.fromEntries((json as any[]).map((e) => [e.key, e]));
    expect(Object.keys(by).sort()).toEqual(['container-1', 'layer-1', 'layer-2', 'view-1']);
    expect(by['layer-2']).toMatchObject({ parent: 'layer-1', kind: 'committed', size: 64 * MiB, snapshotter: 'tsblock', storage: expect.stringMatching(snapDev) });
    expect(by['container-1']).toMatchObject({ parent: 'layer-2', kind: 'active', size: 64 * MiB, storage: expect.stringMatching(snapDev) });
    // A view reads its own read-only thin snapshot of the parent.
    expect(by['view-1']).toMatchObject({ parent: 'layer-1', kind: 'view', usage: 0 });
    expect(new Set(Object.values(by).map((e: any) => e.storage)).size).toBe(4);
    // Usage is the thin device's mapped space beyond its parent's: about what was written.
    expect(by['layer-1'].usage).toBeGreaterThanOrEqual(2 * MiB);
    expect(by['layer-1'].usage).toBeLessThan(24 * MiB);
    expect(by['layer-2'].usage).toBeGreaterThanOrEqual(1 * MiB);
    expect(by['layer-2'].usage).toBeLessThan(by['layer-1'].usage);
    expect(by['container-1'].usage).toBeGreaterThanOrEqual(3 * MiB); // measured now by the daemon (Usage RPC)
    expect(by['container-1'].usage).toBeLessThan(24 * MiB);
    // Active devices have a node; committed ones are deactivated until mounted.
    expect(existsSync(by['container-1'].storage)).toBe(true);
    expect(existsSync(by['layer-2'].storage)).toBe(false);

    // The host's TSBLOCK_* settings must not reach the child.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TSBLOCK_')));
    const bin = await execa(process.execPath, [CLI, 'ls', '--json', ...f()], { env, extendEnv: false, reject: false });
    expect(bin.exitCode, bin.stderr).toBe(0);
    expect((JSON.parse(bin.stdout) as any[]).map((e) => [e.key, e.kind, e.storage])).toEqual((json as any[]).map((e) => [e.key, e.kind, e.storage]));
  });

  it('info shows the device, chain and labels; NotFound for an unknown key', async () => {
    const { code, json } = await run(infoCommand, ['container-1', ...f()]);
    expect(code).toBe(0);
    expect(json).toMatchObject({ key: 'container-1', kind: 'active', chain: ['layer-2', 'layer-1'], labels: { 'containerd.io/gc.root': 'x' }, storage: expect.stringMatching(snapDev) });
    expect(statSync(json.storage).isBlockDevice()).toBe(true);
    const t = capture();
    expect(await infoCommand(['layer-1', ...f()], t.io)).toBe(0);
    expect(t.out()).toMatch(/^Storage:\s+\/dev\/mapper\/tsblock-[0-9a-f]{8}-snap-\d+$/m);
    expect(t.out()).toMatch(/^Snapshotter:\s+tsblock \(devmapper, /m);
    expect(t.out()).toContain('containerd.io/snapshot.ref=sha256:one');
    await expect(infoCommand(['nope', ...f()], capture().io)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('usage reports each snapshot, the total, the root filesystem and the pool', async () => {
    const { code, json } = await run(usageCommand, f());
    expect(code).toBe(0);
    const [u] = json;
    expect(u).toMatchObject({ snapshotter: 'tsblock', backend: 'devmapper' });
    expect(u.totalBytes).toBe(u.snapshots.reduce((n: number, x: any) => n + x.usage, 0));
    expect(u.totalBytes).toBeGreaterThanOrEqual(6 * MiB);
    expect(u.root.totalBytes).toBeGreaterThan(0);
    expect(u.poolError).toBeUndefined();
    expect(u.pool).toMatchObject({ pool: srv().pool, dataTotalBytes: 1024 * MiB, metadataTotalBytes: 64 * MiB, mode: 'rw', needsCheck: false, failed: false });
    // The pool holds at least what the snapshots add, plus the base's ext4.
    expect(u.pool.dataUsedBytes).toBeGreaterThanOrEqual(u.totalBytes);
    expect(u.pool.metadataUsedBytes).toBeGreaterThan(0);
    const t = capture();
    await usageCommand(f(), t.io);
    expect(t.out()).toMatch(new RegExp(`^pool ${srv().pool}: data .* / 1\\.0 GiB .*metadata .*mode rw$`, 'm'));
  });

  it('/metrics reports the pool\'s data and metadata space on the first scrape, and snapshots by kind', async () => {
    const { samples } = parseProm(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    const l = { snapshotter: 'tsblock', pool: srv().pool };
    expect(sample(samples, 'tsblock_pool_data_bytes', { ...l, state: 'total' })?.value).toBe(1024 * MiB);
    expect(sample(samples, 'tsblock_pool_data_bytes', { ...l, state: 'used' })?.value).toBeGreaterThanOrEqual(6 * MiB);
    expect(sample(samples, 'tsblock_pool_metadata_bytes', { ...l, state: 'total' })?.value).toBe(64 * MiB);
    expect(sample(samples, 'tsblock_pool_metadata_bytes', { ...l, state: 'used' })?.value).toBeGreaterThan(0);
    expect(sample(samples, 'tsblock_snapshots', { snapshotter: 'tsblock', kind: 'committed' })?.value).toBe(2);
    expect(sample(samples, 'tsblock_snapshots', { snapshotter: 'tsblock', kind: 'active' })?.value).toBe(1);
    expect(sample(samples, 'tsblock_snapshot_usage_bytes', { snapshotter: 'tsblock', key: 'container-1' })?.value).toBeGreaterThanOrEqual(3 * MiB);
  });

  it('pool status shows the live pool; pool create with the daemon running leaves it as it is', async () => {
    const st = await run(poolCommand, ['status', ...f()]);
    expect(st.code).toBe(0);
    expect(st.json).toMatchObject({ snapshotter: 'tsblock', pool: srv().pool, dataTotalBytes: 1024 * MiB, mode: 'rw', needsCheck: false, failed: false });
    expect(st.json.dataUsedBytes).toBeGreaterThan(0);
    const cr = await run(poolCommand, ['create', ...f()]);
    expect(cr.code).toBe(0);
    expect(cr.err).toContain('the daemon is running; its pool is already up');
    expect(cr.json.pool).toBe(srv().pool);
    const t = capture();
    expect(await poolCommand(['status', ...f()], t.io)).toBe(0);
    expect(t.out()).toMatch(/^mode\s+rw$/m);
  });

  it('doctor reports device-mapper, dm-thin and a healthy pool', async () => {
    const { code, json } = await run(doctorCommand, [...f(), '--containerd-config', join(srv().dir, 'none.toml')]);
    const by = Object.fromEntries(json.checks.map((x: any) => [x.check, x]));
    expect(by['device-mapper']).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^ioctl interface 4\.\d+$/) });
    expect(by['dm-thin target'].status).toBe('ok');
    expect(by['[tsblock] thin-pool']).toMatchObject({ status: 'ok', detail: expect.stringMatching(new RegExp(`^${srv().pool}: mode rw, data \\d+%, metadata \\d+%$`)) });
    expect(by['[tsblock] socket']).toMatchObject({ status: 'ok', detail: `${srv().socket} answers` });
    expect(by['[tsblock] store'].status).toBe('ok');
    expect(by['loop devices'].status).toBe('ok');
    expect(by['filesystem tools'].status).toBe('ok');
    expect(json.checks.filter((x: any) => x.status === 'fail')).toEqual([]);
    expect([code, json.ok]).toEqual([0, true]);
  });

  it('rm goes through the daemon, drops the device, and refuses a parent with children', async () => {
    const before = (await run(infoCommand, ['view-1', ...f()])).json.storage as string;
    expect(existsSync(before)).toBe(true);
    const c = capture();
    expect(await rmCommand(['view-1', ...f()], c.io)).toBe(0);
    expect(c.out()).toBe('removed view-1\n');
    expect(existsSync(before)).toBe(false);
    expect(activeSnapDevices(srv().pool)).not.toContain(before.slice('/dev/mapper/'.length));
    const bad = await run(rmCommand, ['layer-1', ...f()]);
    expect(bad.code).toBe(1);
    expect(bad.json).toEqual([{ key: 'layer-1', removed: false, error: expect.stringMatching(/child/) }]);
    expect((await srv().client.list()).map((i) => i.name).sort()).toEqual(['container-1', 'layer-1', 'layer-2']);
  });

  it('gc lists an orphan thin device (dry run) and reclaims it through the daemon with --yes', async () => {
    const pool = srv().pool;
    const orphan = `${pool}-snap-999999`;
    const thinId = 1_000_000;
    createThin(pool, thinId);
    try {
      activate(orphan, [thinTable(`/dev/mapper/${pool}`, thinId, (64 * MiB) / 512)]);
      const dry = await run(gcCommand, f());
      expect(dry.json).toMatchObject({ dryRun: true, daemonRunning: true, findings: [{ what: 'orphan thin device', path: `/dev/mapper/${orphan}` }], reclaimed: [] });
      expect(deviceInfo(orphan)).toBeDefined();
      const act = await run(gcCommand, [...f(), '--yes']);
      expect(act.json).toMatchObject({ dryRun: false, daemonRunning: true, reclaimed: [`/dev/mapper/${orphan}`] });
      expect(deviceInfo(orphan)).toBeUndefined();
      const again = capture();
      await gcCommand(f(), again.io);
      expect(again.out()).toBe('nothing to reclaim\n');
      // Live snapshots were not touched.
      expect((await srv().client.list()).map((i) => i.name).sort()).toEqual(['container-1', 'layer-1', 'layer-2']);
      expect(activeSnapDevices(pool)).toHaveLength(1); // container-1
    } finally {
      await removeDevicesWithPrefix(orphan);
      deleteThin(pool, thinId);
    }
  });

  it('pool create brings up an owned pool on a fresh root, once; doctor sees it healthy', async () => {
    const fresh = join(srv().dir, 'fresh');
    const pool = defaultOwnedPoolName(fresh);
    const flags = ['--root', fresh, '--socket', join(srv().dir, 'fresh.sock'), '--backend', 'devmapper', '--data-size', '256M', '--base-size', '64M'];
    try {
      const cr = await run(poolCommand, ['create', ...flags]);
      expect(cr.code).toBe(0);
      expect(cr.err).toBe(`created thin-pool ${pool}\n`);
      expect(cr.json).toEqual({
        snapshotter: 'tsblock', pool, dataUsedBytes: 0, dataTotalBytes: 256 * MiB, metadataUsedBytes: expect.any(Number),
        metadataTotalBytes: 64 * MiB, mode: 'rw', needsCheck: false, failed: false,
      });
      expect(statSync(join(fresh, 'devmapper', 'data')).size).toBe(256 * MiB);
      expect(loopsUnder(fresh)).toHaveLength(2);
      const again = await run(poolCommand, ['create', ...flags]);
      expect(again.err).toBe(`thin-pool ${pool} already active\n`);
      expect(again.json.pool).toBe(pool);
      const doc = await run(doctorCommand, [...flags, '--containerd-config', join(srv().dir, 'none.toml')]);
      const by = Object.fromEntries(doc.json.checks.map((x: any) => [x.check, x]));
      expect(by['[tsblock] thin-pool']).toMatchObject({ status: 'ok', detail: expect.stringMatching(new RegExp(`^${pool}: mode rw, data 0%`)) });
      expect(by['[tsblock] socket'].status).toBe('warn'); // no daemon on this root
    } finally {
      await removeDevicesWithPrefix(pool);
    }
    // The pool's loops are autoclear: they went with the pool.
    expect(await waitFor(() => loopsUnder(fresh).length === 0)).toBe(true);
  });

  it('after the daemon stops: rm, ls, usage, gc, import and diff work under the root lock, and leave no device up', async () => {
    await srv().proc!.stop();
    expect(listDevices().map((d) => d.name).filter((n) => n.startsWith(`${srv().pool}`))).toEqual([]);
    const rm = capture();
    expect(await rmCommand(['container-1', ...f()], rm.io)).toBe(0);
    expect(rm.out()).toBe('removed container-1\n');
    const ls = await run(lsCommand, f());
    expect((ls.json as any[]).map((e) => e.key)).toEqual(['layer-1', 'layer-2']);
    const u = await run(usageCommand, f());
    expect(u.json[0].poolError).toMatch(/thin-pool .* does not exist/);
    const gc = await run(gcCommand, [...f(), '--yes']);
    expect(gc.json).toMatchObject({ dryRun: false, daemonRunning: false, findings: [] });
    await expect(poolCommand(['status', ...f()], capture().io)).rejects.toThrow(/does not exist \(start the daemon, or run "tsblock pool create"\)/);
    // import and diff open the root themselves too.
    const tar = await buildTar([file('offline/hello', 'hi', { mode: 0o600, uid: 7 })]);
    const archive = join(srv().dir, 'offline.tar');
    await writeLayoutArchive(archive, 'example.com/offline:1', [{ blob: tar, mediaType: LAYER_TAR, diffId: diffIdOf(tar) }]);
    const imp = await run(importCommand, [archive, ...f()]);
    expect(imp.json).toMatchObject({ applied: 1, skipped: 0, images: [{ chainId: diffIdOf(tar), layers: 1 }] });
    const out = join(srv().dir, 'offline-out.tar');
    const dif = await run(diffCommand, [diffIdOf(tar), '-o', out, ...f()]);
    expect(dif.json).toMatchObject({ mediaType: LAYER_TAR, diffId: expect.stringMatching(/^sha256:/) });
    const back = join(srv().dir, 'offline-back');
    mkdirSync(back);
    expect((await applyLayer(back, createReadStream(out))).diffId).toBe(dif.json.diffId);
    expect(readFileSync(join(back, 'offline/hello'), 'utf8')).toBe('hi');
    expect(statSync(join(back, 'offline/hello'))).toMatchObject({ mode: 0o100600, uid: 7 });
    const info = await run(infoCommand, [diffIdOf(tar), ...f()]);
    expect(info.json).toMatchObject({ kind: 'committed', parent: '', labels: { 'containerd.io/snapshot.ref': diffIdOf(tar) }, storage: expect.stringMatching(snapDev) });
    // Each offline verb brought the pool up and took it down again.
    expect(listDevices().map((d) => d.name).filter((n) => n.startsWith(`${srv().pool}`))).toEqual([]);
    expect(await waitFor(() => loopsUnder(srv().dir).length === 0)).toBe(true);
  });
});
