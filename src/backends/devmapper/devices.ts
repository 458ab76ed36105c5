// devices is the devmapper backend's own table: one row per thin device it
// allocated, keyed by snapshot id (0 = the base device). A row is written in
// a committed transaction *before* the pool is told to create the thin id
// (state 'trying'), so a crash at any point leaves a row naming every id the
// pool may hold: ids never leak and a live id is never handed out twice.

import type { Migration } from '../../storage/schema.js';
import type { Tx } from '../../storage/metastore.js';
import { THIN_ID_MAX } from '../../sys/dm-thin.js';
import { ResourceExhaustedError } from '../../errdefs.js';

/** DeviceState is a thin device's life-cycle state. */
export type DeviceState = 'trying' | 'ready' | 'deleting' | 'faulty';

/** BASE_SNAPSHOT_ID is the row of the formatted base device (snapshot ids start at 1). */
export const BASE_SNAPSHOT_ID = 0;

/** devmapperMigrations add the devices table to the MetaStore. */
export const devmapperMigrations: readonly Migration[] = [
  {
    id: 'devmapper-1',
    sql: `
      CREATE TABLE dm_devices (
        snapshot_id   INTEGER PRIMARY KEY,
        thin_id       INTEGER NOT NULL UNIQUE,
        state         TEXT NOT NULL CHECK (state IN ('trying', 'ready', 'deleting', 'faulty')),
        size          INTEGER NOT NULL,
        read_only     INTEGER NOT NULL DEFAULT 0,
        origin_thin   INTEGER,
        mapped_bytes  INTEGER,
        inodes        INTEGER,
        updated_at    INTEGER NOT NULL
      );
    `,
  },
];

/** DeviceRow is one dm_devices row. */
export interface DeviceRow {
  snapshotId: number;
  thinId: number;
  state: DeviceState;
  /** size is the device's virtual size in bytes. */
  size: number;
  readOnly: boolean;
  originThin: number | null;
  /** mappedBytes is the pool space mapped at commit (committed devices only). */
  mappedBytes: number | null;
  /** inodes is the filesystem's used inode count at commit. */
  inodes: number | null;
}

interface RawRow {
  snapshot_id: number;
  thin_id: number;
  state: DeviceState;
  size: number;
  read_only: number;
  origin_thin: number | null;
  mapped_bytes: number | null;
  inodes: number | null;
}

function toRow(r: RawRow): DeviceRow {
  return {
    snapshotId: r.snapshot_id,
    thinId: r.thin_id,
    state: r.state,
    size: r.size,
    readOnly: r.read_only !== 0,
    originThin: r.origin_thin,
    mappedBytes: r.mapped_bytes,
    inodes: r.inodes,
  };
}

/** getDevice returns the row of a snapshot, if any. */
export function getDevice(tx: Tx, snapshotId: number): DeviceRow | undefined {
  const r = tx.prepare('SELECT * FROM dm_devices WHERE snapshot_id = ?').get(snapshotId) as RawRow | undefined;
  return r ? toRow(r) : undefined;
}

/** allDevices lists every row. */
export function allDevices(tx: Tx): DeviceRow[] {
  return (tx.prepare('SELECT * FROM dm_devices ORDER BY snapshot_id').all() as RawRow[]).map(toRow);
}

/**
 * nextThinId picks a fresh thin id: one above the highest id in use, or
 * (after wrapping at 2^24) the lowest free one.
 */
function nextThinId(tx: Tx): number {
  const max = (tx.prepare('SELECT MAX(thin_id) AS m FROM dm_devices').get() as { m: number | null }).m;
  const thinId = max === null ? 0 : max + 1;
  if (thinId <= THIN_ID_MAX) return thinId;
  const free = tx
    .prepare(
      `SELECT 0 AS id WHERE NOT EXISTS (SELECT 1 FROM dm_devices WHERE thin_id = 0)
       UNION ALL
       SELECT d.thin_id + 1 FROM dm_devices d
        WHERE d.thin_id < ? AND NOT EXISTS (SELECT 1 FROM dm_devices e WHERE e.thin_id = d.thin_id + 1)
       ORDER BY 1 LIMIT 1`,
    )
    .get(THIN_ID_MAX) as { id: number } | undefined;
  if (!free) throw new ResourceExhaustedError('the thin pool has no free device id');
  return free.id;
}

function insertRow(tx: Tx, r: Omit<DeviceRow, 'mappedBytes' | 'inodes'>): DeviceRow {
  tx.prepare(
    `INSERT INTO dm_devices (snapshot_id, thin_id, state, size, read_only, origin_thin, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?)`,
  ).run(r.snapshotId, r.thinId, r.state, r.size, r.readOnly ? 1 : 0, r.originThin, Date.now());
  return { ...r, mappedBytes: null, inodes: null };
}

/** allocateDevice inserts a 'trying' row with a fresh thin id (see nextThinId). */
export function allocateDevice(tx: Tx, d: { snapshotId: number; size: number; readOnly: boolean; originThin: number | null }): DeviceRow {
  return insertRow(tx, { ...d, thinId: nextThinId(tx), state: 'trying' });
}

/**
 * SPARE_ROW_BASE: rows at or below it are warm spares (spares.ts), keyed
 * SPARE_ROW_BASE - thinId. Faulty rows use -1 - thinId (≥ -2^24) and
 * snapshots use ids ≥ 0, so the three never collide.
 */
export const SPARE_ROW_BASE = -(2 ** 32);

/** isSpareRow tells whether a row's snapshot id is a spare's key. */
export function isSpareRow(snapshotId: number): boolean {
  return snapshotId <= SPARE_ROW_BASE;
}

/**
 * allocateSpare inserts a spare's row, a snapshot-to-be of `origin`, before
 * the pool is told (like allocateDevice). Spare rows are 'ready' from the
 * start: their state means nothing, start-up releases every one of them.
 */
export function allocateSpare(tx: Tx, origin: DeviceRow): DeviceRow {
  const thinId = nextThinId(tx);
  return insertRow(tx, { snapshotId: SPARE_ROW_BASE - thinId, thinId, state: 'ready', size: origin.size, readOnly: false, originThin: origin.thinId });
}

/** adoptSpare re-keys a spare's row to the snapshot that takes it over. */
export function adoptSpare(tx: Tx, spareRowId: number, snapshotId: number): void {
  tx.prepare("UPDATE dm_devices SET snapshot_id = ?, state = 'ready', updated_at = ? WHERE snapshot_id = ?").run(snapshotId, Date.now(), spareRowId);
}

/** setState moves a row to a new state. */
export function setState(tx: Tx, snapshotId: number, state: DeviceState): void {
  tx.prepare('UPDATE dm_devices SET state = ?, updated_at = ? WHERE snapshot_id = ?').run(state, Date.now(), snapshotId);
}

/** setMapped records the pool space and inodes a committed device uses. */
export function setMapped(tx: Tx, snapshotId: number, bytes: number, inodes: number): void {
  tx.prepare('UPDATE dm_devices SET mapped_bytes = ?, inodes = ?, updated_at = ? WHERE snapshot_id = ?').run(bytes, inodes, Date.now(), snapshotId);
}

/** deleteDevice drops a row once the pool no longer holds its thin id. */
export function deleteDevice(tx: Tx, snapshotId: number): void {
  tx.prepare('DELETE FROM dm_devices WHERE snapshot_id = ?').run(snapshotId);
}
