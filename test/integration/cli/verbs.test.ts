// Every operator verb against a real daemon and store: two blockfile
// snapshotters served from one config, snapshots made through gRPC and
// written through real loop mounts; then ls, info, usage, rm, gc, doctor,
// pool, config — while the daemon runs (through its socket) and after it
// stopped (under the root's lock).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { loadConfig } from '../../../src/config/index.js';
import { startConfig, type RunningConfig } from '../../../src/daemon/run.js';
import { withTempMount } from '../../../src/sys/mount.js';
import { dmAvailable } from '../../../src/sys/dm.js';
import { lsCommand } from '../../../src/cli/commands/ls.js';
import { infoCommand } from '../../../src/cli/commands/info.js';
import { usageCommand } from '../../../src/cli/commands/usage.js';
import { rmCommand } from '../../../src/cli/commands/rm.js';
import { gcCommand } from '../../../src/cli/commands/gc.js';
import { doctorCommand } from '../../../src/cli/commands/doctor.js';
import { poolCommand } from '../../../src/cli/commands/pool.js';
import { configCommand } from '../../../src/cli/commands/config.js';
import { FailedPreconditionError, NotFoundError, UnavailableError } from '../../../src/errdefs.js';
import { capture, Client, recordingLogger } from './helpers.js';
import { imagesDirOf } from '../../../src/backends/blockfile/layout.js';
import { withStoreMounted } from '../../helpers/store.js';
import { storeExists } from '../../../src/backends/blockfile/store.js';

const MiB = 1024 ** 2;

