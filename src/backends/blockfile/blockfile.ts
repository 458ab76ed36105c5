// BlockfileBackend keeps every snapshot as one sparse ext4 image file:
//
//   <dir>/base.img          empty ext4 made once (no lost+found, root 0755)
//   <dir>/snapshots/<id>    an active or committed snapshot's image
//   <dir>/snapshots/<id>.tmp  an image being cloned (renamed to <id> when whole)
//   <dir>/snapshots/rm-<id> a removed image waiting to be unlinked
//
// A first layer is a clone of base.img, a child a clone of its committed
// parent: FICLONE where the filesystem under <dir> can reflink (XFS
// reflink=1, btrfs; milliseconds whatever the size), otherwise a sparse copy
// that moves only the allocated extents (never a dense copy). A view needs no
// file at all: it mounts its parent's (or the base) image read-only.
//
// containerd attaches the loop device itself (the `loop` mount option), so
// Prepare and Commit never mount anything on the host. The exception is an
// unpack snapshot (containerd's "extract-…" keys): its Prepare attaches the
// loop device here, with LOOP_CONFIGURE and autoclear, and answers with that
// device (see mounts()), because containerd 1.6's own attach
// (LOOP_SET_FD + LOOP_SET_STATUS64) freezes the device's queue and took
// ~16 ms of every layer (docs/performance.md). Containers never see these
// mounts: their snapshots are Prepared under other keys.

import { promises as fsp, mkdirSync, renameSync, existsSync, readdirSync, statSync, statfsSync, openSync, closeSync, fdatasync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend, BackendSnapshot, CommitUsage, CleanupReport } from '../../core/backend.js';
import { Kind, type Usage } from '../../snapshots/snapshotter.js';
import type { Mount } from '../../snapshots/mount.js';
import { isErrno } from '../../sys/errno.js';
import { canReflink, cloneOrCopy } from '../../sys/reflink.js';
import { allocatedBytes, readExt4Usage, readExt4UsageFd } from '../../sys/fsinfo.js';
import { growExt4, makeExt4 } from '../../sys/exec.js';
import { ext4ImageDamage } from '../../sys/ext4check.js';
import { DataLossError } from '../../errdefs.js';
import { attachLoop, canonicalPath, detachLoop, listLoops, releaseLoop, type LoopDevice } from '../../sys/loop.js';
import type { CoreLogger } from '../../base/log.js';
import { faultPoint } from '../../base/faults.js';
import type { FreeSpace } from '../../core/backend.js';
import type { XfsFileStore } from './store.js';

/** BlockfileConfig configures one blockfile backend. */
export interface BlockfileConfig {
  /** dir holds base.img and snapshots/; created 0700. */
  dir: string;
  /** baseSize is the apparent size of every image, in bytes (sparse). */
  baseSize: number;
  /** mountOptions are added to every mount (e.g. "discard"). */
  mountOptions?: string[];
  /**
   * store, when set, is the XFS-in-a-file filesystem dir lives on (roots
   * that cannot reflink, store.ts): opened before anything else, grown before
   * clones, trimmed after removals, closed last.
   */
  store?: XfsFileStore;
  log?: CoreLogger;
}

/** PARENT_USAGE_CACHE_MAX bounds the parent usage cache (entries are ~100 bytes). */
const PARENT_USAGE_CACHE_MAX = 4096;

/**
 * isUnpackKey tells the key of a snapshot prepared to unpack one layer into:
 * containerd's "extract-<n> <chainID>" (snapshots.UnpackKeyFormat; its own
 * windows and lcow snapshotters key on that prefix too) and tsblock's own
 * applier's "tsblock-extract-<n> <chainID>" (src/apply/unpack.ts). Through
 * containerd a proxy snapshotter sees its metadata's backend key,
 * "<namespace>/<n>/<key>" (containerd's metadata.createKey).
 */
export function isUnpackKey(key: string | undefined): boolean {
  return key !== undefined && UNPACK_KEY.test(key);
}

const UNPACK_KEY = /^(?:[^/]+\/\d+\/)?(?:tsblock-)?extract-/;

/**
 * UNPACK_MOUNT_OPTIONS are added to the rw mount of an unpack snapshot.
 * With barriers, every ext4 journal commit (the superblock write at mount,
 * each commit during the apply, the final one at unmount) becomes a flush
 * of the loop device, i.e. an fsync of the image file through the host
 * filesystem, several per layer. An unpack snapshot does not need them:
 * unmount still writes every block into the image (through the host page
 * cache), and the flush of the image after Commit (core/durability.ts) makes the layer durable before
 * the metadata says "committed" — one flush per layer. Until then the
 * snapshot is disposable: after a crash containerd unpacks into a new
 * "extract-" key and garbage-collects the old one. data=writeback drops the
 * ordered-mode data flush before each journal commit for the same reason.
 * The journal itself stays (a parent that needs recovery is still
 * replayed). Options given by the operator come later and win.
 */
