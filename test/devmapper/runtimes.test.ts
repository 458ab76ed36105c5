// VM runtimes' rules against tsblock's real devmapper mounts (issue 17), in
// the device-mapper VM (vm-tests/run.sh): a real `tsblock serve --backend
// devmapper` (dist/cli.js, its own loop-backed thin-pool), its Prepare and
// View mounts held against Kata's Go runtime, runtime-rs and
// firecracker-containerd (test/runtimes/rules.ts). Every dm-thin device a
// runtime would hand over is opened with O_DIRECT (dd iflag=direct), its
// size and ext4 superblock read and it is mounted with that runtime's guest
// options in a separate mount namespace (unshare -m): what a guest kernel
// would do with the disk. No nested VM boots here (emulation inside
// emulation is too slow); test/vmboot boots real guests from blockfile
// snapshots on the host. The table docs/kata.md shows is written to
// $TSBLOCK_VM_OUT/runtimes-devmapper.md (.tmp/vm in the checkout).

import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockDeviceSize } from '../../src/sys/blockdev.js';
import { leaksUnder } from '../helpers/leaks.js';
import { probe, table, type Row } from '../runtimes/probe.js';
import { HAS_DM, SKIP_REASON, removeDevicesWithPrefix, scratchDir } from './helpers.js';
import { CLI, REPO, Server, SnapClient } from './serve-helpers.js';

const BASE = 64 * 1024 ** 2; // serve-helpers' --base-size 64M

describe.skipIf(!HAS_DM || !existsSync(CLI))(`VM runtimes' rules on devmapper${HAS_DM ? '' : ` (skipped: ${SKIP_REASON})`}`, () => {
  let dir: string;
  let server: Server | undefined;
  let client: SnapClient;
  let rows: Row[] = [];
  let activeDev = '';
  let activeDevSize = 0;
  let activeTable = '';
  const row = (snapshot: string, runtime: string) => {
    const r = rows.find((x) => x.snapshot === snapshot && x.verdict.runtime === runtime);
    if (!r) throw new Error(`no row for ${snapshot}/${runtime}`);
    return r;
  };

  beforeAll(async () => {
    dir = scratchDir('tsblock-dm-runtimes-');
    server = await Server.start({ root: join(dir, 'root'), socket: join(dir, 'tsblock.sock'), log: join(dir, 'serve.log'), extraArgs: ['--metrics-address', ''] });
    client = new SnapClient(join(dir, 'tsblock.sock'), 'tsblock', 'runtimes');
    // the active snapshot's dm-thin device, looked at while it exists (probe removes its snapshots at the end)
    const wrapped = {
      prepare: async (key: string, parent = '') => {
        const m = await client.prepare(key, parent);
        if (key.endsWith('-active')) {
          activeDev = m[0]!.source;
          activeDevSize = blockDeviceSize(activeDev);
          activeTable = execFileSync('dmsetup', ['table', activeDev], { encoding: 'utf8' });
        }
        return m;
      },
      view: (key: string, parent: string) => client.view(key, parent),
      commit: (name: string, key: string) => client.commit(name, key),
      remove: (key: string) => client.remove(key),
    };
    rows = await probe(wrapped, dir);
    const md = table('devmapper', rows);
    const out = process.env.TSBLOCK_VM_OUT ?? join(REPO, '.tmp', 'vm');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'runtimes-devmapper.md'), md);
    console.log(md);
  }, 300_000);

  afterAll(async () => {
    client?.close();
    await server?.stop();
    // the server's own pool: /dev/mapper/<pool>-snap-N
    const pool = activeDev.slice('/dev/mapper/'.length).replace(/-snap-\d+$/, '');
    if (pool) await removeDevicesWithPrefix(pool);
    const left = dir ? leaksUnder(dir) : [];
    if (dir && existsSync(join(dir, 'serve.log')) && process.env.TSBLOCK_VM_OUT) copyFileSync(join(dir, 'serve.log'), join(process.env.TSBLOCK_VM_OUT, 'runtimes-server.log'));
    if (dir) rmSync(dir, { recursive: true, force: true });
    expect(left).toEqual([]);
  }, 120_000);

  it("a container snapshot is one ext4 mount on a dm-thin device of the pool's base size", () => {
    const r = row('Prepare', 'kata-go');
    expect(r.mounts).toHaveLength(1);
    expect(r.mounts[0]!.type).toBe('ext4');
    expect(r.sourceKind).toBe('block');
    expect(r.mounts[0]!.options).not.toContain('loop');
    expect(activeDev).toMatch(/^\/dev\/mapper\//);
    expect(activeTable).toMatch(/^0 \d+ thin /);
    expect(activeDevSize).toBe(BASE);
  });

  it('the dm-thin device reads with O_DIRECT, holds ext4 the size of the device, and mounts rw in a separate mount namespace with the layer in it', () => {
    for (const rt of ['kata-go', 'kata-rs', 'firecracker-containerd']) {
      const r = row('Prepare', rt);
      expect(r.verdict.outcome, rt).toBe('block');
      expect(r.verdict.hostMounted, rt).toBe(false);
      expect(r.verdict.disk, rt).toBe(activeDev);
      expect(r.disk, rt).toMatchObject({ directRead: true, ext4Magic: true, guestMount: 'rw', markerSeen: true, diskBytes: BASE, fsBytes: BASE });
    }
    // Kata Go passes only the type (options dropped); runtime-rs the options as given; firecracker-containerd ext4 rw
    expect(row('Prepare', 'kata-go').verdict.guestOptions).toEqual([]);
    expect(row('Prepare', 'kata-rs').verdict.guestOptions).toEqual(row('Prepare', 'kata-rs').mounts[0]!.options);
    expect(row('Prepare', 'firecracker-containerd').verdict.guestOptions).toEqual(['rw']);
  });

  it('a View is a block device too; runtime-rs keeps its ro,noload, the other two drop them', () => {
    for (const rt of ['kata-go', 'kata-rs', 'firecracker-containerd']) {
      const r = row('View', rt);
      expect(r.sourceKind).toBe('block');
      expect(r.verdict.outcome, rt).toBe('block');
      expect(r.disk, rt).toMatchObject({ directRead: true, ext4Magic: true, markerSeen: true });
    }
    // the View's thin device is read-only itself (BLKROGET), whatever options a runtime passes
    expect(row('View', 'kata-rs').disk!.readOnlyDevice).toBe(true);
    expect(row('View', 'kata-rs').disk!.guestMount).toBe('ro');
  });
});
