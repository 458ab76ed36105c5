// unpack applies layers into snapshots the way containerd's unpacker does:
// Prepare an extraction snapshot on the parent chain, apply the layer
// through a temporary mount of the mounts Prepare returned (a loop-mounted
// ext4 file for blockfile, the /dev/mapper device for devmapper), verify the
// diffID, then Commit it under its chain ID. Any failure removes the
// extraction snapshot, so nothing half-applied is ever committed.
//
// The snapshot verbs come in through UnpackTarget, so the same code drives
// an in-process core (offline import, tests) and a running daemon over its
// gRPC socket (src/import/remote.ts).

import { randomBytes } from 'node:crypto';
import { InternalError, errorMessage, isAlreadyExists, isNotFound } from '../errdefs.js';
import type { Mount } from '../snapshots/mount.js';
import { LABEL_SNAPSHOT_REF } from '../snapshots/labels.js';
import type { Info, SnapshotOpts } from '../snapshots/snapshotter.js';
import { Kind } from '../snapshots/snapshotter.js';
import { withTempMount } from '../sys/mount.js';
import { faultPoint } from '../base/faults.js';
import { applyLayer, type ApplyOptions, type ApplyResult, type LayerSource } from './applier.js';

/** UnpackTarget is the part of a Snapshotter that unpacking needs. */
export interface UnpackTarget {
  stat(key: string): Promise<Info>;
  prepare(key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]>;
  commit(name: string, key: string, opts?: SnapshotOpts): Promise<void>;
  remove(key: string): Promise<void>;
}

/** MountApplyOptions add where the temporary mount point is made. */
export interface MountApplyOptions extends ApplyOptions {
  /** mountParent is the directory holding the temporary mount point (default os.tmpdir()). */
  mountParent?: string;
}

/**
 * applyToMounts mounts the (single) mount on a fresh temporary directory,
 * applies the layer there and unmounts, also when the apply fails (the loop
 * device of a `loop` mount is released with it).
 */
export async function applyToMounts(mounts: Mount[], layer: LayerSource, opts: MountApplyOptions = {}): Promise<ApplyResult> {
  const { mountParent, ...applyOpts } = opts;
  // Fault points (src/base/faults.ts): the crash tests kill the server with
  // the snapshot mounted, between two entries (apply:entry, in the applier),
  // after the last entry and after the unmount.
  const res = await withTempMount(
    mounts,
    async (dir) => {
      faultPoint('apply:after-mount');
      const applied = await applyLayer(dir, layer, applyOpts);
      faultPoint('apply:after-apply');
      return applied;
    },
    { parent: mountParent },
  );
  faultPoint('apply:after-unmount');
  return res;
}

/** UnpackLayerSpec describes one layer to unpack on top of parent. */
export interface UnpackLayerSpec {
  /** parent is the chain ID of the layers below ("" for the first). */
  parent: string;
  /** chainId is the name the committed snapshot gets. */
  chainId: string;
  /** diffId is the expected sha256 of the uncompressed layer. */
  diffId: string;
  /** open returns the layer blob; called only when the layer is not present yet. */
  open: () => LayerSource | Promise<LayerSource>;
  mediaType?: string;
  /** labels are added to the committed snapshot (containerd.io/snapshot.ref is always set). */
  labels?: Record<string, string>;
}

/** UnpackResult says what happened to one layer. */
export type UnpackResult = { skipped: true } | { skipped: false; applied: ApplyResult };

/** extractKey is a unique key for an extraction snapshot, shaped like containerd's "extract-<n> <chainID>". */
export function extractKey(chainId: string): string {
  return `tsblock-extract-${Date.now()}-${randomBytes(4).toString('hex')} ${chainId}`;
}

/**
 * unpackLayer makes chainId a committed snapshot on parent, unless one is
 * already there (then { skipped: true }). The extraction snapshot is removed
 * on any failure; the error is rethrown.
 */
export async function unpackLayer(sn: UnpackTarget, spec: UnpackLayerSpec, opts: MountApplyOptions = {}): Promise<UnpackResult> {
  if (await committedExists(sn, spec.chainId)) return { skipped: true };
  const labels = { ...spec.labels, [LABEL_SNAPSHOT_REF]: spec.chainId };
  const key = extractKey(spec.chainId);
  let mounts: Mount[];
  try {
    mounts = await sn.prepare(key, spec.parent, { labels });
  } catch (err) {
    // containerd's remote-snapshot answer: the chain is already there.
    if (isAlreadyExists(err)) return { skipped: true };
    throw err;
  }
  faultPoint('unpack:after-prepare');
  try {
    const applied = await applyToMounts(mounts, await spec.open(), { ...opts, expectedDiffId: spec.diffId, mediaType: spec.mediaType });
    faultPoint('unpack:before-commit');
    try {
      await sn.commit(spec.chainId, key, { labels });
    } catch (err) {
      // Another importer (or containerd) committed the same chain meanwhile.
      if (isAlreadyExists(err) && (await committedExists(sn, spec.chainId))) {
        await sn.remove(key);
        return { skipped: true };
      }
      throw err;
    }
    return { skipped: false, applied };
  } catch (err) {
    try {
      await sn.remove(key);
    } catch (rerr) {
      if (!isNotFound(rerr)) {
        throw new InternalError(`${errorMessage(err)} (and removing extraction snapshot ${key} failed: ${errorMessage(rerr)})`, { cause: err });
      }
    }
    throw err;
  }
}

async function committedExists(sn: UnpackTarget, name: string): Promise<boolean> {
  try {
    return (await sn.stat(name)).kind === Kind.Committed;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}