export const UNPACK_MOUNT_OPTIONS: readonly string[] = ['nobarrier', 'data=writeback'];

/** DEFAULT_BASE_SIZE is 10 GiB, allocated lazily. */
export const DEFAULT_BASE_SIZE = 10 * 1024 ** 3;

/** BlockfileBackend implements Backend with ext4 image files. */
export class BlockfileBackend implements Backend {
  readonly name = 'blockfile';
  private readonly snapDir: string;
  private readonly basePath: string;
  private reflink: boolean | undefined;
  private warnedCopy = false;
  private readonly parentUsageCache = new Map<string, { bytes: number; inodes?: number }>();
  /**
   * held are the loop devices attached here for unpack snapshots, by id. Each
   * is autoclear and bound for as long as its descriptor is open: release()
   * (Commit, destroy, close) closes it, and the device goes when containerd's
   * mount of it is gone too, or at once if there is none. A process that dies
   * closes them all, so a crash leaks none.
   */
  private readonly held = new Map<number, LoopDevice>();

  constructor(private readonly cfg: BlockfileConfig) {
    this.snapDir = join(cfg.dir, 'snapshots');
    this.basePath = join(cfg.dir, 'base.img');
  }

  async init(): Promise<void> {
    await this.cfg.store?.open();
    mkdirSync(this.snapDir, { recursive: true, mode: 0o700 });
    if (!existsSync(this.basePath)) await this.makeBase();
    this.reflink = canReflink(this.snapDir);
    if (!this.reflink) this.warnCopy();
  }

  /** reflinks tells whether the root's filesystem clones images in O(1). */
  get reflinks(): boolean {
    return this.reflink === true;
  }

  async create(snap: BackendSnapshot): Promise<void> {
    if (snap.kind === Kind.View) return;
    // The image is made at its own path directly: until create returns, the
    // core's row says `creating`, and a creating row's storage, whole or
    // half made, is destroyed by start-up and never mounted. (A temp name
    // and a rename bought nothing on top, for a thread-pool round trip per
    // Prepare; `.tmp` files of older versions are still swept.)
    const dst = this.imagePath(snap.id);
    const src = this.parentPath(snap);
    // A clone of a damaged image inherits the damage: refuse it here, with
    // where the damage is, rather than at a container's mount or later.
    const damage = ext4ImageDamage(src);
    if (damage !== undefined) {
      throw new DataLossError(
        `the image ${src} ${snap.parent ? `of parent snapshot id ${snap.parent.id}` : '(the base)'} is damaged: ${damage}; ` +
          'remove the snapshots built on it and pull the image again ("tsblock doctor" lists damaged images)',
      );
    }
    await this.cfg.store?.ensureRoom();
    const how = await cloneOrCopy(src, dst);
    if (how === 'sparse-copy') this.warnCopy();
    faultPoint('blockfile:create:after-clone');
    try {
      if (snap.sizeBytes !== undefined) await this.grow(dst, snap.sizeBytes);
    } catch (err) {
      await fsp.rm(dst, { force: true });
      throw err;
    }
  }

  async mounts(snap: BackendSnapshot): Promise<Mount[]> {
    const extra = this.cfg.mountOptions ?? [];
    if (snap.kind === Kind.View) {
      const source = snap.parent ? this.imagePath(snap.parent.id) : this.basePath;
      // noload: a committed image is never replayed; an unclean journal must
      // not make a read-only mount fail ("recovery required on readonly fs").
      return [{ type: 'ext4', source, options: ['loop', 'ro', 'noload', ...extra] }];
    }
    if (isUnpackKey(snap.key)) {
      let dev = this.held.get(snap.id);
      if (!dev) {
        dev = attachLoop(this.imagePath(snap.id), { autoclear: true });
        this.held.set(snap.id, dev);
      }
      // The device is attached here, not by a `loop` option: containerd
      // passes an option it does not own (`direct-io` among them, which it
      // handles only with `loop`) to ext4, which refuses the mount.
      return [{ type: 'ext4', source: dev.path, options: ['rw', ...UNPACK_MOUNT_OPTIONS, ...extra.filter((o) => o !== 'direct-io')] }];
    }
    return [{ type: 'ext4', source: this.imagePath(snap.id), options: ['loop', 'rw', ...extra] }];
  }

