// XfsFileStore is the blockfile backend's own reflink filesystem, for hosts
// whose root cannot reflink (ext4, the usual /var/lib): an XFS (reflink=1)
// filesystem in a sparse file under the root, loop-mounted by tsblock,
//
//   <root>/store.xfs     the sparse file (its allocated blocks are the disk cost)
//   <root>/store/        where it is mounted; images live in <root>/store/blockfile
//
// so a child image is a FICLONE of its parent (milliseconds, shares every
// block) instead of a copy of the whole image. Why XFS in a file and not
// btrfs, and the figures: docs/performance.md ("The store on hosts that
// cannot reflink").
//
// Life cycle:
// - open(): reuse the mount if the store is already mounted (a restart while
//   containers run keeps their mounts: the store cannot go away under them);
//   else make the file once (formatted under a .tmp name, renamed when whole),
//   attach it to a loop device (direct I/O, so its blocks are cached once, by
//   XFS, not a second time in the host's page cache of store.xfs) with
//   autoclear, and mount it. XFS replays its log after a crash.
// - ensureRoom(): the file starts at min(32 GiB, what the host has free) and
//   grows (truncate, LOOP_SET_CAPACITY, xfs_growfs) when XFS's free space runs
//   low, never past what the host can still back: XFS then reports ENOSPC
//   itself before the host runs out under it (which would turn writes into
//   I/O errors). Growth is online, under running containers.
// - blocks XFS frees (removed images) go back to the host file as holes: the
//   store is mounted with online discard (XFS issues it once the freeing is
//   in its log, off the caller's path), and Cleanup also runs FITRIM.
//   (FITRIM alone missed extents freed since the last trim in our tests on
//   6.18; online discard returned every one.)
// - close(): unmounts only when nothing inside is in use (no mount below it,
//   no loop device on an image in it); otherwise it stays for the containers
//   and the next start reuses it.

import { chmodSync, closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, statfsSync, truncateSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FailedPreconditionError, ResourceExhaustedError } from '../../errdefs.js';
import { isErrno } from '../../sys/errno.js';
import { attachLoop, canonicalPath, listLoops, loopBackingFile, releaseLoop, setLoopCapacity, type LoopDevice } from '../../sys/loop.js';
import { mountEntry, mountOne, mountsUnder, unmount } from '../../sys/mount.js';
import { growXfs, makeXfs, trimFilesystem } from '../../sys/xfs.js';
import type { CoreLogger } from '../../base/log.js';
import type { FreeSpace } from '../../core/backend.js';

/** STORE_FILE and STORE_DIR name the store's file and mount point under a root. */
export const STORE_FILE = 'store.xfs';
export const STORE_DIR = 'store';

/** DEFAULT_STORE_INITIAL_SIZE is the store file's first apparent size (sparse: costs nothing until written). */
export const DEFAULT_STORE_INITIAL_SIZE = 32 * 1024 ** 3;
/** STORE_MIN_SIZE is the smallest store worth making (XFS needs ~300 MiB; images need room). */
export const STORE_MIN_SIZE = 1024 ** 3;

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
/** Grow when XFS has less free than max(GROW_HEADROOM, a quarter of its size). */
const GROW_HEADROOM = 4 * GiB;
/** HOST_RESERVE is left on the host filesystem when sizing the store (never counted as growable). */
const HOST_RESERVE_MIN = 256 * MiB;

/** XfsStoreConfig configures a store under root. */
export interface XfsStoreConfig {
  root: string;
  initialSize?: number;
  log?: CoreLogger;
}

/** StoreStatus is what `tsblock usage`/`doctor` report about a store. */
export interface StoreStatus {
  file: string;
  mountpoint: string;
  mounted: boolean;
  device?: string;
  /** apparentSize is the file's size (= the XFS size once grown into it). */
  apparentSize: number;
  /** allocated is what the file costs on the host. */
  allocated: number;
  fsSize?: number;
  fsFree?: number;
  hostFree: number;
}

/** storeExists tells whether root already has an XFS store file. */
export function storeExists(root: string): boolean {
  return existsSync(join(root, STORE_FILE));
}

/** XfsFileStore owns <root>/store.xfs and its mount at <root>/store. */
export class XfsFileStore {
  readonly file: string;
  readonly mountpoint: string;
  private device: string | undefined;
  private growing: Promise<void> | undefined;
  private trimming: Promise<void> | undefined;

