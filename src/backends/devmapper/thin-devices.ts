// thin-devices owns the thin devices of one pool, as rows of dm_devices
// (devices.ts) and as kernel objects: allocating a thin id, snapshotting an
// origin (suspended around it when it may be live), activating, measuring
// and releasing a device. The backend (devmapper.ts) decides which snapshot
// needs what; every step here tolerates "already gone", so a crash at any
// point is finished by the next start (see devices.ts for the states).

import type { BackendSnapshot } from '../../core/backend.js';
import type { Usage } from '../../snapshots/snapshotter.js';
import type { MetaStore, Tx } from '../../storage/metastore.js';
import type { CoreLogger } from '../../base/log.js';
import { activate, deviceInfo, devicePath, discardDevice, removeDevice, suspend, resume } from '../../sys/dm.js';
import { createSnap, deleteThin, thinStatus, thinTable } from '../../sys/dm-thin.js';
import { readExt4Usage } from '../../sys/fsinfo.js';
import { AlreadyExistsError, FailedPreconditionError, InternalError, NotFoundError, UnavailableError, errorMessage } from '../../errdefs.js';
import { faultPoint } from '../../base/faults.js';
import { BASE_SNAPSHOT_ID, allocateDevice, deleteDevice, getDevice, type DeviceRow } from './devices.js';

/** ALLOCATE_TRIES bounds retries when a shared pool already holds an id we picked. */
const ALLOCATE_TRIES = 8;

/** ThinDevicesOptions is what the thin devices need from their backend. */
export interface ThinDevicesOptions {
  store: MetaStore;
  log: CoreLogger;
  poolName: string;
  /** discardOnRemove discards a writable device's blocks before it is removed. */
  discardOnRemove: boolean;
  /** poolPath is the pool's /dev/mapper path; it throws before the pool is open. */
  poolPath: () => string;
  /** deviceName is the dm name of a snapshot id's device. */
  deviceName: (id: number) => string;
}

/** ThinDevices makes, activates, measures and releases the thin devices of one pool. */
export class ThinDevices {
  /**
   * mayBeActive holds snapshot ids whose device may be live though committed
   * (left active at commit because in use, or found at start-up): only
   * these need a status query, and a suspend, before being snapshotted.
   */
  readonly mayBeActive = new Set<number>();

  constructor(private readonly o: ThinDevicesOptions) {}

  readyRow(id: number): DeviceRow {
    const row = this.o.store.read((tx) => getDevice(tx, id));
    if (!row) throw new NotFoundError(`snapshot ${id} has no thin device`);
    if (row.state !== 'ready') throw new FailedPreconditionError(`thin device of snapshot ${id} is ${row.state}`);
    return row;
  }

  // makeDevice commits a 'trying' row with a fresh thin id (spec, run in
  // that transaction, checks the origin and sizes the device), then runs
  // make (the pool message). If a shared pool already holds that id, the row
  // is kept as 'faulty' (the id is not ours to delete) and another is tried.
  async makeDevice(
    snapshotId: number,
    spec: (tx: Tx) => { size: number; readOnly: boolean; originThin: number | null },
    make: (thinId: number) => void,
  ): Promise<DeviceRow> {
    for (let attempt = 0; attempt < ALLOCATE_TRIES; attempt++) {
      const row = this.o.store.write((tx) => {
        const old = getDevice(tx, snapshotId);
        if (old) throw new AlreadyExistsError(`snapshot ${snapshotId} already has thin device ${old.thinId} (${old.state})`);
        return allocateDevice(tx, { snapshotId, ...spec(tx) });
      });
      try {
        make(row.thinId);
        return row;
      } catch (err) {
        if (!(err instanceof AlreadyExistsError)) throw err;
        this.markFaulty(row);
      }
    }
    throw new InternalError(`could not find a free thin id in pool ${this.o.poolName} after ${ALLOCATE_TRIES} tries`);
  }

  // markFaulty keeps a row whose thin id a shared pool already holds under
  // a key no snapshot uses, so the id is never picked (or deleted) again.
  markFaulty(row: DeviceRow): void {
    this.o.log('warn', 'thin id already used in the pool; skipping it', { thinId: row.thinId });
    this.o.store.write((tx) => {
      tx.prepare('UPDATE dm_devices SET snapshot_id = ?, state = ? WHERE snapshot_id = ?').run(-1 - row.thinId, 'faulty', row.snapshotId);
    });
  }

  // snapshotThin sends create_snap; an active origin must be suspended
  // around it so its data is consistent. Committed parents are inactive
  // unless mayBeActive says otherwise, and only those are asked.
  snapshotThin(thinId: number, origin: DeviceRow): void {
    if (!this.mayBeActive.has(origin.snapshotId)) {
      createSnap(this.o.poolName, thinId, origin.thinId);
      return;
    }
    const deviceName = this.o.deviceName(origin.snapshotId);
    const info = deviceInfo(deviceName);
    const active = info?.activeTable === true && !info.suspended;
    if (active) suspend(deviceName);
    try {
      createSnap(this.o.poolName, thinId, origin.thinId);
    } finally {
      if (active) resume(deviceName);
    }
  }

  // activateRow makes the device live with a /dev/mapper node, unless it is.
  async activateRow(row: DeviceRow): Promise<void> {
    const name = this.o.deviceName(row.snapshotId);
    const info = deviceInfo(name);
    if (info?.activeTable) {
      if (info.suspended) resume(name);
      return;
    }
    if (info) {
      // A device without a table: a crash between create and load. It must
      // be gone before the name can be created again.
      await this.deactivate(name);
    }
    activate(name, [thinTable(this.o.poolPath(), row.thinId, row.size / 512)], { readOnly: row.readOnly });
  }

  async deactivate(name: string): Promise<void> {
    try {
      await removeDevice(name);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }

  // release removes a row's device and thin id, then the row. Idempotent:
  // every step tolerates "already gone".
  async release(row: DeviceRow): Promise<void> {
    const name = this.o.deviceName(row.snapshotId);
    if (this.o.discardOnRemove && deviceInfo(name)?.activeTable && !row.readOnly) {
      try {
        discardDevice(name);
      } catch (err) {
        this.o.log('warn', 'discard failed', { device: name, error: errorMessage(err) });
      }
    }
    await this.deactivate(name);
    faultPoint('devmapper:remove:before-delete-thin');
    try {
      deleteThin(this.o.poolName, row.thinId);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    faultPoint('devmapper:remove:after-delete-thin');
    this.o.store.write((tx) => deleteDevice(tx, row.snapshotId));
    this.mayBeActive.delete(row.snapshotId);
  }

  measure(name: string): { mapped: number; inodes: number } {
    const st = thinStatus(name);
    if (st.failed) throw new UnavailableError(`thin device ${name} has failed`);
    let inodes = 0;
    try {
      inodes = readExt4Usage(devicePath(name)).inodesUsed;
    } catch {
      // not ext4 (yet): no inode count
    }
    return { mapped: st.mappedSectors * 512, inodes };
  }

  diff(m: { mapped: number; inodes: number }, snap: BackendSnapshot): Usage {
    const parentId = snap.parent ? snap.parent.id : BASE_SNAPSHOT_ID;
    const p = this.o.store.read((tx) => getDevice(tx, parentId));
    return {
      size: Math.max(0, m.mapped - (p?.mappedBytes ?? 0)),
      inodes: Math.max(0, m.inodes - (p?.inodes ?? 0)),
    };
  }
}
