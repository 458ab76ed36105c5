// entries writes one tar entry into the root: whiteouts, then per-type
// writers that replace whatever is at the final path without following it,
// then metadata in the order the kernel requires:
//   content → chown (clears setuid/setgid and security.capability)
//          → xattrs → chmod (restores setuid/setgid) → times.
// Directories keep their existing contents when a layer lists them again;
// their mode and times are set at the end (finish), deepest first, so that
// writing children does not disturb the mtime and a read-only directory mode
// does not block later entries.
//
// Every filesystem call here is synchronous. A layer is mostly small files,
// and each call is a page-cache operation of a few µs on the freshly mounted
// snapshot; through fs/promises each was a thread-pool round trip (open,
// write, fchown, fchmod, close: five per file) that cost several times the
// call itself and, on 2 busy cores, left the applier waiting on its own
// thread pool (docs/performance.md, "Applier"). Content still arrives as an
// async stream, so the event loop is never held for more than one entry's
// metadata or one ≤ 1 MiB write.

import fs, { constants } from 'node:fs';
import { InvalidArgumentError } from '../errdefs.js';
import { isErrno } from '../sys/errno.js';
import type { EntryMeta } from './header.js';
import { cleanEntryName, joinKey, type RootResolver } from './paths.js';
import type { SparseWriter } from './sparse.js';
import { makeNode, setTimes, setTimesFd, setXattr, type Timespec } from '../sys/nodes.js';
import { applyWhiteout, classifyWhiteout, purgeOpaque, removeEntry, type LayerWrites } from './whiteout.js';

/** WriterOptions are the per-apply switches of EntryWriter. */
export interface WriterOptions {
  allowDevices: boolean;
  /** chown applies uid/gid; only possible as root. */
  chown: boolean;
  signal?: AbortSignal;
  warn: (message: string) => void;
}

interface PendingDir {
  parts: string[];
  mode: number;
  atime: Timespec;
  mtime: Timespec;
}

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** EntryWriter applies entries of one layer to one root. */
export class EntryWriter {
  private readonly dirs = new Map<string, PendingDir>();
  /** skipped counts entries not materialised (devices without privilege, root entries, AUFS metadata). */
  skipped = 0;

  constructor(
    private readonly resolver: RootResolver,
    private readonly writes: LayerWrites,
    private readonly sparse: SparseWriter,
    private readonly opts: WriterOptions,
  ) {}

  /**
   * write applies one entry; data is the entry's content stream, read only
   * for regular files (the caller drains whatever is left).
   */
  async write(meta: EntryMeta, data: AsyncIterable<Buffer>): Promise<void> {
    const parts = cleanEntryName(meta.name);
    if (parts.length === 0) {
      // containerd ignores entries resolving to the root ("./"): the root's
      // own mode/owner belong to the snapshot, not the layer.
      if (meta.type !== 'directory') this.opts.warn(`entry "${meta.name}" resolves to the root; ignored`);
      this.skipped++;
      return;
    }
    const base = parts[parts.length - 1]!;
    const parentParts = parts.slice(0, -1);
    const wh = classifyWhiteout(base);
    if (wh.kind === 'opaque') return purgeOpaque(this.resolver, parentParts, this.writes);
    if (wh.kind === 'delete') return applyWhiteout(this.resolver, parentParts, wh.target);
    if (wh.kind === 'meta') {
      this.skipped++;
      return;
    }
    if ((meta.type === 'char' || meta.type === 'block') && !this.opts.allowDevices) {
      this.opts.warn(`device "${meta.name}" skipped: creating devices is not allowed`);
      this.skipped++;
      return;
    }
    const parent = await this.resolver.resolveDir(parentParts, true);
    const at = [...parent!, base];
    const p = this.resolver.abs(at);
    switch (meta.type) {
      case 'directory':
        await this.writeDir(at, p, meta);
        break;
      case 'file':
        await this.writeFile(at, p, meta, data);
        break;
      case 'symlink':
        await this.writeSymlink(at, p, meta);
        break;
      case 'link':
        if (!(await this.writeHardlink(at, p, meta))) return;
        break;
      default:
        await removeEntry(this.resolver, at);
        makeNode(p, meta.type, 0o600, meta.devmajor, meta.devminor);
        this.applyMeta(p, meta, false);
    }
    this.writes.add(at);
  }

