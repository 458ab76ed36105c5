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
// Prepare and Commit never mount anything on the host.

import { promises as fsp, mkdirSync, renameSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend, BackendSnapshot, CleanupReport } from '../backend.js';
import { Kind, type Usage } from '../../snapshots/snapshotter.js';
import type { Mount } from '../../snapshots/mount.js';
import { isErrno } from '../../../ffi/errno.js';
import { canReflink, cloneOrCopy } from '../../sys/reflink.js';
import { allocatedBytes, readExt4Usage } from '../../sys/fsinfo.js';
import { makeExt4, runTool } from '../../sys/exec.js';
import type { CoreLogger } from '../../core/snapshotter.js';

/** BlockfileConfig configures one blockfile backend. */
export interface BlockfileConfig {
  /** dir holds base.img and snapshots/; created 0700. */
  dir: string;
  /** baseSize is the apparent size of every image, in bytes (sparse). */
  baseSize: number;
  /** mountOptions are added to every mount (e.g. "discard"). */
  mountOptions?: string[];
  log?: CoreLogger;
}

/** DEFAULT_BASE_SIZE is 10 GiB, allocated lazily. */
export const DEFAULT_BASE_SIZE = 10 * 1024 ** 3;

/** BlockfileBackend implements Backend with ext4 image files. */
export class BlockfileBackend implements Backend {
  readonly name = 'blockfile';
  private readonly snapDir: string;
  private readonly basePath: string;
  private reflink: boolean | undefined;
  private warnedCopy = false;

  constructor(private readonly cfg: BlockfileConfig) {
    this.snapDir = join(cfg.dir, 'snapshots');
    this.basePath = join(cfg.dir, 'base.img');
  }

  async init(): Promise<void> {
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
    const src = snap.parent ? this.imagePath(snap.parent.id) : this.basePath;
    const tmp = `${this.imagePath(snap.id)}.tmp`;
    const how = await cloneOrCopy(src, tmp);
    if (how === 'sparse-copy') this.warnCopy();
    try {
      if (snap.sizeBytes !== undefined) await this.grow(tmp, snap.sizeBytes);
      await fsp.rename(tmp, this.imagePath(snap.id));
    } catch (err) {
      await fsp.rm(tmp, { force: true });
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
    return [{ type: 'ext4', source: this.imagePath(snap.id), options: ['loop', 'rw', ...extra] }];
  }

  async commit(snap: BackendSnapshot): Promise<Usage> {
    const fh = await fsp.open(this.imagePath(snap.id), 'r+');
    try {
      // The layer's bytes reach the disk before the metadata says "committed".
      await fh.datasync();
    } finally {
      await fh.close();
    }
    return this.usage(snap);
  }

  async usage(snap: BackendSnapshot): Promise<Usage> {
    if (snap.kind === Kind.View) return { size: 0, inodes: 0 };
    const file = this.imagePath(snap.id);
    const parent = snap.parent ? this.imagePath(snap.parent.id) : this.basePath;
    const size = Math.max(0, allocatedBytes(file) - allocatedBytes(parent));
    let inodes = 0;
    try {
      inodes = Math.max(0, readExt4Usage(file).inodesUsed - readExt4Usage(parent).inodesUsed);
    } catch {
      // An image being written may have a superblock in flux; size is what matters.
    }
    return { size, inodes };
  }

  detach(snap: BackendSnapshot): void {
    if (snap.kind === Kind.View) return;
    try {
      renameSync(this.imagePath(snap.id), this.removedPath(snap.id));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
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
    for (const p of [this.removedPath(snap.id), `${this.imagePath(snap.id)}.tmp`, this.imagePath(snap.id)]) {
      await fsp.rm(p, { force: true });
    }
  }

  async cleanup(live: ReadonlySet<number>): Promise<CleanupReport> {
    const removed: string[] = [];
    for (const name of readdirSync(this.snapDir)) {
      const m = /^(rm-)?(\d+)(\.tmp)?$/.exec(name);
      const orphan = m ? m[1] !== undefined || !live.has(Number(m[2])) : false;
      if (!orphan) continue;
      await fsp.rm(join(this.snapDir, name), { force: true });
      removed.push(join(this.snapDir, name));
    }
    return { removed };
  }

  async close(): Promise<void> {}

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
    await makeExt4(tmp, { noLostFound: true, rootMode: 0o755 });
    const done = await fsp.open(tmp, 'r+');
    try {
      await done.sync();
    } finally {
      await done.close();
    }
    await fsp.rename(tmp, this.basePath);
    this.cfg.log?.('info', 'created base image', { path: this.basePath, size: this.cfg.baseSize });
  }

  private async grow(file: string, size: number): Promise<void> {
    if (size <= statSync(file).size) return;
    await fsp.truncate(file, size);
    await runTool('resize2fs', ['-f', file]);
  }

  private warnCopy(): void {
    if (this.warnedCopy) return;
    this.warnedCopy = true;
    this.cfg.log?.('warn', 'the filesystem under the root cannot reflink: images are copied (sparse). ' +
      'Put the root on XFS (reflink=1) or btrfs for O(1) clones.', { dir: this.cfg.dir });
  }
}
