// spares keeps warm spare devices: for a committed snapshot that new
// snapshots keep being made from (the top layer of an image that containers
// start from), one thin snapshot of it is made ahead of time and left
// active under a spare name. The next Prepare on that parent takes it over
// with one rename instead of create_snap + create/load/resume, which is
// where a Prepare's time goes (the table load alone waits for an RCU grace
// period in the kernel). A committed snapshot never changes, so a snapshot
// of it made earlier holds exactly what one made now would.
//
// Policy: a parent gets a spare from its second new active child on (a
// layer chain being unpacked uses each parent once and never gets one),
// and again each time its spare is taken; at most `max` parents hold one.
// The spare is made in the background, its ioctls on a worker thread, so
// the request that triggered it is not slowed.
//
// Crash safety: a spare's row (devices.ts, key SPARE_ROW_BASE - thinId) is
// committed before the pool is asked for its thin id, like every row.
// Spares are never kept across a restart: start-up removes every spare
// device and releases every spare row; close() releases them too. Taking
// one re-keys its row to the new snapshot in one transaction, then renames
// the device; a crash in between leaves an inactive, owned device that
// start-up's spare sweep and mounts() handle.

import type { MetaStore } from '../../storage/metastore.js';
import type { CoreLogger } from '../../base/log.js';
import { AlreadyExistsError, errorMessage } from '../../errdefs.js';
import { activateAsync, removeDevice, renameDevice } from '../../sys/dm.js';
import { thinTable } from '../../sys/dm-thin.js';
import { adoptSpare, allocateSpare, getDevice, type DeviceRow } from './devices.js';

/** SEEN_MAX bounds the memory of which parents were used once already. */
const SEEN_MAX = 4096;

interface Spare {
  row: DeviceRow;
  name: string;
}

/** SpareHost is what the pool of spares needs from the backend. */
export interface SpareHost {
  store: MetaStore;
  log: CoreLogger;
  poolPath(): string;
  /** spareName is the dm name of the spare with this thin id. */
  spareName(thinId: number): string;
  /** snapshot sends create_snap for thinId from origin (suspending an active origin). */
  snapshot(thinId: number, origin: DeviceRow): Promise<void>;
  /** markFaulty keeps a row whose thin id a shared pool already holds. */
  markFaulty(row: DeviceRow): void;
  /** release removes a row's device and thin id, then the row. */
  release(row: DeviceRow): Promise<void>;
}

/** SparePool tracks the warm spares of one backend, by origin snapshot id. */
export class SparePool {
  private readonly ready = new Map<number, Spare>();
  private readonly making = new Map<number, Promise<void>>();
  /** rows holds the row keys of every spare ready or being made (cleanup keeps them). */
  private readonly rows = new Set<number>();
  private readonly seen = new Set<number>();
  private stopped = false;

  constructor(
    private readonly host: SpareHost,
    private readonly max: number,
  ) {}

  /** ownsRow tells whether a spare row is one this pool is using (ready or being made). */
  ownsRow(snapshotId: number): boolean {
    return this.rows.has(snapshotId);
  }

  /**
   * take hands the spare of `originId` to new snapshot `snapshotId` if one
   * is ready and at least `sizeBytes` big (a bigger request needs a resize: no spare): the row is re-keyed, the device renamed to
   * `deviceName`. Returns the snapshot's row and whether its device is now
   * active under its own name (false only if the rename failed; mounts()
   * then activates it the ordinary way).
   */
  async take(originId: number, snapshotId: number, sizeBytes: number, deviceName: string): Promise<{ row: DeviceRow; active: boolean } | undefined> {
    const s = this.ready.get(originId);
    if (!s || sizeBytes > s.row.size) return undefined;
    this.ready.delete(originId);
    let row: DeviceRow | undefined;
    try {
      row = this.host.store.write((tx) => {
        if (getDevice(tx, snapshotId)) throw new AlreadyExistsError(`snapshot ${snapshotId} already has a thin device`);
        const origin = getDevice(tx, originId);
        if (!origin || origin.state !== 'ready' || origin.thinId !== s.row.originThin) return undefined;
        adoptSpare(tx, s.row.snapshotId, snapshotId);
        return getDevice(tx, snapshotId);
      });
    } catch (err) {
      this.ready.set(originId, s); // nothing changed: still a spare
      throw err;
    }
    this.rows.delete(s.row.snapshotId);
    if (!row) {
      void this.host.release(s.row).catch(() => {});
      return undefined;
    }
    try {
      renameDevice(s.name, deviceName);
      return { row, active: true };
    } catch (err) {
      this.host.log('warn', 'could not rename a spare device; activating it afresh', { device: s.name, error: errorMessage(err) });
      await removeDevice(s.name).catch(() => {});
      return { row, active: false };
    }
  }

  /**
   * used records that a new active snapshot was made from `originId` and,
   * per the policy above, starts making its next spare in the background.
   */
  used(originId: number, tookSpare: boolean): void {
    if (this.stopped) return;
    if (!tookSpare && !this.seen.has(originId)) {
      if (this.seen.size >= SEEN_MAX) this.seen.delete(this.seen.values().next().value!);
      this.seen.add(originId);
      return;
    }
    if (this.max === 0 || this.ready.has(originId) || this.making.has(originId) || this.ready.size + this.making.size >= this.max) return;
    const p = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.make(originId))
      .catch((err) => this.host.log('warn', 'could not make a spare device', { origin: originId, error: errorMessage(err) }))
      .finally(() => this.making.delete(originId));
    this.making.set(originId, p);
  }

  /** settled resolves once no spare is being made (tests, benchmarks). */
  async settled(): Promise<void> {
    await Promise.all([...this.making.values()]);
  }

  /** drop releases the spare of `originId` (its snapshot is going away), after any spare in the making. */
  async drop(originId: number): Promise<void> {
    this.seen.delete(originId);
    await this.making.get(originId);
    const s = this.ready.get(originId);
    if (!s) return;
    this.ready.delete(originId);
    this.rows.delete(s.row.snapshotId);
    await this.host.release(s.row);
  }

  /** stop makes no more spares and releases every one (close, shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.making.values()]);
    for (const originId of [...this.ready.keys()]) {
      try {
        await this.drop(originId);
      } catch (err) {
        this.host.log('warn', 'could not release a spare device', { origin: originId, error: errorMessage(err) });
      }
    }
  }

  private async make(originId: number): Promise<void> {
    if (this.stopped) return;
    const row = this.host.store.write((tx) => {
      const origin = getDevice(tx, originId);
      if (!origin || origin.state !== 'ready') return undefined;
      return { spare: allocateSpare(tx, origin), origin };
    });
    if (!row) return;
    const { spare, origin } = row;
    this.rows.add(spare.snapshotId);
    const name = this.host.spareName(spare.thinId);
    try {
      await this.host.snapshot(spare.thinId, origin);
    } catch (err) {
      this.rows.delete(spare.snapshotId);
      if (err instanceof AlreadyExistsError) this.host.markFaulty(spare);
      else await this.host.release(spare).catch(() => {});
      throw err;
    }
    try {
      await activateAsync(name, [thinTable(this.host.poolPath(), spare.thinId, spare.size / 512)]);
    } catch (err) {
      this.rows.delete(spare.snapshotId);
      await this.host.release(spare).catch(() => {});
      throw err;
    }
    if (this.stopped) {
      this.rows.delete(spare.snapshotId);
      await this.host.release(spare);
      return;
    }
    this.ready.set(originId, { row: spare, name });
  }
}
