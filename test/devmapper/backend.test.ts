// DevmapperBackend against a real kernel: content through create/commit/
// mounts/view, sizes, thin-id bookkeeping, a simulated reboot and crash
// reconciliation. Timings of one child create and one commit are printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, rmSync, statfsSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MetaStore } from '../../src/storage/metastore.js';
import { DevmapperBackend, devmapperMigrations, withDefaults, type DevmapperConfig } from '../../src/backends/devmapper/index.js';
import { allDevices, allocateDevice, isSpareRow } from '../../src/backends/devmapper/devices.js';
import { Kind } from '../../src/snapshots/snapshotter.js';
import type { BackendSnapshot } from '../../src/core/backend.js';
import { withTempMount } from '../../src/sys/mount.js';
import { activate, deviceInfo, devicePath, listDevices } from '../../src/sys/dm.js';
import { createThin, deleteThin, thinTable } from '../../src/sys/dm-thin.js';
import { NotFoundError } from '../../src/errdefs.js';
import { leaksUnder } from '../helpers/leaks.js';
import { HAS_DM, SKIP_REASON, removeDevicesWithPrefix, scratchDir } from './helpers.js';

const MiB = 1024 ** 2;

describe.skipIf(!HAS_DM)(`devmapper backend${HAS_DM ? '' : ` (skipped: ${SKIP_REASON})`}`, () => {
  let root = '';
  let cfg: DevmapperConfig;
  let store: MetaStore;
  let be: DevmapperBackend;
  const active = (id: number, parent?: number, sizeBytes?: number): BackendSnapshot => ({ id, kind: Kind.Active, parent: parent === undefined ? undefined : { id: parent }, sizeBytes });
  const view = (id: number, parent: number): BackendSnapshot => ({ id, kind: Kind.View, parent: { id: parent } });
  const inMount = async <T>(snap: BackendSnapshot, fn: (dir: string) => T): Promise<T> =>
    withTempMount(await be.mounts(snap), async (d) => fn(d), { parent: root });

  beforeAll(async () => {
    root = scratchDir('tsblock-dm-');
    cfg = withDefaults({ root, dataSize: 1024 * MiB, baseSize: 64 * MiB });
    store = new MetaStore(join(root, 'metadata.db'), { extraMigrations: devmapperMigrations });
    be = new DevmapperBackend(cfg, store);
    await be.init();
  });

  afterAll(async () => {
    try {
      await be?.shutdown();
    } finally {
      await removeDevicesWithPrefix(cfg.ownedPoolName!);
      store?.close();
      const left = leaksUnder(root);
      rmSync(root, { recursive: true, force: true });
      expect(left).toEqual([]);
    }
  });

  it('gives a first layer an empty ext4 with root 0755 and no lost+found', async () => {
    await be.create(active(1));
    const mounts = await be.mounts(active(1));
    expect(mounts).toEqual([{ type: 'ext4', source: devicePath(`${cfg.ownedPoolName}-snap-1`), options: ['rw'] }]);
    await inMount(active(1), (d) => {
      expect(readdirSync(d)).toEqual([]);
      expect(statSync(d).mode & 0o7777).toBe(0o755);
      writeFileSync(join(d, 'a'), 'parent');
    });
  });

  it('reports the pool\'s unallocated data as free space, and writes use it up', async () => {
    const before = be.freeSpace({ fresh: true });
    expect(before.total).toBe(1024 * MiB);
    expect(before.what).toBe(`thin-pool ${cfg.ownedPoolName}`);
    expect(before.free).toBeGreaterThan(0);
    expect(before.free).toBeLessThan(before.total); // the base's ext4 metadata is allocated
    await inMount(active(1), (d) => writeFileSync(join(d, 'fill'), Buffer.alloc(8 * MiB, 7)));
    const after = be.freeSpace({ fresh: true });
    expect(before.free - after.free).toBeGreaterThanOrEqual(8 * MiB);
    await inMount(active(1), (d) => rmSync(join(d, 'fill')));
  });

  it('commits, and a child sees the parent while its writes stay its own', async () => {
    let t = performance.now();
    const usage = await be.commit(active(1));
    const commitMs = performance.now() - t;
    expect(usage.size).toBeGreaterThan(0);
    expect(deviceInfo(`${cfg.ownedPoolName}-snap-1`)).toBeUndefined(); // committed = inactive
    t = performance.now();
    await be.create(active(2, 1));
    const createMs = performance.now() - t;
    console.log(`timing: child create ${createMs.toFixed(1)} ms, commit ${commitMs.toFixed(1)} ms`);
    await inMount(active(2), (d) => {
      expect(readFileSync(join(d, 'a'), 'utf8')).toBe('parent');
      writeFileSync(join(d, 'a'), 'child');
      writeFileSync(join(d, 'b'), 'only-child');
    });
    await be.create(view(3, 1));
    const vm = await be.mounts(view(3, 1));
    expect(vm[0]!.options).toEqual(['ro', 'noload']);
    expect(deviceInfo(`${cfg.ownedPoolName}-snap-3`)!.readOnly).toBe(true);
    await inMount(view(3, 1), (d) => {
      expect(readFileSync(join(d, 'a'), 'utf8')).toBe('parent');
      expect(existsSync(join(d, 'b'))).toBe(false);
      expect(() => writeFileSync(join(d, 'c'), 'x')).toThrow();
    });
    const u2 = await be.usage(active(2, 1));
    expect(u2.size).toBeGreaterThan(0);
    await be.commit(active(2, 1));
    await be.create(active(4, 2));
    await inMount(active(4, 2), (d) => {
      expect(readFileSync(join(d, 'a'), 'utf8')).toBe('child');
      expect(readFileSync(join(d, 'b'), 'utf8')).toBe('only-child');
    });
  });

  it('commits a snapshot that is still mounted, and snapshots it with a suspend', async () => {
    await be.create(active(6, 1));
    await withTempMount(await be.mounts(active(6, 1)), async (d) => {
      writeFileSync(join(d, 'm'), 'mounted');
      await be.commit(active(6, 1)); // device busy: stays active
      expect(deviceInfo(`${cfg.ownedPoolName}-snap-6`)?.activeTable).toBe(true);
      await be.create(active(7, 6));
      expect(deviceInfo(`${cfg.ownedPoolName}-snap-6`)!.suspended).toBe(false);
    }, { parent: root });
    await inMount(active(7, 6), (d) => expect(readFileSync(join(d, 'm'), 'utf8')).toBe('mounted'));
  });

  it('honours a larger requested size by growing the filesystem', async () => {
    await be.create(active(5, 1, 256 * MiB));
    await inMount(active(5, 1, 256 * MiB), (d) => {
      const s = statfsSync(d);
      expect(s.blocks * s.bsize).toBeGreaterThan(200 * MiB);
      expect(readFileSync(join(d, 'a'), 'utf8')).toBe('parent');
    });
  });

  it('releases thin ids on destroy and never leaks them', async () => {
    // (warm spares come and go in the background: they are counted in their own test)
    const ownRows = () => store.read((tx) => allDevices(tx)).filter((r) => !isSpareRow(r.snapshotId));
    const before = ownRows().length;
    const ids: number[] = [];
    for (let i = 100; i < 105; i++) {
      await be.create(active(i, 1));
      await be.mounts(active(i, 1));
      ids.push(store.read((tx) => allDevices(tx)).find((r) => r.snapshotId === i)!.thinId);
    }
    for (let i = 100; i < 105; i++) {
      store.write((tx) => be.detach(active(i, 1), tx));
      await be.destroy(active(i, 1));
      await be.destroy(active(i, 1)); // idempotent
    }
    expect(ownRows().length).toBe(before);
    for (const id of ids) expect(() => deleteThin(cfg.ownedPoolName!, id)).toThrow(NotFoundError);
    expect(listDevices().filter((d) => /-snap-10\d$/.test(d.name))).toEqual([]);
  });

  it('keeps a warm spare for a parent that keeps getting children, hands it over with a rename, and releases it', async () => {
    const pool = cfg.ownedPoolName!;
    const rowOf = (id: number) => store.read((tx) => allDevices(tx)).find((r) => r.snapshotId === id)!;
    const spareRows = () => store.read((tx) => allDevices(tx)).filter((r) => isSpareRow(r.snapshotId));
    const spareDevices = () => listDevices().filter((d) => d.name.startsWith(`${pool}-spare-`)).map((d) => d.name);
    await be.sparesSettled();
    // A fresh parent: its first child makes no spare, its second one does.
    await be.create(active(210, 2));
    await be.commit(active(210, 2));
    await be.create(active(211, 210));
    await be.sparesSettled();
    expect(spareRows().filter((r) => r.originThin === rowOf(210).thinId)).toEqual([]);
    await be.create(active(212, 210));
    await be.sparesSettled();
    const [spare] = spareRows().filter((r) => r.originThin === rowOf(210).thinId);
    expect(spare).toBeDefined();
    expect(deviceInfo(`${pool}-spare-${spare!.thinId}`)?.activeTable).toBe(true);
    // The third child takes it over: same thin id, its own name, the parent's content.
    await be.create(active(213, 210));
    expect(rowOf(213).thinId).toBe(spare!.thinId);
    expect(rowOf(213).state).toBe('ready');
    expect(deviceInfo(`${pool}-spare-${spare!.thinId}`)).toBeUndefined();
    expect(deviceInfo(`${pool}-snap-213`)?.activeTable).toBe(true);
    await inMount(active(213, 210), (d) => {
      expect(readFileSync(join(d, 'b'), 'utf8')).toBe('only-child');
      writeFileSync(join(d, 'b'), 'grandchild');
    });
    await inMount(active(212, 210), (d) => expect(readFileSync(join(d, 'b'), 'utf8')).toBe('only-child'));
    await be.sparesSettled();
    const [next] = spareRows().filter((r) => r.originThin === rowOf(210).thinId);
    expect(next).toBeDefined(); // taken, so made again
    // Removing the parent (children first) drops its spare: row, device and thin id.
    for (const id of [211, 212, 213, 210]) {
      store.write((tx) => be.detach(active(id, 210), tx));
      await be.destroy(active(id, 210));
    }
    expect(spareRows().filter((r) => r.thinId === next!.thinId)).toEqual([]);
    expect(() => deleteThin(pool, next!.thinId)).toThrow(NotFoundError);
    // Spares left by a run that did not close are swept at start-up.
    await be.create(active(214, 2));
    await be.create(active(215, 2));
    await be.sparesSettled();
    const left = spareRows();
    expect(left.length).toBeGreaterThan(0);
    for (const id of [214, 215]) {
      store.write((tx) => be.detach(active(id, 2), tx));
      await be.destroy(active(id, 2));
    }
    be = new DevmapperBackend(cfg, store);
    await be.init();
    expect(spareRows()).toEqual([]);
    expect(spareDevices()).toEqual([]);
    for (const r of left) expect(() => deleteThin(pool, r.thinId)).toThrow(NotFoundError);
  });

  it('survives a simulated reboot: devices and loops gone, pool and data come back', async () => {
    await be.shutdown();
    expect(listDevices().filter((d) => d.name.startsWith(cfg.ownedPoolName!))).toEqual([]);
    expect(leaksUnder(root)).toEqual([]);
    be = new DevmapperBackend(cfg, store);
    await be.init();
    await inMount(active(4, 2), (d) => expect(readFileSync(join(d, 'b'), 'utf8')).toBe('only-child'));
    await inMount(view(3, 1), (d) => expect(readFileSync(join(d, 'a'), 'utf8')).toBe('parent'));
  });

  it('reconciles a crash: trying rows, deleting rows and orphan devices are reclaimed', async () => {
    const pool = cfg.ownedPoolName!;
    // A create that died after create_thin but before 'ready', one that died
    // before create_thin, and a device nobody owns.
    const a = store.write((tx) => allocateDevice(tx, { snapshotId: 900, size: 64 * MiB, readOnly: false, originThin: null }));
    createThin(pool, a.thinId);
    store.write((tx) => allocateDevice(tx, { snapshotId: 901, size: 64 * MiB, readOnly: false, originThin: null }));
    const c = store.write((tx) => allocateDevice(tx, { snapshotId: 902, size: 64 * MiB, readOnly: false, originThin: null }));
    createThin(pool, c.thinId);
    store.write((tx) => tx.prepare("UPDATE dm_devices SET state = 'deleting' WHERE snapshot_id = 902").run());
    activate(`${pool}-snap-900`, [thinTable(devicePath(pool), a.thinId, (64 * MiB) / 512)]);
    be = new DevmapperBackend(cfg, store);
    await be.init(); // finishes 'deleting'
    expect(store.read((tx) => allDevices(tx)).some((r) => r.snapshotId === 902)).toBe(false);
    const live = new Set([1, 2, 3, 4, 5, 6, 7]);
    const report = await be.cleanup(live);
    expect(report.removed.length).toBeGreaterThanOrEqual(3);
    const rows = store.read((tx) => allDevices(tx));
    expect(rows.map((r) => r.snapshotId).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(deviceInfo(`${pool}-snap-900`)).toBeUndefined();
    expect(() => deleteThin(pool, a.thinId)).toThrow(NotFoundError);
    expect(() => deleteThin(pool, c.thinId)).toThrow(NotFoundError);
    // live snapshots are untouched
    await inMount(active(4, 2), (d) => expect(readFileSync(join(d, 'a'), 'utf8')).toBe('child'));
  });
});
