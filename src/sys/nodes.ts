// nodes wraps the few libc calls the applier needs beyond node:fs
// (ffi/mknod.ts): device nodes, xattrs on the entry itself (never a symlink's
// target) and nanosecond timestamps that do not follow a final symlink.
// Everything here acts on one path whose parents the caller already resolved
// inside the layer root (see paths.ts).

import fs from 'node:fs';
import {
  AT_SYMLINK_NOFOLLOW,
  S_IFBLK,
  S_IFCHR,
  S_IFIFO,
  lgetxattrRaw,
  llistxattrRaw,
  lsetxattrRaw,
  makedevNumber,
  mknodRaw,
  utimensatRaw,
} from '../../ffi/mknod.js';

/** NodeKind is the kind of special file makeNode creates. */
export type NodeKind = 'char' | 'block' | 'fifo';

/** Timespec is a POSIX time with nanoseconds, as tar's PAX records carry it. */
export interface Timespec {
  sec: bigint;
  nsec: number;
}

/** makeNode creates a device node or fifo; perm is the permission bits (umask applies, chmod later). */
export function makeNode(path: string, kind: NodeKind, perm: number, major = 0, minor = 0): void {
  const type = kind === 'char' ? S_IFCHR : kind === 'block' ? S_IFBLK : S_IFIFO;
  const dev = kind === 'fifo' ? 0n : makedevNumber(major, minor);
  mknodRaw(path, type | (perm & 0o7777), dev);
}

/** setXattr sets an extended attribute on path itself (a final symlink is not followed). */
export function setXattr(path: string, name: string, value: Buffer): void {
  lsetxattrRaw(path, name, value);
}

/** getXattr reads an extended attribute of path itself; undefined when absent. */
export function getXattr(path: string, name: string): Buffer | undefined {
  return lgetxattrRaw(path, name);
}

/** listXattrs lists the extended attribute names of path itself. */
export function listXattrs(path: string): string[] {
  return llistxattrRaw(path);
}

/**
 * wholeSeconds returns t as a number when Node's own utimes calls carry it
 * exactly: whole seconds (a double holds them exactly; Node converts times
 * through doubles, so nanoseconds could be rounded) and not negative (libuv
 * reads -1 and -2 as "now" and "omit"). Most layers' times are whole seconds
 * (plain ustar headers); PAX nanosecond times take the utimensat path.
 */
function wholeSeconds(t: Timespec): number | undefined {
  if (t.nsec !== 0 || t.sec < 0n || t.sec > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return Number(t.sec);
}

/** setTimes sets atime and mtime of path itself (a final symlink is not followed). */
export function setTimes(path: string, atime: Timespec, mtime: Timespec): void {
  const a = wholeSeconds(atime);
  const m = wholeSeconds(mtime);
  // lutimes(2) through libuv costs a fraction of an FFI call (ffi-rs marshals
  // every argument); the result is the same utimensat(AT_SYMLINK_NOFOLLOW).
  if (a !== undefined && m !== undefined) fs.lutimesSync(path, a, m);
  else utimensatRaw(path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW);
}

/** setTimesFd is setTimes on a regular file still open as fd (path is used when nanoseconds need utimensat). */
export function setTimesFd(fd: number, path: string, atime: Timespec, mtime: Timespec): void {
  const a = wholeSeconds(atime);
  const m = wholeSeconds(mtime);
  if (a !== undefined && m !== undefined) fs.futimesSync(fd, a, m);
  else utimensatRaw(path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW);
}
