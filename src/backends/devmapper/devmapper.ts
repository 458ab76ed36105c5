// DevmapperBackend keeps every snapshot as a dm-thin device in one pool:
//
//   <pool>-base        thin device formatted ext4 once (no lost+found, root 0755),
//                      inactive except while being made
//   <pool>-snap-<id>   snapshot <id>: a thin snapshot (create_snap) of its
//                      committed parent, or of the base for a first layer
//
// Thin snapshots are O(1) whatever the chain depth. A device is active (has a
// /dev/mapper node) only while someone may mount it: commit deactivates it
// and keeps the thin id; mounts() re-activates on demand, which is also what
// brings devices back after a reboot. Views are read-only thin snapshots of
// the committed parent, activated with the READONLY flag.
//
// Hot path (Prepare with a parent): one transaction for the 'trying' row
// (origin checked in it), create_snap without a status query when the
// origin is known inactive, the device activated right there, so mounts()
// answers from memory; a parent that keeps getting children has a warm
// spare (spares.ts) that turns all of that into one rename.
//
// Crash safety: the devices table (devices.ts) gets a 'trying' row, in its
// own committed transaction, before the pool is asked for a thin id, and
// 'ready' after; removal is 'deleting' (in the core's transaction) and the
// row goes only once the pool dropped the id. Whatever kill -9 interrupts,
// the next start-up's destroy()/cleanup() finds it through the rows.

import type { Backend, BackendSnapshot, CleanupReport } from '../../core/backend.js';
import { Kind, type Usage } from '../../snapshots/snapshotter.js';
import type { Mount } from '../../snapshots/mount.js';
import type { MetaStore, Tx } from '../../storage/metastore.js';
import type { CoreLogger } from '../../base/log.js';
import { activate, devicePath, listDevices, removeDevice } from '../../sys/dm.js';
import { createSnapAsync, createThin, poolStatus, thinTable } from '../../sys/dm-thin.js';
import type { FreeSpace } from '../../core/backend.js';
import { growExt4, makeExt4 } from '../../sys/exec.js';
import { ext4ImageDamage } from '../../sys/ext4check.js';
import { AlreadyExistsError, DataLossError, FailedPreconditionError, NotFoundError, ResourceExhaustedError, UnavailableError, errorMessage } from '../../errdefs.js';
import { poolNameOf, validate, type DevmapperConfig } from './config.js';
import { faultPoint } from '../../base/faults.js';
import { PoolSpace, closeOwnedPool, openPool, type PoolHandle } from './pool.js';
import { SparePool } from './spares.js';
import { ThinDevices } from './thin-devices.js';
import {
  BASE_SNAPSHOT_ID,
  SPARE_ROW_BASE,
  allDevices,
  getDevice,
  isSpareRow,
  setMapped,
  setState,
  type DeviceRow,
} from './devices.js';

const noLog: CoreLogger = () => {};

/** DevmapperBackend implements Backend with dm-thin devices. */
export class DevmapperBackend implements Backend {
  readonly name = 'devmapper';
  private pool: PoolHandle | undefined;
  private readonly poolName: string;
  private readonly spares: SparePool;
  /** fresh holds rows create() just activated, for the mounts() call that follows it. */
  private readonly fresh = new Map<number, DeviceRow>();
  private readonly space: PoolSpace;
  private readonly thin: ThinDevices;

  constructor(
    readonly cfg: DevmapperConfig,
    private readonly store: MetaStore,
    private readonly log: CoreLogger = noLog,
  ) {
    this.poolName = poolNameOf(cfg);
    this.space = new PoolSpace(this.poolName);
    this.thin = new ThinDevices({
      store,
      log,
      poolName: this.poolName,
      discardOnRemove: cfg.discardOnRemove,
      poolPath: () => this.poolPath,
      deviceName: (id) => this.deviceName(id),
    });
    this.spares = new SparePool(
      {
        store,
        log,
        poolPath: () => this.poolPath,
        spareName: (thinId) => this.deviceName(SPARE_ROW_BASE - thinId),
        snapshot: async (thinId, origin) => {
          if (this.thin.mayBeActive.has(origin.snapshotId)) this.thin.snapshotThin(thinId, origin);
          else await createSnapAsync(this.poolName, thinId, origin.thinId);
        },
        markFaulty: (row) => this.thin.markFaulty(row),
        release: (row) => this.thin.release(row),
      },
      cfg.warmSpares,
    );
  }

  /** deviceName is the dm name of snapshot id's device. */
  deviceName(id: number): string {
    if (isSpareRow(id)) return `${this.poolName}-spare-${SPARE_ROW_BASE - id}`;
    return id === BASE_SNAPSHOT_ID ? `${this.poolName}-base` : `${this.poolName}-snap-${id}`;
  }

