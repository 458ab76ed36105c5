// syscalls wraps the few libc calls the applier needs beyond node:fs
// (ffi/mknod.ts): device nodes, xattrs on the entry itself (never a symlink's
// target) and nanosecond timestamps that do not follow a final symlink.
// Everything here acts on one path whose parents the caller already resolved
// inside the layer root (see paths.ts).

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

/** setTimes sets atime and mtime of path itself (a final symlink is not followed). */
export function setTimes(path: string, atime: Timespec, mtime: Timespec): void {
  utimensatRaw(path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW);
}