  constructor(private readonly cfg: XfsStoreConfig) {
    this.file = join(cfg.root, STORE_FILE);
    this.mountpoint = join(cfg.root, STORE_DIR);
  }

  /** open makes (first time), attaches and mounts the store, or adopts its existing mount. */
  async open(): Promise<void> {
    mkdirSync(this.mountpoint, { recursive: true, mode: 0o700 });
    const cur = mountEntry(this.mountpoint);
    if (cur) {
      const backing = cur.source.startsWith('/dev/loop') ? loopBackingFile(cur.source)?.replace(/ \(deleted\)$/, '') : undefined;
      if (cur.fsType === 'xfs' && existsSync(this.file) && backing === canonicalPath(this.file)) {
        this.device = cur.source;
        this.cfg.log?.('info', 'store already mounted (kept across the restart)', { file: this.file, device: cur.source });
        return;
      }
      throw new FailedPreconditionError(
        `${this.mountpoint} has ${cur.fsType} from ${cur.source} mounted, not tsblock's store ${this.file}: unmount it or use another root`,
      );
    }
    rmSync(`${this.file}.tmp`, { force: true });
    if (!existsSync(this.file)) await this.make();
    this.device = this.attachAndMount();
  }

  /** status reports the store's sizes (cheap: stat and statfs). */
  status(): StoreStatus {
    const st = existsSync(this.file) ? statSync(this.file) : undefined;
    const host = statfsSync(this.cfg.root);
    const mounted = this.device !== undefined || mountEntry(this.mountpoint)?.fsType === 'xfs';
    let fsSize: number | undefined;
    let fsFree: number | undefined;
    if (mounted) {
      const fs = statfsSync(this.mountpoint);
      fsSize = fs.blocks * fs.bsize;
      fsFree = fs.bavail * fs.bsize;
    }
    return {
      file: this.file,
      mountpoint: this.mountpoint,
      mounted,
      device: this.device ?? mountEntry(this.mountpoint)?.source,
      apparentSize: st?.size ?? 0,
      allocated: (st?.blocks ?? 0) * 512,
      fsSize,
      fsFree,
      hostFree: host.bavail * host.bsize,
    };
  }

  /**
   * freeSpace is what images can still take: XFS's free space plus what the
   * file can grow by, never more than the host filesystem can back.
   */
  freeSpace(): FreeSpace {
    const s = this.status();
    const host = statfsSync(this.cfg.root);
    const hostTotal = host.blocks * host.bsize;
    const holes = Math.max(0, s.apparentSize - s.allocated);
    // Growth never eats the host's reserve (sizeLimit), so neither does this figure.
    const growable = Math.max(0, s.hostFree - holes - hostReserve(hostTotal));
    const free = Math.min(s.hostFree, (s.fsFree ?? 0) + growable);
    return { free, total: hostTotal, what: `the store ${this.file} on the filesystem under ${this.cfg.root}` };
  }

  /** ensureRoom grows the store when XFS runs low (one growth at a time; cheap when nothing to do). */
  async ensureRoom(): Promise<void> {
    if (this.growing) return this.growing;
    const fs = statfsSync(this.mountpoint);
    const size = fs.blocks * fs.bsize;
    const free = fs.bavail * fs.bsize;
    if (free >= Math.max(GROW_HEADROOM, size / 4)) return;
    this.growing = this.grow().finally(() => (this.growing = undefined));
    return this.growing;
  }

  private async grow(): Promise<void> {
    const st = statSync(this.file);
    const limit = this.sizeLimit(st.size, st.blocks * 512);
    const target = Math.floor(Math.min(st.size * 2, limit) / MiB) * MiB;
    if (target < st.size + 256 * MiB) return; // the host has no more to give: XFS's own ENOSPC comes first
    if (!this.device) throw new FailedPreconditionError(`store ${this.file} is not mounted`);
    truncateSync(this.file, target);
    setLoopCapacity(this.device);
    await growXfs(this.mountpoint);
    this.cfg.log?.('info', 'grew the store', { file: this.file, from: st.size, to: target });
  }

  /** sizeLimit is the largest apparent size the host can back: allocated + host free − reserve. */
  private sizeLimit(apparent: number, allocated: number): number {
    const host = statfsSync(this.cfg.root);
    const hostFree = host.bavail * host.bsize;
    return Math.max(apparent, allocated + hostFree - hostReserve(host.blocks * host.bsize));
  }