  private async writeDir(at: string[], p: string, meta: EntryMeta): Promise<void> {
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) await removeEntry(this.resolver, at);
    if (!st || !st.isDirectory()) fs.mkdirSync(p, 0o700);
    this.chown(p, meta);
    this.setXattrs(p, meta, false);
    this.dirs.set(joinKey(at), { parts: at, mode: meta.mode, atime: meta.atime, mtime: meta.mtime });
  }

  private async writeFile(at: string[], p: string, meta: EntryMeta, data: AsyncIterable<Buffer>): Promise<void> {
    let fd: number;
    try {
      // Most paths are new in their layer: try the exclusive create first and
      // replace what is there only when it fails (one syscall, not lstat+open).
      fd = fs.openSync(p, CREATE_FLAGS, 0o600);
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
      await removeEntry(this.resolver, at);
      fd = fs.openSync(p, CREATE_FLAGS, 0o600);
    }
    try {
      if (meta.size > 0) await this.sparse.write(fd, data, meta.size, this.opts.signal);
      if (this.opts.chown) fs.fchownSync(fd, meta.uid, meta.gid);
      this.setXattrs(p, meta, false);
      fs.fchmodSync(fd, meta.mode);
      setTimesFd(fd, p, meta.atime, meta.mtime);
    } finally {
      fs.closeSync(fd);
    }
  }

  private async writeSymlink(at: string[], p: string, meta: EntryMeta): Promise<void> {
    if (meta.linkname === '') throw new InvalidArgumentError(`malformed layer: symlink "${meta.name}" has an empty target`);
    if (Buffer.byteLength(meta.linkname) > 4096) throw new InvalidArgumentError(`malformed layer: symlink "${meta.name}" target too long`);
    await removeEntry(this.resolver, at);
    // The target is stored verbatim: it is data, only ever followed by
    // RootResolver, which keeps it inside the root.
    fs.symlinkSync(meta.linkname, p);
    this.chown(p, meta);
    this.setXattrs(p, meta, true);
    setTimes(p, meta.atime, meta.mtime);
  }

  /** writeHardlink returns false when the link is its own target (nothing to do). */
  private async writeHardlink(at: string[], p: string, meta: EntryMeta): Promise<boolean> {
    const targetParts = cleanEntryName(meta.linkname, 'hardlink target');
    const target = await this.resolver.resolveNoFollow(targetParts);
    const bad = (why: string) => new InvalidArgumentError(`malformed layer: hardlink "${meta.name}" -> "${meta.linkname}": ${why}`);
    if (!target || target.length === 0) throw bad(target ? 'target is the root directory' : 'target does not exist');
    let st;
    try {
      st = fs.lstatSync(this.resolver.abs(target));
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) throw bad('target does not exist');
      throw err;
    }
    if (st.isDirectory()) throw bad('target is a directory');
    if (joinKey(target) === joinKey(at)) return false;
    await removeEntry(this.resolver, at);
    try {
      fs.linkSync(this.resolver.abs(target), p);
    } catch (err) {
      // Removing the old entry at the link path can take the target with it
      // (a directory replaced by a link to its own child).
      if (isErrno(err, 'ENOENT')) throw bad('target vanished while replacing the link path');
      throw err;
    }
    // Like containerd, the link entry's metadata is applied to the shared
    // inode, but only what differs: a chown, even to the same ids, would
    // strip setuid/setgid and security.capability the earlier entry set.
    const chown = this.opts.chown && (st.uid !== meta.uid || st.gid !== meta.gid);
    if (chown) fs.lchownSync(p, meta.uid, meta.gid);
    this.setXattrs(p, meta, st.isSymbolicLink());
    if (!st.isSymbolicLink() && (chown || (st.mode & 0o7777) !== meta.mode)) fs.chmodSync(p, meta.mode);
    setTimes(p, meta.atime, meta.mtime);
    return true;
  }

  private applyMeta(p: string, meta: EntryMeta, isSymlink: boolean): void {
    this.chown(p, meta);
    this.setXattrs(p, meta, isSymlink);
    if (!isSymlink) fs.chmodSync(p, meta.mode);
    setTimes(p, meta.atime, meta.mtime);
  }

  private chown(p: string, meta: EntryMeta): void {
    if (this.opts.chown) fs.lchownSync(p, meta.uid, meta.gid);
  }

  private setXattrs(p: string, meta: EntryMeta, isSymlink: boolean): void {
    for (const [name, value] of meta.xattrs) {
      try {
        setXattr(p, name, value);
      } catch (err) {
        // As containerd: a filesystem without xattrs only warns, and user.*
        // cannot exist on symlinks or special files (EPERM).
        const special = isSymlink || meta.type === 'char' || meta.type === 'block' || meta.type === 'fifo';
        if (isErrno(err, 'ENOTSUP', 'EOPNOTSUPP') || (special && name.startsWith('user.') && isErrno(err, 'EPERM'))) {
          this.opts.warn(`xattr ${name} on "${meta.name}" ignored: ${(err as Error).message}`);
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * finish sets the deferred directory modes and times, deepest first. A
   * directory a later entry removed or replaced is skipped.
   */
  async finish(): Promise<void> {
    const dirs = [...this.dirs.values()].sort((a, b) => b.parts.length - a.parts.length);
    for (const d of dirs) {
      this.opts.signal?.throwIfAborted();
      const parent = await this.resolver.resolveDir(d.parts.slice(0, -1), false);
      if (!parent || joinKey(parent) !== joinKey(d.parts.slice(0, -1))) continue;
      const p = this.resolver.abs(d.parts);
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (!st || !st.isDirectory()) continue;
      fs.chmodSync(p, d.mode);
      setTimes(p, d.atime, d.mtime);
    }
  }
}