describe.skipIf(rootReason)(`tsblock CLI verbs against a running daemon${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  let dir: string;
  let cfgPath: string;
  let running: RunningConfig | undefined;
  let lines: Record<string, unknown>[];
  let a: Client;
  const args = (...rest: string[]) => ['--config', cfgPath, ...rest];

  beforeAll(async () => {
    dir = mkdtempSync('/var/tmp/tsblock-cli-');
    cfgPath = join(dir, 'config.toml');
    writeFileSync(cfgPath, `
log_level = "debug"
[metrics]
address = ""
[snapshotters.a]
root = "${dir}/a"
socket = "${dir}/a.sock"
base_size = "64M"
[snapshotters.b]
root = "${dir}/b"
socket = "${dir}/b.sock"
base_size = "32M"
`);
    const rec = recordingLogger();
    lines = rec.lines;
    running = await startConfig(loadConfig({ configPath: cfgPath, env: {} }).config, rec.log, { env: {} });
    a = new Client(join(dir, 'a.sock'), 'a');
    // A two-layer chain with real content, an active container snapshot on top, and a view.
    const l1 = await a.prepare('extract-1');
    await withTempMount(l1.mounts, async (mnt) => writeFileSync(join(mnt, 'layer1.bin'), Buffer.alloc(2 * MiB, 1)));
    await a.commit('layer-1', 'extract-1', { 'containerd.io/snapshot.ref': 'sha256:one' });
    const l2 = await a.prepare('extract-2', 'layer-1');
    await withTempMount(l2.mounts, async (mnt) => writeFileSync(join(mnt, 'layer2.bin'), Buffer.alloc(1 * MiB, 2)));
    await a.commit('layer-2', 'extract-2');
    const c = await a.prepare('container-1', 'layer-2', { 'containerd.io/gc.root': 'x' });
    await withTempMount(c.mounts, async (mnt) => writeFileSync(join(mnt, 'rw.bin'), Buffer.alloc(3 * MiB, 3)));
    await a.view('view-1', 'layer-1');
    const b = new Client(join(dir, 'b.sock'), 'b');
    await b.prepare('b-active');
    b.close();
  });

  afterAll(async () => {
    a?.close();
    await running?.stop();
    const leaks = dir ? leaksUnder(dir) : [];
    if (dir) rmSync(dir, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  });

  it('serves several snapshotters from one daemon, each on its own socket and root', () => {
    expect(running!.daemons).toHaveLength(2);
    expect(existsSync(join(dir, 'a', 'metadata.db')) && existsSync(join(dir, 'b', 'metadata.db'))).toBe(true);
  });

  it('ls --json lists key, parent, kind, size, usage and the image file', async () => {
    const c = capture();
    expect(await lsCommand(args('--snapshotter', 'a', '--json'), c.io)).toBe(0);
    const list = JSON.parse(c.out()) as any[];
    const by = Object.fromEntries(list.map((e) => [e.key, e]));
    expect(Object.keys(by).sort()).toEqual(['container-1', 'layer-1', 'layer-2', 'view-1']);
    expect(by['layer-2']).toMatchObject({ parent: 'layer-1', kind: 'committed', size: 64 * MiB, snapshotter: 'a' });
    expect(by['container-1']).toMatchObject({ parent: 'layer-2', kind: 'active', size: 64 * MiB });
    expect(by['view-1']).toMatchObject({ parent: 'layer-1', kind: 'view', usage: 0, storage: by['layer-1'].storage });
    // Usage is allocated blocks beyond the parent's: about what was written (ext4 may reuse a few blocks).
    expect(by['layer-1'].usage).toBeGreaterThanOrEqual(1.8 * MiB);
    expect(by['layer-2'].usage).toBeGreaterThanOrEqual(0.9 * MiB);
    expect(by['container-1'].usage).toBeGreaterThanOrEqual(2.7 * MiB);
    expect(by['container-1'].usage).toBeLessThan(16 * MiB);
    for (const e of list) expect(existsSync(e.storage)).toBe(true);
  });

  it('ls prints an aligned table on a terminal, and lists every snapshotter without --snapshotter', async () => {
    const c = capture(true);
    expect(await lsCommand(args(), c.io)).toBe(0);
    const [header, ...rows] = c.out().trimEnd().split('\n');
    expect(header).toMatch(/^SNAPSHOTTER\s+KEY\s+PARENT\s+KIND\s+SIZE\s+USAGE\s+STORAGE$/);
    expect(rows.find((r) => r.includes('b-active'))).toMatch(/^b\s+b-active\s+-\s+active\s+32 MiB/);
    expect(rows.find((r) => r.includes('layer-2'))).toMatch(/^a\s+layer-2\s+layer-1\s+committed\s+64 MiB/);
  });

  it('info shows one snapshot with its labels and chain, and NotFound for an unknown key', async () => {
    const c = capture();
    expect(await infoCommand(args('--snapshotter', 'a', 'container-1', '--json'), c.io)).toBe(0);
    expect(JSON.parse(c.out())).toMatchObject({ key: 'container-1', kind: 'active', chain: ['layer-2', 'layer-1'], labels: { 'containerd.io/gc.root': 'x' } });
    const t = capture();
    await infoCommand(args('--snapshotter', 'a', 'layer-1'), t.io);
    expect(t.out()).toMatch(/Kind:\s+committed/);
    expect(t.out()).toContain('containerd.io/snapshot.ref=sha256:one');
    await expect(infoCommand(args('--snapshotter', 'a', 'nope'), capture().io)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('usage reports each snapshot, the total and the root filesystem', async () => {
    const c = capture();
    expect(await usageCommand(args('--snapshotter', 'a', '--json'), c.io)).toBe(0);
    const [u] = JSON.parse(c.out());
    expect(u.snapshotter).toBe('a');
    expect(u.totalBytes).toBe(u.snapshots.reduce((n: number, s: any) => n + s.usage, 0));
    expect(u.totalBytes).toBeGreaterThanOrEqual(5.4 * MiB);
    expect(u.root.totalBytes).toBeGreaterThan(u.root.freeBytes);
    expect(u.pool).toBeUndefined();
    const hasStore = storeExists(join(dir, 'a'));
    if (hasStore) expect(u.store).toMatchObject({ mounted: true, file: join(dir, 'a', 'store.xfs'), allocated: expect.any(Number) });
    else expect(u.store).toBeUndefined();
    const t = capture();
    await usageCommand(args('--snapshotter', 'a'), t.io);
    expect(t.out()).toMatch(/^TOTAL\t/m);
    expect(t.out()).toMatch(/free of/);
    if (hasStore) expect(t.out()).toMatch(/^store .*store\.xfs: .* on disk, XFS .* used of /m);
  });

  it('rm goes through the live daemon and refuses a parent with children', async () => {
    const c = capture();
    expect(await rmCommand(args('--snapshotter', 'a', 'view-1'), c.io)).toBe(0);
    expect(c.out()).toBe('removed view-1\n');
    expect(lines.some((l) => l.op === 'Remove' && l.key === 'view-1' && l.code === 'OK' && typeof l.duration_ms === 'number')).toBe(true);
    const bad = capture();
    expect(await rmCommand(args('--snapshotter', 'a', 'layer-1', '--json'), bad.io)).toBe(1);
    expect(JSON.parse(bad.out())).toEqual([{ key: 'layer-1', removed: false, error: expect.stringMatching(/child/) }]);
    const ls = capture();
    await lsCommand(args('--snapshotter', 'a', '--json'), ls.io);
    expect(JSON.parse(ls.out()).map((e: any) => e.key)).not.toContain('view-1');
  });

  it('a tsblock import seed is refused to containerd\'s Remove but removed by rm through the daemon', async () => {
    const b = new Client(join(dir, 'b.sock'), 'b');
    try {
      const seed = { 'tsblock.io/seed': 'example.com/img:1', 'containerd.io/snapshot.ref': 'sha256:seed' };
      await b.prepare('tsblock-extract-1 sha256:seed', '', seed);
      await b.commit('sha256:seed', 'tsblock-extract-1 sha256:seed', seed);
      await expect(b.remove('sha256:seed')).rejects.toMatchObject({ code: 9 /* FAILED_PRECONDITION */, details: expect.stringMatching(/seeded by tsblock import/) });
      const c = capture();
      expect(await rmCommand(args('--snapshotter', 'b', 'sha256:seed'), c.io)).toBe(0);
      expect(c.out()).toBe('removed sha256:seed\n');
      const ls = capture();
      await lsCommand(args('--snapshotter', 'b', '--json'), ls.io);
      expect(JSON.parse(ls.out()).map((e: any) => e.key)).toEqual(['b-active']);
    } finally {
      b.close();
    }
  });

  it('gc is a dry run by default and reclaims orphans through the daemon with --yes', async () => {
    const snaps = join(imagesDirOf(join(dir, 'a')), 'snapshots');
    writeFileSync(join(snaps, '9999'), 'orphan');
    writeFileSync(join(snaps, 'rm-9998'), 'leftover');
    const dry = capture();
    expect(await gcCommand(args('--snapshotter', 'a'), dry.io)).toBe(0);
    expect(dry.out()).toContain(`would reclaim orphan image: ${join(snaps, '9999')}`);
    expect(dry.out()).toContain(`would reclaim leftover of a removal: ${join(snaps, 'rm-9998')}`);
    expect(existsSync(join(snaps, '9999'))).toBe(true);
    const act = capture();
    expect(await gcCommand(args('--snapshotter', 'a', '--yes', '--json'), act.io)).toBe(0);
    expect(JSON.parse(act.out())).toMatchObject({ dryRun: false, daemonRunning: true });
    expect(existsSync(join(snaps, '9999')) || existsSync(join(snaps, 'rm-9998'))).toBe(false);
    expect(lines.some((l) => l.op === 'Cleanup' && l.code === 'OK')).toBe(true);
    const again = capture();
    await gcCommand(args('--snapshotter', 'a'), again.io);
    expect(again.out()).toBe('nothing to reclaim\n');
  });

  it('doctor checks loop, tools, reflink, sockets and store, and says what to fix', async () => {
    const c = capture();
    const code = await doctorCommand(args('--json', '--containerd-config', join(dir, 'none.toml')), c.io);
    const r = JSON.parse(c.out());
    const by = Object.fromEntries(r.checks.map((x: any) => [x.check, x]));
    expect(by['loop devices'].status).toBe('ok');
    expect(by['filesystem tools'].status).toBe('ok');
    expect(by['[a] socket']).toMatchObject({ status: 'ok', detail: expect.stringContaining('a.sock answers') });
    expect(by['[b] socket'].status).toBe('ok');
    expect(by['[a] store'].status).toBe('ok');
    // A fresh root clones in O(1) on any host: directly where it can reflink, else in its XFS store.
    expect(by['[a] reflink'].status).toBe('ok');
    if (storeExists(join(dir, 'a'))) {
      expect(by['[a] reflink'].detail).toMatch(/cannot reflink; images clone in O\(1\) \(FICLONE\) inside its XFS store/);
      expect(by['[a] xfs store']).toMatchObject({ status: 'ok', detail: expect.stringMatching(/store\.xfs \(XFS reflink=1 on \/dev\/loop\d+\): .* on disk, .* free of .* grows into the host's/) });
    } else {
      expect(by['[a] reflink'].detail).toMatch(/clones images in O\(1\)/);
    }
    expect(by['containerd config']).toMatchObject({ status: 'warn', fix: expect.stringMatching(/proxy_plugins/) });
    expect(by['device-mapper'].status).toMatch(/ok|skip/);
    expect(code).toBe(r.ok ? 0 : 1);
    expect(r.ok).toBe(true);
  });

  it('pool verbs refuse a blockfile snapshotter', async () => {
    await expect(poolCommand(['status', ...args('--snapshotter', 'a')], capture().io)).rejects.toThrow(FailedPreconditionError);
    await expect(poolCommand(['status', ...args('--snapshotter', 'a')], capture().io)).rejects.toThrow(/pool commands are for devmapper/);
  });

  it.skipIf(dmAvailable())('pool verbs give a clear error without device-mapper (skipped when this kernel has DM)', async () => {
    const flags = ['--snapshotter', 'dm', '--backend', 'devmapper', '--root', join(dir, 'dm')];
    for (const sub of ['status', 'create']) {
      const p = poolCommand([sub, ...flags], capture().io);
      await expect(p).rejects.toBeInstanceOf(UnavailableError);
      await expect(poolCommand([sub, ...flags], capture().io)).rejects.toThrow(/device-mapper is not available.*modprobe dm_thin_pool/);
    }
    const u = capture();
    await expect(usageCommand([...flags], u.io)).rejects.toThrow(NotFoundError); // never served: no store
  });

  it('config dump shows the effective configuration', async () => {
    const c = capture();
    expect(await configCommand(['dump', ...args('--json')], c.io)).toBe(0);
    const cfg = JSON.parse(c.out());
    expect(cfg.snapshotters.map((s: any) => [s.name, s.root, s.baseSize])).toEqual([['a', `${dir}/a`, 64 * MiB], ['b', `${dir}/b`, 32 * MiB]]);
    expect(cfg.logLevel).toBe('debug');
  });

  it('after the daemon stops, rm and gc --yes work under the root lock', async () => {
    await running!.stop();
    running = undefined;
    expect(existsSync(join(dir, 'a.sock'))).toBe(false);
    const snaps = join(imagesDirOf(join(dir, 'a')), 'snapshots');
    // A clean stop unmounted the idle store (if the root has one): mount it to plant the orphan.
    await withStoreMounted(join(dir, 'a'), () => writeFileSync(join(snaps, '7777'), 'orphan'));
    const g = capture();
    expect(await gcCommand(args('--snapshotter', 'a', '--yes', '--json'), g.io)).toBe(0);
    const r = JSON.parse(g.out());
    expect(r).toMatchObject({ daemonRunning: false, reclaimed: [join(snaps, '7777')] });
    expect(existsSync(join(snaps, '7777'))).toBe(false);
    const c = capture();
    expect(await rmCommand(args('--snapshotter', 'a', 'container-1', 'layer-2'), c.io)).toBe(0);
    expect(c.out()).toBe('removed container-1\nremoved layer-2\n');
    const ls = capture();
    await lsCommand(args('--snapshotter', 'a', '--json'), ls.io);
    expect(JSON.parse(ls.out()).map((e: any) => e.key)).toEqual(['layer-1']);
  });
});

describe('verbs on a root that was never served', () => {
  it('explain that there is no store instead of creating one', async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-cli-empty-');
    try {
      const flags = ['--root', join(dir, 'nothing'), '--socket', join(dir, 's.sock')];
      for (const run of [lsCommand, usageCommand, gcCommand]) {
        await expect(run(flags, capture().io)).rejects.toThrow(/no tsblock store at .*metadata.db/);
      }
      await expect(rmCommand([...flags, 'k'], capture().io)).rejects.toBeInstanceOf(NotFoundError);
      expect(existsSync(join(dir, 'nothing'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