  /** trim gives XFS's free blocks back to the host (holes in the file); returns bytes trimmed. */
  async trim(): Promise<number> {
    if (!this.device) return 0;
    while (this.trimming) await this.trimming;
    let trimmed = 0;
    this.trimming = (async () => {
      trimmed = await trimFilesystem(this.mountpoint, 64 * 1024);
    })().finally(() => (this.trimming = undefined));
    await this.trimming;
    return trimmed;
  }

  /** inUse lists what keeps the store mounted: mounts below it and loop devices on files in it. */
  inUse(): string[] {
    const prefix = canonicalPath(this.mountpoint) + '/';
    const mounts = mountsUnder(this.mountpoint).filter((m) => m !== this.mountpoint && m !== canonicalPath(this.mountpoint));
    const loops = listLoops().filter((l) => l.backingFile.startsWith(prefix)).map((l) => `${l.device} (${l.backingFile})`);
    return [...mounts, ...loops];
  }

  /** close trims and unmounts the store if nothing inside is in use; otherwise leaves it for its users. */
  async close(): Promise<void> {
    if (this.growing) await this.growing.catch(() => undefined);
    if (!this.device) return;
    const busy = this.inUse();
    if (busy.length > 0) {
      this.cfg.log?.('info', 'store stays mounted: in use', { mountpoint: this.mountpoint, users: busy.slice(0, 5), count: busy.length });
      this.device = undefined;
      return;
    }
    await this.trim().catch(() => 0);
    try {
      unmount(this.mountpoint);
    } catch (err) {
      // A user we could not see (an open file): leave it mounted for the next start.
      if (!isErrno(err, 'EBUSY')) throw err;
      this.cfg.log?.('warn', 'store stays mounted: busy', { mountpoint: this.mountpoint });
    }
    this.device = undefined;
  }

  /** make creates the store file: sized, formatted and synced under .tmp, then renamed. */
  private async make(): Promise<void> {
    const host = statfsSync(this.cfg.root);
    const hostFree = host.bavail * host.bsize;
    const reserve = hostReserve(host.blocks * host.bsize);
    const size = Math.floor(Math.min(this.cfg.initialSize ?? DEFAULT_STORE_INITIAL_SIZE, hostFree - reserve) / MiB) * MiB;
    if (size < STORE_MIN_SIZE) {
      throw new ResourceExhaustedError(
        `cannot make the store ${this.file}: the filesystem under ${this.cfg.root} has ${Math.floor(hostFree / MiB)} MiB free, ` +
          `${Math.ceil((STORE_MIN_SIZE + reserve) / MiB)} MiB needed`,
      );
    }
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      truncateSync(tmp, size);
    } finally {
      closeSync(fd);
    }
    await makeXfs(tmp);
    const done = openSync(tmp, 'r+');
    try {
      fsyncSync(done);
    } finally {
      closeSync(done);
    }
    renameSync(tmp, this.file);
    syncDir(dirname(this.file));
    this.cfg.log?.('info', 'created the store (XFS reflink=1 in a sparse file: the root cannot reflink)', { file: this.file, size });
  }

  private attachAndMount(): string {
    let dev: LoopDevice;
    try {
      dev = attachLoop(this.file, { autoclear: true, directIo: true, blockSize: 4096 });
    } catch (err) {
      // A host filesystem without O_DIRECT (tmpfs): buffered I/O is correct, only cached twice.
      if (!isErrno(err, 'EINVAL', 'EOPNOTSUPP')) throw err;
      dev = attachLoop(this.file, { autoclear: true });
    }
    try {
      mountOne({ type: 'xfs', source: dev.path, options: ['noatime', 'discard'] }, this.mountpoint);
      chmodSync(this.mountpoint, 0o700);
    } finally {
      // Mounted, the mount holds the device; not mounted, closing detaches it (autoclear).
      releaseLoop(dev);
    }
    this.cfg.log?.('info', 'mounted the store', { file: this.file, device: dev.path, mountpoint: this.mountpoint });
    return dev.path;
  }
}

/** hostReserve is what the store leaves on the host filesystem: 1% of it, at least 256 MiB. */
function hostReserve(hostTotal: number): number {
  return Math.max(HOST_RESERVE_MIN, hostTotal / 100);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** storeAllocated is the host bytes a store file costs (for listings without opening it). */
export function storeAllocated(root: string): number | undefined {
  const f = join(root, STORE_FILE);
  if (!existsSync(f)) return undefined;
  const fd = openSync(f, 'r');
  try {
    return fstatSync(fd).blocks * 512;
  } finally {
    closeSync(fd);
  }
}