  /** release lets go of the loop device mounts() attached for snapshot `id`, if any. */
  private release(id: number): void {
    const dev = this.held.get(id);
    if (!dev) return;
    this.held.delete(id);
    releaseLoop(dev);
  }

  async commit(snap: BackendSnapshot): Promise<CommitUsage> {
    this.release(snap.id);
    // Only the size is measured here (fstat); the image's flush is flush(),
    // which the core runs after Commit has answered (core/durability.ts). The
    // inode count is left to the first Usage (the core asks usage() then): it
    // needs the image's superblock, which on a fresh clone is a real read
    // through the loop device under XFS, ~0.2-0.4 ms on the event loop
    // (docs/performance.md). A committed image never changes, so the count is
    // the same whenever it is taken. st_blocks is the same before and after
    // the flush: it counts delayed allocations on ext4 and XFS.
    const fd = openSync(this.imagePath(snap.id), 'r');
    try {
      return { size: this.sizeOf(snap, fd) };
    } finally {
      closeSync(fd);
    }
  }

  async flush(snap: BackendSnapshot): Promise<void> {
    // fdatasync on the thread pool: the layer's bytes and the extent map
    // that finds them reach the disk (a reflink clone's too).
    const fd = openSync(this.imagePath(snap.id), 'r');
    try {
      await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      closeSync(fd);
    }
  }

  async usage(snap: BackendSnapshot): Promise<Usage> {
    if (snap.kind === Kind.View) return { size: 0, inodes: 0 };
    const fd = openSync(this.imagePath(snap.id), 'r');
    try {
      return this.usageOf(snap, fd);
    } finally {
      closeSync(fd);
    }
  }

  /** usageOf measures an image open as fd against its parent (or the base). */
  private usageOf(snap: BackendSnapshot, fd: number): Usage {
    const size = this.sizeOf(snap, fd);
    const parent = this.parentUsage(this.parentPath(snap));
    let inodes = 0;
    try {
      if (parent.inodes !== undefined) inodes = Math.max(0, readExt4UsageFd(fd).inodesUsed - parent.inodes);
    } catch {
      // An image being written may have a superblock in flux; size is what matters.
    }
    return { size, inodes };
  }

  /** sizeOf is the bytes an image open as fd allocates beyond its parent (or the base). */
  private sizeOf(snap: BackendSnapshot, fd: number): number {
    return Math.max(0, fstatSync(fd).blocks * 512 - this.parentUsage(this.parentPath(snap)).bytes);
  }

  private parentPath(snap: BackendSnapshot): string {
    return snap.parent ? this.imagePath(snap.parent.id) : this.basePath;
  }

  /**
   * parentUsage measures a committed image or the base once: they are never
   * written again (views mount them ro,noload) and ids are never reused, so
   * the figures stay true; saves a stat and a superblock read per Commit.
   */
  private parentUsage(path: string): { bytes: number; inodes?: number } {
    const hit = this.parentUsageCache.get(path);
    if (hit) return hit;
    let inodes: number | undefined;
    try {
      inodes = readExt4Usage(path).inodesUsed;
    } catch {
      inodes = undefined;
    }
    const value = { bytes: allocatedBytes(path), inodes };
    if (this.parentUsageCache.size >= PARENT_USAGE_CACHE_MAX) this.parentUsageCache.clear();
    this.parentUsageCache.set(path, value);
    return value;
  }

