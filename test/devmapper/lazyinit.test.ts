// The base's inode tables on a real thin-pool (VM only). A thin device cannot
// show mkfs that it reads zeros, so without help mkfs leaves every group's
// inode table to the kernel's lazy init thread, which then writes zeros into
// them in every snapshot mounted rw: thin blocks provisioned per container
// and I/O competing with its start. In a pool that zeroes new blocks (the one
// tsblock owns) the base is made with every table marked zeroed, and an idle
// rw mount provisions next to nothing; in a pool with skip_block_zeroing it is
// not (a partly written block there may hold another device's data), and the
// second case shows what that costs, measured the same way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MetaStore } from '../../src/storage/metastore.js';
import { DevmapperBackend, devmapperMigrations, withDefaults, type DevmapperConfig } from '../../src/backends/devmapper/index.js';
import { Kind } from '../../src/snapshots/snapshotter.js';
import type { BackendSnapshot } from '../../src/core/backend.js';
import { withTempMount } from '../../src/sys/mount.js';
import { activate, devicePath } from '../../src/sys/dm.js';
import { leaksUnder } from '../helpers/leaks.js';
import { itableZeroed } from '../helpers/ext4-groups.js';
import { HAS_DM, SKIP_REASON, makeLoopFiles, releaseLoopFiles, removeDevicesWithPrefix, scratchDir, type LoopPool } from './helpers.js';

const MiB = 1024 ** 2;
const BASE = 2048 * MiB; // 16 groups of 128 MiB, 2 MiB of inode table each

interface Rig {
  root: string;
  cfg: DevmapperConfig;
  store: MetaStore;
  be: DevmapperBackend;
  prefix: string;
  lp?: LoopPool;
}

async function open(external: boolean): Promise<Rig> {
  const root = scratchDir(external ? 'tsblock-dmli-ext-' : 'tsblock-dmli-');
  let lp: LoopPool | undefined;
  let cfg: DevmapperConfig;
  if (external) {
    const poolName = `tsbli-${process.pid}-pool`;
    lp = makeLoopFiles(scratchDir('dmli-files-'), 1024 * MiB, 16 * MiB);
    activate(poolName, [{ start: 0, length: lp.dataSectors, type: 'thin-pool', params: `${lp.meta} ${lp.data} 128 64 2 error_if_no_space skip_block_zeroing` }]);
    cfg = withDefaults({ root, poolName, baseSize: BASE });
  } else {
    cfg = withDefaults({ root, dataSize: 1024 * MiB, baseSize: BASE });
  }
  const store = new MetaStore(join(root, 'metadata.db'), { extraMigrations: devmapperMigrations });
  const be = new DevmapperBackend(cfg, store);
  await be.init();
  return { root, cfg, store, be, prefix: cfg.poolName ?? cfg.ownedPoolName!, lp };
}

async function close(r: Rig | undefined): Promise<string[]> {
  if (!r) return [];
  try {
    await r.be.shutdown();
  } finally {
    await removeDevicesWithPrefix(r.prefix);
    r.store.close();
    releaseLoopFiles(r.lp);
  }
  const left = leaksUnder(r.root);
  rmSync(r.root, { recursive: true, force: true });
  return left;
}

const layer: BackendSnapshot = { id: 1, kind: Kind.Active, parent: undefined };

// idleMount mounts the snapshot rw, writes nothing for ms, and returns the
// pool data it provisioned meanwhile (read after the unmount's flush).
async function idleMount(r: Rig, ms: number): Promise<number> {
  const before = r.be.freeSpace!({ fresh: true }).free;
  await withTempMount(await r.be.mounts(layer), () => sleep(ms), { parent: r.root });
  await sleep(1100); // the pool commits its metadata at least once a second
  return before - r.be.freeSpace!({ fresh: true }).free;
}

describe.skipIf(!HAS_DM)(`the base's inode tables${HAS_DM ? '' : ` (skipped: ${SKIP_REASON})`}`, () => {
  let owned: Rig | undefined;
  let external: Rig | undefined;

  beforeAll(async () => {
    owned = await open(false);
    external = await open(true);
  }, 120_000);

  afterAll(async () => {
    const left = [...(await close(owned)), ...(await close(external))];
    expect(left).toEqual([]);
  }, 120_000);

  it('in the pool tsblock owns: every group is marked zeroed, and an idle rw mount provisions under 1 MiB', async () => {
    const r = owned!;
    await r.be.create(layer);
    const dev = devicePath(`${r.prefix}-snap-1`);
    expect(itableZeroed(dev)).toEqual({ groups: 16, zeroed: 16 });
    const grew = await idleMount(r, 8000);
    console.log(`owned pool: idle rw mount of 8 s provisioned ${(grew / MiB).toFixed(2)} MiB`);
    expect(grew).toBeLessThan(1 * MiB);
  }, 120_000);

  it('in a pool with skip_block_zeroing: the tables are left to lazy init, which provisions them in a mounted snapshot', async () => {
    const r = external!;
    await r.be.create(layer);
    const dev = devicePath(`${r.prefix}-snap-1`);
    const first = itableZeroed(dev);
    expect(first.groups).toBe(16);
    expect(first.zeroed).toBeLessThan(2); // at most the group mkfs writes itself
    // lazy init starts up to 5 s after the mount and then zeroes one group at
    // a time; mount until it has done at least one (2 MiB), 60 s at most.
    let grew = 0;
    for (let i = 0; i < 6 && grew < 2 * MiB; i++) grew += await idleMount(r, 10_000);
    console.log(`skip_block_zeroing pool: rw mounts provisioned ${(grew / MiB).toFixed(2)} MiB; groups zeroed ${itableZeroed(dev).zeroed}/16`);
    expect(grew).toBeGreaterThanOrEqual(2 * MiB);
    expect(itableZeroed(dev).zeroed).toBeGreaterThan(first.zeroed);
  }, 180_000);

  // A snapshot asked to be bigger than its parent (containerd.io/snapshot/max-size)
  // is grown with resize2fs, which leaves the new groups to lazy init. The range
  // past the parent's size was never mapped; in a zeroing pool it reads zeros
  // whatever is written later, so the new groups are marked zeroed too.
  it('a grown snapshot: its new groups are marked zeroed in the owned pool, left to lazy init with skip_block_zeroing', async () => {
    const child: BackendSnapshot = { id: 2, kind: Kind.Active, parent: { id: 1 }, sizeBytes: 2 * BASE };
    for (const r of [owned!, external!]) await r.be.commit(layer);
    await owned!.be.create(child);
    expect(itableZeroed(devicePath(`${owned!.prefix}-snap-2`))).toEqual({ groups: 32, zeroed: 32 });
    const before = owned!.be.freeSpace!({ fresh: true }).free;
    await withTempMount(await owned!.be.mounts(child), () => sleep(8000), { parent: owned!.root });
    await sleep(1100);
    const grew = before - owned!.be.freeSpace!({ fresh: true }).free;
    console.log(`owned pool: idle rw mount of the grown snapshot (32 groups) provisioned ${(grew / MiB).toFixed(2)} MiB`);
    expect(grew).toBeLessThan(1 * MiB);

    await external!.be.create(child);
    const ext = itableZeroed(devicePath(`${external!.prefix}-snap-2`));
    expect(ext.groups).toBe(32);
    expect(ext.zeroed).toBeLessThanOrEqual(16); // none of the 16 new ones
  }, 180_000);
});