  async init(): Promise<void> {
    validate(this.cfg);
    this.pool = openPool(this.cfg);
    if (this.pool.fresh) {
      // A new metadata file means an empty pool: rows from an earlier pool
      // name thin ids that no longer exist.
      const stale = this.store.write((tx) => {
        const n = allDevices(tx).length;
        tx.prepare('DELETE FROM dm_devices').run();
        return n;
      });
      if (stale > 0) this.log('warn', 'thin-pool metadata was re-created; dropped stale device rows', { rows: stale });
    }
    // Spares never outlive a run: their devices go first (a spare's thin id
    // cannot be deleted while active), then their rows and thin ids.
    const snapPrefix = `${this.poolName}-snap-`;
    for (const d of listDevices()) {
      if (d.name.startsWith(`${this.poolName}-spare-`)) await this.thin.deactivate(d.name);
      else if (d.name.startsWith(snapPrefix)) this.thin.mayBeActive.add(Number(d.name.slice(snapPrefix.length)));
    }
    // Finish removals a crash interrupted (their snapshots are already gone).
    for (const row of this.store.read((tx) => allDevices(tx))) {
      if (row.state === 'deleting' || isSpareRow(row.snapshotId)) await this.thin.release(row);
    }
    await this.ensureBase();
  }

  async create(snap: BackendSnapshot): Promise<void> {
    const originId = snap.parent ? snap.parent.id : BASE_SNAPSHOT_ID;
    const readOnly = snap.kind === Kind.View;
    const name = this.deviceName(snap.id);
    if (!readOnly) {
      const taken = await this.spares.take(originId, snap.id, snap.sizeBytes ?? 0, name);
      if (taken) {
        // On a throw the core's undo (destroy) releases the taken device.
        if (taken.active) this.checkInherited(snap, name);
        if (taken.active) this.fresh.set(snap.id, taken.row);
        this.spares.used(originId, true);
        return;
      }
    }
    let origin: DeviceRow | undefined;
    const row = await this.thin.makeDevice(
      snap.id,
      (tx) => {
        origin = getDevice(tx, originId);
        if (!origin || origin.state !== 'ready') {
          throw new NotFoundError(snap.parent ? `parent snapshot ${originId} has no thin device` : 'the base device is not ready');
        }
        const size = readOnly ? origin.size : Math.max(origin.size, snap.sizeBytes ?? 0);
        return { size, readOnly, originThin: origin.thinId };
      },
      (thinId) => this.thin.snapshotThin(thinId, origin!),
    );
    faultPoint('devmapper:create:after-thin');
    // A fresh snapshot id has no device yet: activate it without asking.
    try {
      activate(name, [thinTable(this.poolPath, row.thinId, row.size / 512)], { readOnly });
    } catch (err) {
      if (!(err instanceof AlreadyExistsError)) throw err;
      await this.thin.activateRow(row);
    }
    // On a throw the core's undo (destroy) releases the new device and its row.
    this.checkInherited(snap, name);
    if (row.size > origin!.size) {
      // The new device is bigger than its origin: grow the filesystem to fill it.
      // The range past the origin's size was never mapped: it reads as zeros,
      // and stays so on a partial write only in a pool that zeroes new blocks.
      await growExt4(devicePath(name), { prezeroed: this.pool?.zeroesNewBlocks === true });
      faultPoint('devmapper:create:after-activate');
    }
    this.store.write((tx) => setState(tx, snap.id, 'ready'));
    this.fresh.set(snap.id, { ...row, state: 'ready' });
    if (!readOnly) this.spares.used(originId, false);
  }

  async mounts(snap: BackendSnapshot): Promise<Mount[]> {
    let row = this.fresh.get(snap.id);
    if (row) {
      this.fresh.delete(snap.id);
    } else {
      row = this.thin.readyRow(snap.id);
      await this.thin.activateRow(row);
    }
    const options = row.readOnly ? ['ro', 'noload'] : ['rw'];
    return [{ type: this.cfg.fsType, source: devicePath(this.deviceName(snap.id)), options: [...options, ...this.cfg.mountOptions] }];
  }

  async commit(snap: BackendSnapshot): Promise<Usage> {
    this.fresh.delete(snap.id);
    const row = this.thin.readyRow(snap.id);
    const name = this.deviceName(snap.id);
    await this.thin.activateRow(row);
    const measured = this.thin.measure(name);
    this.refuseIfDry(snap);
    faultPoint('devmapper:commit:before-deactivate');
    // Deactivate: a committed device is never written again, and an inactive
    // origin needs no suspend when children are snapshotted from it. A
    // caller may still hold it mounted (containerd's own test suite commits
    // before unmounting); then it stays active, children are snapshotted
    // with a suspend, and removal or close() deactivates it later.
    try {
      await removeDevice(name, { tries: 3 });
      this.thin.mayBeActive.delete(snap.id);
    } catch (err) {
      if (!(err instanceof FailedPreconditionError)) throw err;
      this.thin.mayBeActive.add(snap.id);
      this.log('debug', 'committed device still in use; left active', { device: name });
    }
    this.store.write((tx) => setMapped(tx, snap.id, measured.mapped, measured.inodes));
    faultPoint('devmapper:commit:after-backend');
    return this.thin.diff(measured, snap);
  }

