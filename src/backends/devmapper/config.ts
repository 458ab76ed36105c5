// config holds the devmapper backend's settings, their defaults and one
// validate() that reports every problem at once.

import { createHash } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { InvalidArgumentError } from '../../errdefs.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** DevmapperConfig configures one devmapper backend. */
export interface DevmapperConfig {
  /** root holds the owned pool's data/metadata files (<root>/devmapper). */
  root: string;
  /** poolName names an existing thin-pool to use (production); unset = tsblock owns a loop-backed pool. */
  poolName?: string;
  /** ownedPoolName names the pool tsblock creates when poolName is unset (default derived from root). */
  ownedPoolName?: string;
  /** dataSize is the owned pool's sparse data file size in bytes (default 100 GiB). */
  dataSize: number;
  /** metadataSize is the owned pool's sparse metadata file size in bytes. */
  metadataSize: number;
  /** blockSizeSectors is the pool's allocation unit in 512-byte sectors (default 128 = 64 KiB). */
  blockSizeSectors: number;
  /** baseSize is the virtual size of every thin device unless a snapshot asks for more (default 10 GiB). */
  baseSize: number;
  /** discardOnRemove discards a device's blocks before deleting it (passes space back through discard_passdown). */
  discardOnRemove: boolean;
  /** fsType is the filesystem on every device; only ext4 for now. */
  fsType: 'ext4';
  /** mountOptions are appended to every returned mount. */
  mountOptions: string[];
  /**
   * warmSpares is how many parents may hold a ready-made spare snapshot
   * (spares.ts; default DEFAULT_WARM_SPARES, 0 = off). Environment:
   * TSBLOCK_DM_WARM_SPARES.
   */
  warmSpares: number;
}

/** DEFAULT_WARM_SPARES is the default cap on parents holding a warm spare. */
export const DEFAULT_WARM_SPARES = 8;
/** WARM_SPARES_ENV overrides warmSpares for a daemon (benchmarks, operators). */
export const WARM_SPARES_ENV = 'TSBLOCK_DM_WARM_SPARES';

/** DEFAULT_DATA_SIZE is the owned pool's default data size (sparse). */
export const DEFAULT_DATA_SIZE = 100 * GiB;
/** DEFAULT_BASE_SIZE is each thin device's default virtual size. */
export const DEFAULT_BASE_SIZE = 10 * GiB;
/** DEFAULT_BLOCK_SECTORS is 64 KiB, the smallest size that keeps metadata small and CoW cheap. */
export const DEFAULT_BLOCK_SECTORS = 128;
/** MAX_METADATA_SIZE is the largest metadata device dm-thin uses (~15.8 GiB); more is ignored. */
export const MAX_METADATA_SIZE = 16 * GiB - 256 * MiB;

/**
 * defaultMetadataSize sizes metadata at 1/128 of the data (≈ 100 bytes per
 * 64 KiB block, room for many snapshots sharing blocks), at least 64 MiB.
 * The file is sparse, so generous costs nothing until used.
 */
export function defaultMetadataSize(dataSize: number): number {
  const v = Math.max(64 * MiB, Math.ceil(dataSize / 128 / MiB) * MiB);
  return Math.min(v, MAX_METADATA_SIZE);
}

/** defaultOwnedPoolName is "tsblock-<8 hex of the root path>": stable per root, distinct across roots. */
export function defaultOwnedPoolName(root: string): string {
  return `tsblock-${createHash('sha256').update(root).digest('hex').slice(0, 8)}`;
}

/** withDefaults fills every unset field. */
export function withDefaults(c: Partial<DevmapperConfig> & { root: string }): DevmapperConfig {
  const dataSize = c.dataSize ?? DEFAULT_DATA_SIZE;
  return {
    root: c.root,
    poolName: c.poolName,
    ownedPoolName: c.ownedPoolName ?? defaultOwnedPoolName(c.root),
    dataSize,
    metadataSize: c.metadataSize ?? defaultMetadataSize(dataSize),
    blockSizeSectors: c.blockSizeSectors ?? DEFAULT_BLOCK_SECTORS,
    baseSize: c.baseSize ?? DEFAULT_BASE_SIZE,
    discardOnRemove: c.discardOnRemove ?? false,
    fsType: c.fsType ?? 'ext4',
    mountOptions: c.mountOptions ?? [],
    warmSpares: c.warmSpares ?? DEFAULT_WARM_SPARES,
  };
}

/** poolNameOf is the name of the pool the backend uses. */
export function poolNameOf(c: DevmapperConfig): string {
  return c.poolName ?? c.ownedPoolName ?? defaultOwnedPoolName(c.root);
}

const NAME_RE = /^[A-Za-z0-9._+-]+$/;

/** validate returns nothing when c is usable, else throws one InvalidArgumentError listing every problem. */
export function validate(c: DevmapperConfig): void {
  const problems: string[] = [];
  if (!isAbsolute(c.root)) problems.push(`root ${JSON.stringify(c.root)} must be an absolute path`);
  const pool = poolNameOf(c);
  // <pool>-snap-<id> must fit DM_NAME_LEN (127 bytes) with a 24-bit id.
  if (!NAME_RE.test(pool) || pool.length > 100) problems.push(`pool name ${JSON.stringify(pool)} must be 1-100 of [A-Za-z0-9._+-]`);
  const bs = c.blockSizeSectors;
  if (!Number.isInteger(bs) || bs < 128 || bs > 2097152 || bs % 128 !== 0) {
    problems.push(`blockSizeSectors ${bs} must be a multiple of 128 between 128 (64 KiB) and 2097152 (1 GiB)`);
  }
  if (c.poolName === undefined) {
    if (!Number.isSafeInteger(c.dataSize) || c.dataSize < 64 * MiB || c.dataSize % (bs * 512) !== 0) {
      problems.push(`dataSize ${c.dataSize} must be at least 64 MiB and a multiple of the block size (${bs * 512} bytes)`);
    }
    if (!Number.isSafeInteger(c.metadataSize) || c.metadataSize < 2 * MiB || c.metadataSize % 4096 !== 0) {
      problems.push(`metadataSize ${c.metadataSize} must be at least 2 MiB and a multiple of 4096`);
    }
  }
  if (!Number.isSafeInteger(c.baseSize) || c.baseSize < 16 * MiB || c.baseSize % 4096 !== 0) {
    problems.push(`baseSize ${c.baseSize} must be at least 16 MiB and a multiple of 4096`);
  }
  if (!Number.isInteger(c.warmSpares) || c.warmSpares < 0 || c.warmSpares > 1024) problems.push(`warmSpares ${c.warmSpares} must be an integer in 0..1024`);
  if (c.fsType !== 'ext4') problems.push(`fsType ${JSON.stringify(c.fsType)} is not supported (only ext4)`);
  for (const o of c.mountOptions) {
    if (o.includes(',') || o === '') problems.push(`mount option ${JSON.stringify(o)} must be one non-empty option`);
  }
  if (problems.length > 0) throw new InvalidArgumentError(`invalid devmapper config: ${problems.join('; ')}`);
}
