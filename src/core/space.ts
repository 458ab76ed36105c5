// space is the low-space guard: before a new snapshot is made, the storage
// under it (the filesystem under the root for blockfile, the thin-pool for
// devmapper, via Backend.freeSpace) must keep a configured reserve free.
// Failing a Prepare early with ResourceExhausted is far better than letting
// a sparse image or a thin pool run dry under a running container, which
// turns into I/O errors inside its filesystem (or a read-only pool).
//
// Operators set the reserve with `--min-free SIZE|PCT` (config min_free,
// TSBLOCK_MIN_FREE); the metrics code can subscribe to `spaceEvents`.

import { EventEmitter } from 'node:events';
import { InvalidArgumentError, ResourceExhaustedError } from '../errdefs.js';
import { parseSize, formatSize } from '../base/size.js';
import type { FreeSpace } from './backend.js';

/** MinFree is the reserve: an absolute byte count and/or a percentage of the total (the larger wins). */
export interface MinFree {
  bytes?: number;
  percent?: number;
}

/** DEFAULT_MIN_FREE keeps 1% free unless configured (0 turns the guard off). */
export const DEFAULT_MIN_FREE: MinFree = { percent: 1 };

/** LowSpaceEvent is emitted on `spaceEvents` ('low-space') each time a create is refused. */
export interface LowSpaceEvent extends FreeSpace {
  threshold: number;
}

/** spaceEvents lets metrics count refusals: spaceEvents.on('low-space', (e: LowSpaceEvent) => …). */
export const spaceEvents = new EventEmitter();

/** parseMinFree reads "10G", "512M", "5%", "0" (off). */
export function parseMinFree(raw: string | number, what = '--min-free'): MinFree {
  const s = String(raw).trim();
  const pct = /^([0-9]+(?:\.[0-9]+)?)\s*%$/.exec(s);
  if (pct) {
    const percent = Number(pct[1]);
    if (!(percent >= 0 && percent < 100)) throw new InvalidArgumentError(`${what}: a percentage must be in [0, 100), got ${s}`);
    return { percent };
  }
  // "0" (or 0B, 0M…) turns the guard off; parseSize takes only positive sizes.
  if (/^0+(?:\.0+)?\s*(?:[KMGT]?(?:i?B)?)$/i.test(s)) return { bytes: 0 };
  return { bytes: parseSize(s, what) };
}

/** thresholdBytes is the reserve in bytes for a storage of `total` bytes. */
export function thresholdBytes(min: MinFree, total: number): number {
  return Math.max(min.bytes ?? 0, Math.ceil(((min.percent ?? 0) / 100) * total));
}

/** describeMinFree renders a reserve for the start-up log line. */
export function describeMinFree(min: MinFree): string {
  const parts: string[] = [];
  if (min.bytes) parts.push(formatSize(min.bytes));
  if (min.percent) parts.push(`${min.percent}%`);
  return parts.length > 0 ? parts.join(' or ') : 'off';
}

/** guardOn tells whether a reserve is set at all (--min-free 0 turns the guard, and its reading, off). */
export function guardOn(min: MinFree): boolean {
  return (min.bytes ?? 0) > 0 || (min.percent ?? 0) > 0;
}

/** hasRoom tells whether `space` keeps the reserve free. */
export function hasRoom(space: FreeSpace, min: MinFree): boolean {
  const threshold = thresholdBytes(min, space.total);
  return threshold <= 0 || space.free >= threshold;
}

/** shortage describes how `space` falls below the reserve, or is undefined when it keeps it. */
export function shortage(space: FreeSpace, min: MinFree): string | undefined {
  if (hasRoom(space, min)) return undefined;
  return `${space.what} has ${formatSize(space.free)} free of ${formatSize(space.total)}, below the reserve of ${formatSize(thresholdBytes(min, space.total))} (--min-free)`;
}

/**
 * checkSpace throws ResourceExhaustedError when `space` has less than the
 * reserve free; `refused` says what is refused (default: a new snapshot).
 */
export function checkSpace(space: FreeSpace, min: MinFree, refused = 'not enough free space for a new snapshot'): void {
  if (hasRoom(space, min)) return;
  const threshold = thresholdBytes(min, space.total);
  spaceEvents.emit('low-space', { ...space, threshold } satisfies LowSpaceEvent);
  throw new ResourceExhaustedError(
    `${refused}: ${space.what} has ${formatSize(space.free)} free of ${formatSize(space.total)}, ` +
      `below the reserve of ${formatSize(threshold)} (--min-free); free space or raise the storage`,
  );
}
