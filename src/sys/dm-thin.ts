// dm-thin holds the thin-provisioning verbs on top of src/sys/dm.ts: pool
// messages (create_thin, create_snap, delete) and parsers for the status
// lines of the thin-pool and thin targets (formats from the kernel's
// Documentation/admin-guide/device-mapper/thin-provisioning.rst).

import { InternalError } from '../errdefs.js';
import { message, messageAsync, status } from './dm.js';

/** THIN_ID_MAX is the largest thin device id the pool accepts (24 bits). */
export const THIN_ID_MAX = (1 << 24) - 1;

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > THIN_ID_MAX) throw new RangeError(`thin id ${id} is outside 0..${THIN_ID_MAX}`);
}

/** createThin makes a new, empty thin device `thinId` in the pool (AlreadyExistsError if taken). */
export function createThin(pool: string, thinId: number): void {
  checkId(thinId);
  message(pool, 0, `create_thin ${thinId}`);
}

/**
 * createSnap makes thin device `thinId` a snapshot of `originId`. If the
 * origin is active it must be suspended around this call (the caller's job).
 */
export function createSnap(pool: string, thinId: number, originId: number): void {
  checkId(thinId);
  checkId(originId);
  message(pool, 0, `create_snap ${thinId} ${originId}`);
}

/** createSnapAsync is createSnap with the pool message sent from a worker thread (background work). */
export async function createSnapAsync(pool: string, thinId: number, originId: number): Promise<void> {
  checkId(thinId);
  checkId(originId);
  await messageAsync(pool, 0, `create_snap ${thinId} ${originId}`);
}

/** deleteThin releases thin device `thinId` (NotFoundError if the pool has no such id; it must not be active). */
export function deleteThin(pool: string, thinId: number): void {
  checkId(thinId);
  message(pool, 0, `delete ${thinId}`);
}

/** PoolStatus is a parsed thin-pool status line. */
export interface PoolStatus {
  transactionId: number;
  usedMetadataBlocks: number;
  totalMetadataBlocks: number;
  usedDataBlocks: number;
  totalDataBlocks: number;
  /** mode is rw, ro (metadata trouble) or out_of_data_space. */
  mode: 'rw' | 'ro' | 'out_of_data_space';
  needsCheck: boolean;
  /** failed is true for the "Fail" status: the pool is unusable. */
  failed: boolean;
  flags: string[];
}

/** parsePoolStatus parses `<tid> <used>/<total meta> <used>/<total data> <held root> <mode> …`. */
export function parsePoolStatus(line: string): PoolStatus {
  const f = line.trim().split(/\s+/);
  if (f[0] === 'Fail' || f[0] === 'Error') {
    return { transactionId: 0, usedMetadataBlocks: 0, totalMetadataBlocks: 0, usedDataBlocks: 0, totalDataBlocks: 0, mode: 'ro', needsCheck: true, failed: true, flags: [f[0]] };
  }
  const frac = (s: string | undefined): [number, number] => {
    const m = /^(\d+)\/(\d+)$/.exec(s ?? '');
    if (!m) throw new InternalError(`cannot parse thin-pool status ${JSON.stringify(line)}`);
    return [Number(m[1]), Number(m[2])];
  };
  const [usedMeta, totalMeta] = frac(f[1]);
  const [usedData, totalData] = frac(f[2]);
  const flags = f.slice(4);
  const mode = flags.includes('out_of_data_space') ? 'out_of_data_space' : flags.includes('ro') ? 'ro' : 'rw';
  return {
    transactionId: Number(f[0]),
    usedMetadataBlocks: usedMeta,
    totalMetadataBlocks: totalMeta,
    usedDataBlocks: usedData,
    totalDataBlocks: totalData,
    mode,
    needsCheck: flags.includes('needs_check'),
    failed: false,
    flags,
  };
}

/** ThinStatus is a parsed thin target status line. */
export interface ThinStatus {
  mappedSectors: number;
  /** highestMappedSector is undefined when nothing is mapped. */
  highestMappedSector?: number;
  failed: boolean;
}

/** parseThinStatus parses `<nr mapped sectors> <highest mapped sector|->` (or "Fail"). */
export function parseThinStatus(line: string): ThinStatus {
  const f = line.trim().split(/\s+/);
  if (f[0] === 'Fail') return { mappedSectors: 0, failed: true };
  if (f.length < 2 || !/^\d+$/.test(f[0]!)) throw new InternalError(`cannot parse thin status ${JSON.stringify(line)}`);
  return {
    mappedSectors: Number(f[0]),
    highestMappedSector: f[1] === '-' ? undefined : Number(f[1]),
    failed: false,
  };
}

/** poolStatus reads and parses a thin-pool device's status (`noflush`: as of the last metadata commit, see status()). */
export function poolStatus(pool: string, opts: { noflush?: boolean } = {}): PoolStatus {
  const t = status(pool, opts).find((x) => x.type === 'thin-pool');
  if (!t) throw new InternalError(`device ${pool} has no thin-pool target`);
  return parsePoolStatus(t.params);
}

/** thinStatus reads and parses an active thin device's status. */
export function thinStatus(name: string): ThinStatus {
  const t = status(name).find((x) => x.type === 'thin');
  if (!t) throw new InternalError(`device ${name} has no thin target`);
  return parseThinStatus(t.params);
}

/**
 * POOL_FEATURES are the thin-pool features of a pool tsblock owns:
 *   error_if_no_space: a full pool fails writes at once (the container sees
 *     ENOSPC/EIO) instead of queueing every volume's I/O for 60 s;
 *   block zeroing stays on (no skip_block_zeroing): a newly provisioned block
 *     that is only partly written reads zeros in the rest, never data of a
 *     removed snapshot (a Kata/Firecracker guest reads its raw device).
 */
export const POOL_FEATURES = ['error_if_no_space'] as const;

/**
 * poolZeroesNewBlocks reads a thin-pool table line (`<meta> <data> <block
 * sectors> <low water> <n> <feature>...`, as TABLE_STATUS returns it) and
 * says whether the pool zeroes a newly provisioned block before a partial
 * write lands in it, i.e. whether every block of a fresh thin device that
 * nobody wrote reads as zeros (no `skip_block_zeroing`).
 */
export function poolZeroesNewBlocks(tableParams: string): boolean {
  const f = tableParams.trim().split(/\s+/);
  const n = Number(f[4]);
  if (f.length < 5 || !Number.isInteger(n) || n < 0 || f.length < 5 + n) {
    throw new InternalError(`cannot parse thin-pool table ${JSON.stringify(tableParams)}`);
  }
  return !f.slice(5, 5 + n).includes('skip_block_zeroing');
}

/** thinPoolTable is the one-line table of a thin-pool over metadata and data devices. */
export function thinPoolTable(metaDev: string, dataDev: string, dataSectors: number, blockSectors: number, lowWaterBlocks: number): { start: number; length: number; type: string; params: string } {
  const features = `${POOL_FEATURES.length} ${POOL_FEATURES.join(' ')}`;
  return { start: 0, length: dataSectors, type: 'thin-pool', params: `${metaDev} ${dataDev} ${blockSectors} ${lowWaterBlocks} ${features}` };
}

/** thinTable is the one-line table of thin device `thinId` of `poolDev`, `sectors` long. */
export function thinTable(poolDev: string, thinId: number, sectors: number): { start: number; length: number; type: string; params: string } {
  return { start: 0, length: sectors, type: 'thin', params: `${poolDev} ${thinId}` };
}
