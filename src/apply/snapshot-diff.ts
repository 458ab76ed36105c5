// snapshot-diff exports the changes of one snapshot over its parent (or
// over any other snapshot) as a layer blob: both sides are mounted
// read-only through Views of committed snapshots (an active snapshot is
// mounted through its own mounts, which is only safe while nothing else,
// e.g. a running container, has it mounted).

import { randomBytes } from 'node:crypto';
import type { Mount } from '../snapshots/mount.js';
import { Kind, type Info, type SnapshotOpts } from '../snapshots/snapshotter.js';
import { withTempMount } from '../sys/mount.js';
import { exportDiff, LAYER_GZIP, type ExportResult } from './export.js';

/** DiffSource is the part of a Snapshotter that exporting needs. */
export interface DiffSource {
  stat(key: string): Promise<Info>;
  view(key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]>;
  mounts(key: string): Promise<Mount[]>;
  remove(key: string): Promise<void>;
}

async function withSnapshotMount<T>(sn: DiffSource, key: string, fn: (dir: string) => Promise<T>, mountParent?: string): Promise<T> {
  const info = await sn.stat(key);
  if (info.kind !== Kind.Committed) return withTempMount(await sn.mounts(key), fn, { readOnly: true, parent: mountParent });
  const viewKey = `tsblock-diff-view-${Date.now()}-${randomBytes(4).toString('hex')}`;
  const mounts = await sn.view(viewKey, key);
  try {
    return await withTempMount(mounts, fn, { readOnly: true, parent: mountParent });
  } finally {
    await sn.remove(viewKey);
  }
}

/** SnapshotDiffOptions tune diffSnapshot. */
export interface SnapshotDiffOptions {
  /** parent overrides the snapshot's own parent ("" diffs against an empty tree). */
  parent?: string;
  mediaType?: string;
  mountParent?: string;
}

/** diffSnapshot writes key's changes over its parent to outFile as a layer blob. */
export async function diffSnapshot(sn: DiffSource, key: string, outFile: string, opts: SnapshotDiffOptions = {}): Promise<ExportResult> {
  const parent = opts.parent ?? (await sn.stat(key)).parent ?? '';
  const mediaType = opts.mediaType ?? LAYER_GZIP;
  return withSnapshotMount(
    sn,
    key,
    (upper) =>
      parent === ''
        ? exportDiff(undefined, upper, outFile, mediaType)
        : withSnapshotMount(sn, parent, (lower) => exportDiff(lower, upper, outFile, mediaType), opts.mountParent),
    opts.mountParent,
  );
}