  async usage(snap: BackendSnapshot): Promise<Usage> {
    const row = this.thin.readyRow(snap.id);
    if (row.mappedBytes !== null && row.inodes !== null) {
      return this.thin.diff({ mapped: row.mappedBytes, inodes: row.inodes }, snap);
    }
    await this.thin.activateRow(row);
    return this.thin.diff(this.thin.measure(this.deviceName(snap.id)), snap);
  }

  detach(snap: BackendSnapshot, tx: Tx): void {
    if (getDevice(tx, snap.id)) setState(tx, snap.id, 'deleting');
  }

  reattach(snap: BackendSnapshot): void {
    this.store.write((tx) => {
      if (getDevice(tx, snap.id)?.state === 'deleting') setState(tx, snap.id, 'ready');
    });
  }

  async destroy(snap: BackendSnapshot): Promise<void> {
    this.fresh.delete(snap.id);
    await this.spares.drop(snap.id);
    const row = this.store.read((tx) => getDevice(tx, snap.id));
    if (!row) {
      await this.thin.deactivate(this.deviceName(snap.id));
      return;
    }
    await this.thin.release(row);
  }

  async cleanup(live: ReadonlySet<number>): Promise<CleanupReport> {
    const removed: string[] = [];
    const prefix = `${this.poolName}-snap-`;
    for (const d of listDevices()) {
      if (!d.name.startsWith(prefix)) continue;
      const id = Number(d.name.slice(prefix.length));
      if (Number.isInteger(id) && live.has(id)) continue;
      await this.thin.deactivate(d.name);
      removed.push(`device ${d.name}`);
    }
    const sparePrefix = `${this.poolName}-spare-`;
    for (const d of listDevices()) {
      if (!d.name.startsWith(sparePrefix) || this.spares.ownsRow(SPARE_ROW_BASE - Number(d.name.slice(sparePrefix.length)))) continue;
      await this.thin.deactivate(d.name);
      removed.push(`device ${d.name}`);
    }
    for (const row of this.store.read((tx) => allDevices(tx))) {
      // faulty rows hold ids some other user of a shared pool owns: never ours to delete.
      if (row.snapshotId === BASE_SNAPSHOT_ID || row.state === 'faulty' || live.has(row.snapshotId)) continue;
      if (this.spares.ownsRow(row.snapshotId)) continue;
      try {
        await this.thin.release(row);
        removed.push(`thin ${row.thinId} (snapshot ${row.snapshotId}, ${row.state})`);
      } catch (err) {
        this.log('warn', 'could not release thin device', { thinId: row.thinId, error: errorMessage(err) });
      }
    }
    return { removed };
  }

  /** sparesSettled resolves once no warm spare is being made in the background (tests). */
  sparesSettled(): Promise<void> {
    return this.spares.settled();
  }

  /** freeSpace is the pool's unallocated data space (pool.ts, PoolSpace), for the core's --min-free guard. */
  freeSpace(opts?: { fresh?: boolean }): FreeSpace {
    return this.space.read(opts);
  }

  /**
   * close releases what nobody uses when tsblock owns the pool: idle devices
   * (mounts() re-activates on demand) and then the pool, whose loops
   * auto-clear. Devices a container or VM still holds answer EBUSY and stay,
   * and so does the pool under them. An operator's pool is left alone.
   */
  async close(): Promise<void> {
    await this.spares.stop();
    if (!this.pool?.owned) return;
    const prefix = `${this.poolName}-`;
    let busy = 0;
    for (const d of listDevices()) {
      if (!d.name.startsWith(prefix)) continue;
      try {
        await removeDevice(d.name, { tries: 1 });
      } catch (err) {
        if (!(err instanceof NotFoundError)) busy++;
      }
    }
    if (busy > 0) {
      this.log('info', 'devices still in use; leaving the thin-pool up', { pool: this.poolName, busy });
      return;
    }
    try {
      await removeDevice(this.poolName, { tries: 1 });
      this.pool = undefined;
    } catch (err) {
      this.log('info', 'thin-pool still in use; leaving it up', { pool: this.poolName, error: errorMessage(err) });
    }
  }