  detach(snap: BackendSnapshot): void {
    if (snap.kind === Kind.View) return;
    try {
      renameSync(this.imagePath(snap.id), this.removedPath(snap.id));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    faultPoint('blockfile:detach:after-rename');
  }

  reattach(snap: BackendSnapshot): void {
    if (snap.kind === Kind.View) return;
    try {
      renameSync(this.removedPath(snap.id), this.imagePath(snap.id));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }

  async destroy(snap: BackendSnapshot): Promise<void> {
    this.release(snap.id);
    for (const p of [this.removedPath(snap.id), `${this.imagePath(snap.id)}.tmp`, this.imagePath(snap.id)]) {
      // Usually one of the three exists: a sync probe (µs) spares the absent
      // ones a thread-pool round trip; the unlink that frees an image's
      // extents stays off the event loop.
      if (!existsSync(p)) continue;
      try {
        await fsp.unlink(p);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      faultPoint('blockfile:destroy:after-unlink');
    }
  }

  async cleanup(live: ReadonlySet<number>): Promise<CleanupReport> {
    const removed: string[] = [];
    const names = readdirSync(this.snapDir);
    // rm-<id> of a live id is a detach whose transaction never committed (a
    // crash inside Remove's transaction): the snapshot still exists, so its
    // image goes back, synchronously, before anything else can run.
    for (const name of names) {
      const m = /^rm-(\d+)$/.exec(name);
      if (!m || !live.has(Number(m[1])) || names.includes(m[1]!)) continue;
      renameSync(join(this.snapDir, name), this.imagePath(Number(m[1])));
      this.cfg.log?.('warn', 'restored the image of a snapshot whose removal did not commit', { id: Number(m[1]) });
    }
    for (const name of names) {
      const m = /^(rm-)?(\d+)(\.tmp)?$/.exec(name);
      const restored = m !== null && m[1] !== undefined && m[3] === undefined && live.has(Number(m[2])) && !names.includes(m[2]!);
      const orphan = m && !restored ? m[1] !== undefined || !live.has(Number(m[2])) : false;
      if (!orphan) continue;
      await fsp.rm(join(this.snapDir, name), { force: true });
      faultPoint('blockfile:cleanup:after-rm');
      removed.push(join(this.snapDir, name));
    }
    // A loop device left on an image no snapshot owns (a removed one, or an
    // orphan) pins its blocks. Detach it: unused, it goes at once; still
    // mounted by a container, the kernel only marks it autoclear (the mount
    // keeps working and the device goes at unmount). Live images' devices
    // are containerd's and never touched.
    const prefix = canonicalPath(this.snapDir) + '/';
    for (const l of listLoops()) {
      if (!l.backingFile.startsWith(prefix)) continue;
      const m = /^(\d+)$/.exec(l.backingFile.slice(prefix.length));
      if (!l.deleted && m && live.has(Number(m[1]))) continue;
      detachLoop(l.device);
      removed.push(`${l.device} (${l.backingFile}${l.deleted ? ', deleted' : ''})`);
    }
    // Blocks freed inside the store go back to the host as holes in its file.
    if (this.cfg.store) await this.cfg.store.trim();
    return { removed };
  }

  /** freeSpace is what the filesystem under the root has left for images (statfs f_bavail). */
  freeSpace(): FreeSpace {
    if (this.cfg.store) return this.cfg.store.freeSpace();
    const st = statfsSync(this.snapDir);
    return { free: st.bavail * st.bsize, total: st.blocks * st.bsize, what: `the filesystem under ${this.cfg.dir}` };
  }

  async close(): Promise<void> {
    for (const id of [...this.held.keys()]) this.release(id);
    await this.cfg.store?.close();
  }

  /** store is the XFS-in-a-file store under the root, when the root cannot reflink. */
  get store(): XfsFileStore | undefined {
    return this.cfg.store;
  }

  /** imagePath is where snapshot `id` keeps its image (exported for CLI listings). */
  imagePath(id: number): string {
    return join(this.snapDir, String(id));
  }

  private removedPath(id: number): string {
    return join(this.snapDir, `rm-${id}`);
  }

  private async makeBase(): Promise<void> {
    const tmp = `${this.basePath}.tmp`;
    await fsp.rm(tmp, { force: true });
    const fh = await fsp.open(tmp, 'wx', 0o600);
    try {
      await fh.truncate(this.cfg.baseSize);
    } finally {
      await fh.close();
    }
    faultPoint('blockfile:base:after-truncate');
    await makeExt4(tmp, { noLostFound: true, rootMode: 0o755 });
    faultPoint('blockfile:base:after-mkfs');
    const done = await fsp.open(tmp, 'r+');
    try {
      await done.sync();
    } finally {
      await done.close();
    }
    await fsp.rename(tmp, this.basePath);
    faultPoint('blockfile:base:after-rename');
    this.cfg.log?.('info', 'created base image', { path: this.basePath, size: this.cfg.baseSize });
  }

  private async grow(file: string, size: number): Promise<void> {
    if (size <= statSync(file).size) return;
    await fsp.truncate(file, size);
    // The file grew by a hole, which reads as zeros.
    await growExt4(file, { prezeroed: true });
  }

  private warnCopy(): void {
    if (this.warnedCopy) return;
    this.warnedCopy = true;
    this.cfg.log?.('warn', 'the filesystem under the root cannot reflink and this root has no store: every image is a full (sparse) copy of its parent. ' +
      'A new root on such a host gets an XFS store (store = "auto"); or put the root on XFS (reflink=1) or btrfs.', { dir: this.cfg.dir });
  }
}
