// labels holds the label rules containerd applies (labels/validate.go) and the
// well-known label names tsblock reads. Validation runs before any change, so
// a bad label changes nothing.

import { InvalidArgumentError } from '../errdefs.js';

/** MAX_LABEL_SIZE is containerd's limit on len(key)+len(value) in bytes. */
export const MAX_LABEL_SIZE = 4096;
/** MAX_LABELS bounds how many labels one snapshot may carry (containerd sets a handful). */
export const MAX_LABELS = 1024;

/** LABEL_SNAPSHOT_REF names the committed snapshot (chain ID) an unpack is about to create. */
export const LABEL_SNAPSHOT_REF = 'containerd.io/snapshot.ref';

/**
 * LABEL_SEED marks a committed snapshot `tsblock import` made that containerd
 * has not adopted yet. containerd 1.6's metadata GC removes every backend
 * snapshot its own database does not list (metadata/snapshot.go
 * garbageCollect), which a seed is until an unpack's Prepare finds it by
 * containerd.io/snapshot.ref. Remove refuses a marked snapshot with
 * FailedPrecondition (containerd's GC logs it and goes on); the first Prepare
 * that finds it by its ref clears the mark; `tsblock rm` clears it and removes.
 */
export const LABEL_SEED = 'tsblock.io/seed';

/** LABEL_MAX_SIZE asks for a snapshot's virtual size in bytes (containerd.io/snapshot/max-size). */
export const LABEL_MAX_SIZE = 'containerd.io/snapshot/max-size';

/** validateLabels throws InvalidArgumentError for labels containerd would refuse. */
export function validateLabels(labels: Record<string, string> | undefined): void {
  if (!labels) return;
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) {
    throw new InvalidArgumentError(`too many labels: ${entries.length} (at most ${MAX_LABELS})`);
  }
  for (const [k, v] of entries) {
    if (k === '') throw new InvalidArgumentError('label key must not be empty');
    if (k.includes('\0') || v.includes('\0')) {
      throw new InvalidArgumentError(`label ${JSON.stringify(k.slice(0, 32))} contains a NUL byte`);
    }
    const size = Buffer.byteLength(k) + Buffer.byteLength(v);
    if (size > MAX_LABEL_SIZE) {
      throw new InvalidArgumentError(
        `label key and value greater than maximum size (${MAX_LABEL_SIZE} bytes), key: ${k.slice(0, 10)}`,
      );
    }
  }
}

/** parseSizeLabel reads containerd.io/snapshot/max-size; undefined when absent. */
export function parseSizeLabel(labels: Record<string, string> | undefined): number | undefined {
  const raw = labels?.[LABEL_MAX_SIZE];
  if (raw === undefined || raw === '') return undefined;
  if (!/^[0-9]+$/.test(raw)) {
    throw new InvalidArgumentError(`label ${LABEL_MAX_SIZE} must be a size in bytes, got ${JSON.stringify(raw)}`);
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new InvalidArgumentError(`label ${LABEL_MAX_SIZE} is out of range: ${raw}`);
  }
  return n;
}
