// Snapshotter is the contract tsblock implements for containerd, in
// containerd's own vocabulary (containerd/snapshots/snapshotter.go):
//
//   key     names an *active* or *view* snapshot: the one a caller mounts and,
//           for active ones, writes into.
//   name    names a *committed* snapshot: read-only, the parent of others.
//   parent  the committed snapshot a new one starts from ("" = empty).
//
// Importing a layer:
//
//   mounts = prepare("extract-1", "")        // empty ext4, mount it somewhere
//   ...unpack the layer into the mount, unmount...
//   commit("layer-1", "extract-1")           // now a parent for the next one
//   mounts = prepare("extract-2", "layer-1") // starts with layer-1's content
//
// Running a container: prepare(containerKey, topLayerName) gives the rootfs;
// view(key, name) gives a read-only look at a committed snapshot.
//
// In tsblock every snapshot is one block device (dm-thin volume) or one ext4
// image file, so Mounts always return exactly one mount whatever the depth of
// the chain. That is what Kata Containers and firecracker-containerd detect to
// hand the device to the VM instead of sharing a directory.

import type { Mount } from './mount.js';

/** Kind is the state of a snapshot; the numbers are containerd's proto enum. */
export enum Kind {
  Unknown = 0,
  View = 1,
  Active = 2,
  Committed = 3,
}

/** kindName renders a Kind as containerd's filters and CLI spell it. */
export function kindName(kind: Kind): 'view' | 'active' | 'committed' | 'unknown' {
  switch (kind) {
    case Kind.View:
      return 'view';
    case Kind.Active:
      return 'active';
    case Kind.Committed:
      return 'committed';
    default:
      return 'unknown';
  }
}

/** Timestamp is a wall-clock instant with nanosecond resolution, as protobuf carries it. */
export interface Timestamp {
  seconds: number;
  nanos: number;
}

/** Info describes a snapshot; `name` is its key (active/view) or name (committed). */
export interface Info {
  kind: Kind;
  name: string;
  /** parent is the committed parent's name, or "" for a first layer. */
  parent: string;
  labels: Record<string, string>;
  created: Timestamp;
  updated: Timestamp;
}

/** Usage is what a snapshot holds on its own, excluding its parents. */
export interface Usage {
  /** size is in bytes really allocated, not apparent size. */
  size: number;
  inodes: number;
}

/** SnapshotOpts are the options containerd passes to Prepare, View and Commit. */
export interface SnapshotOpts {
  labels?: Record<string, string>;
}

/** WalkFilter decides whether Walk reports a snapshot (see filters.ts). */
export type WalkFilter = (info: Info) => boolean;

/** Snapshotter is implemented once, by src/core, over any Backend. */
export interface Snapshotter {
  stat(key: string): Promise<Info>;
  /** update changes labels; fieldpaths are "labels" or "labels.<key>", none = all labels. */
  update(info: Info, fieldpaths?: string[]): Promise<Info>;
  usage(key: string): Promise<Usage>;
  mounts(key: string): Promise<Mount[]>;
  prepare(key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]>;
  view(key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]>;
  commit(name: string, key: string, opts?: SnapshotOpts): Promise<void>;
  remove(key: string): Promise<void>;
  /** walk calls fn for every snapshot matching any of the filters (none = all). */
  walk(fn: (info: Info) => void | Promise<void>, filters?: string[]): Promise<void>;
  /** cleanup reclaims storage no snapshot owns (containerd's GC calls it). */
  cleanup(): Promise<void>;
  close(): Promise<void>;
}