  /**
   * shutdown removes every device of this backend and, for an owned pool,
   * the pool itself (thin ids and files stay). Tests use it to simulate a
   * reboot; an operator can use it before detaching storage.
   */
  async shutdown(): Promise<void> {
    await this.spares.stop();
    const prefix = `${this.poolName}-`;
    for (const d of listDevices()) {
      if (d.name.startsWith(prefix)) await this.thin.deactivate(d.name);
    }
    if (this.pool) await closeOwnedPool(this.pool);
    this.pool = undefined;
  }

  // ---- internals ------------------------------------------------------------

  /**
   * refuseIfDry refuses a Commit while the pool is out of data space
   * (error_if_no_space): writes to the snapshot may have failed underneath
   * its filesystem, in writeback after the writer was told they succeeded
   * (a layer applied by containerd, then unmounted: nobody saw the error),
   * so its content may be incomplete and must not become a layer. The pool
   * leaves that mode by itself once blocks are freed. One status ioctl
   * (noflush).
   */
  private refuseIfDry(snap: BackendSnapshot): void {
    const st = poolStatus(this.poolName, { noflush: true });
    if (st.mode !== 'out_of_data_space') return;
    throw new ResourceExhaustedError(
      `thin-pool ${this.poolName} ran out of data space (${st.usedDataBlocks}/${st.totalDataBlocks} blocks used) while snapshot id ${snap.id} was written: ` +
        'writes to it failed, so it is not committed; free space (remove images, then let containerd collect garbage) or grow the pool, then try again',
    );
  }

  /**
   * checkInherited verifies the ext4 superblock and group descriptor
   * checksums (sys/ext4check.ts) on the new, just activated device: a thin
   * snapshot holds exactly its origin's blocks, so this reads the parent's
   * metadata without activating the parent. A child of a damaged layer would
   * inherit the damage and fail, or worse, at a container's mount: it is
   * refused here with DATA_LOSS naming the parent (two reads of the first
   * blocks; docs/reliability.md).
   */
  private checkInherited(snap: BackendSnapshot, name: string): void {
    let damage: string | undefined;
    try {
      damage = ext4ImageDamage(devicePath(name));
    } catch (err) {
      damage = `unreadable: ${errorMessage(err)}`;
    }
    if (damage === undefined) return;
    const what = snap.parent
      ? `the thin device of parent snapshot id ${snap.parent.id} (${this.deviceName(snap.parent.id)})`
      : `the base thin device (${this.deviceName(BASE_SNAPSHOT_ID)})`;
    throw new DataLossError(
      `${what} is damaged: ${damage}; remove the snapshots built on it and pull the image again ("tsblock doctor" lists damaged devices)`,
    );
  }

  private get poolPath(): string {
    if (!this.pool) throw new UnavailableError('devmapper backend is not initialised');
    return this.pool.path;
  }

  // ensureBase makes the formatted base device once per pool. A 'trying'
  // base from a crash is thrown away and made again.
  private async ensureBase(): Promise<void> {
    const existing = this.store.read((tx) => getDevice(tx, BASE_SNAPSHOT_ID));
    if (existing?.state === 'ready') {
      // It must be inactive so first layers can snapshot it without a suspend.
      await this.thin.deactivate(this.deviceName(BASE_SNAPSHOT_ID));
      return;
    }
    if (existing) await this.thin.release(existing);
    const name = this.deviceName(BASE_SNAPSHOT_ID);
    await this.thin.deactivate(name);
    const row = await this.thin.makeDevice(BASE_SNAPSHOT_ID, () => ({ size: this.cfg.baseSize, readOnly: false, originThin: null }), (thinId) => createThin(this.poolName, thinId));
    faultPoint('devmapper:base:after-thin');
    await this.thin.activateRow(row);
    try {
      // A new thin device reads zeros wherever it was not written; in a pool
      // that also zeroes new blocks, mkfs can mark the inode tables zeroed
      // instead of leaving them to the kernel's lazy init, which otherwise
      // writes them out again in every snapshot mounted rw (provisioning
      // thin blocks per container and competing with its first I/O).
      await makeExt4(devicePath(name), { noLostFound: true, rootMode: 0o755, prezeroed: this.pool?.zeroesNewBlocks === true });
      faultPoint('devmapper:base:after-mkfs');
      const m = this.thin.measure(name);
      await removeDevice(name);
      this.store.write((tx) => {
        setMapped(tx, BASE_SNAPSHOT_ID, m.mapped, m.inodes);
        setState(tx, BASE_SNAPSHOT_ID, 'ready');
      });
      this.log('info', 'made the base thin device', { pool: this.poolName, thinId: row.thinId, size: this.cfg.baseSize });
    } catch (err) {
      await this.thin.release(row).catch(() => {});
      throw err;
    }
  }
}
