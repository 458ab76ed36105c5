// Backend is the small interface between the snapshotter core (src/core) and
// the storage that holds snapshot content: dm-thin volumes (devmapper) or
// ext4 image files (blockfile). The core owns keys, parents, kinds, labels
// and the metadata transactions; a backend only knows snapshot ids.
//
// Crash safety contract (the core relies on it):
//   - create() runs after the core has committed a `creating` row for the id
//     and before it marks the row ready. A crash in between leaves a row the
//     next start-up deletes, calling destroy() for its id.
//   - detach() runs *inside* the core's remove transaction and must be a
//     short, synchronous, reversible step (blockfile renames the file to
//     rm-<id>). If the transaction fails, reattach() undoes it.
//   - destroy() runs after the remove transaction committed. It must be
//     idempotent: a crash may run it again, or cleanup() may find leftovers.
//   - cleanup(live) removes every storage object whose id is not in `live`,
//     and any leftover of an interrupted destroy. It is how orphans from any
//     crash point are reclaimed, at start-up and on containerd's Cleanup.

import type { Kind, Usage } from '../snapshots/snapshotter.js';
import type { Mount } from '../snapshots/mount.js';
import type { Tx } from '../storage/metastore.js';

/** FreeSpace is what a backend reports about the storage new snapshots use. */
export interface FreeSpace {
  /** free is bytes available to tsblock (statfs f_bavail, or the pool's free data). */
  free: number;
  /** total is the storage's size in bytes. */
  total: number;
  /** what names the storage for messages ("filesystem under /var/lib/tsblock", "thin-pool X"). */
  what: string;
}

/** BackendSnapshot is what a backend is told about one snapshot. */
export interface BackendSnapshot {
  /** id is the store's id: unique, never reused, the only name a backend uses. */
  id: number;
  /**
   * key is the snapshot's containerd key, for hints only (blockfile gives
   * containerd's "extract-…" unpack snapshots faster mount options); storage
   * is always named by id.
   */
  key?: string;
  kind: Kind;
  /** parent is the committed parent (its own parent is not needed). */
  parent?: { id: number };
  /** sizeBytes is the requested virtual size (label containerd.io/snapshot/max-size). */
  sizeBytes?: number;
}

/** CommitUsage is a commit's usage; inodes undefined means "not counted yet". */
export interface CommitUsage {
  size: number;
  inodes?: number;
}

/** CleanupReport says what cleanup() reclaimed, for logs and `tsblock gc`. */
export interface CleanupReport {
  removed: string[];
}

/** Backend is implemented by blockfile and devmapper. */
export interface Backend {
  readonly name: string;
  /** init makes the base image or pool ready; called once before serving. */
  init(): Promise<void>;
  /** create makes storage for a new active or view snapshot. */
  create(snap: BackendSnapshot): Promise<void>;
  /** mounts returns the single mount of a ready snapshot (may activate a device). */
  mounts(snap: BackendSnapshot): Promise<Mount[]>;
  /**
   * commit ends an active snapshot's writable life and returns its usage; a
   * backend that leaves inodes out has the core count them with usage() the
   * first time Usage asks (the committed content no longer changes). Without
   * flush(), commit must also make the content durable.
   */
  commit(snap: BackendSnapshot): Promise<CommitUsage>;
  /**
   * flush makes a committed snapshot's content durable (optional). The core
   * runs it after Commit has answered and before anything builds on, removes
   * or outlives the snapshot (core/durability.ts); it may run again after a
   * crash, so it must be idempotent.
   */
  flush?(snap: BackendSnapshot): Promise<void>;
  /** usage measures an active snapshot now, or a committed one whose inodes commit left out. */
  usage(snap: BackendSnapshot): Promise<Usage>;
  /** detach is the synchronous in-transaction first step of removal. */
  detach(snap: BackendSnapshot, tx: Tx): void;
  /** reattach undoes detach when the remove transaction failed. */
  reattach(snap: BackendSnapshot): void;
  /** destroy releases a snapshot's storage; idempotent. */
  destroy(snap: BackendSnapshot): Promise<void>;
  /** cleanup reclaims storage whose id is not live, and leftovers. */
  cleanup(live: ReadonlySet<number>): Promise<CleanupReport>;
  /**
   * freeSpace reports the storage new snapshots draw on (optional; it may
   * answer from a recent reading unless `fresh` is asked for): the core
   * refuses to create a snapshot when it is below the --min-free reserve.
   */
  freeSpace?(opts?: { fresh?: boolean }): FreeSpace | Promise<FreeSpace>;
  close(): Promise<void>;
}
