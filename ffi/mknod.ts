// mknod holds the libc calls the layer applier needs and Node's fs lacks:
// mknod(2) for device nodes and fifos, the l*xattr family (never following a
// final symlink, so an xattr meant for a link cannot land on its target) and
// utimensat(2) with nanosecond times and AT_SYMLINK_NOFOLLOW. Like libc.ts,
// each wrapper checks the return value first (ffi-rs reports a stale errno on
// success) and throws ErrnoError on failure.
//
// Only src/apply (the applier's syscall wrapper) and src/sys import this file.

import { DataType, buf, callRaw, i32, str, syscall, u64 } from './call.js';
import { ErrnoError } from './errno.js';

/** S_IF* file type bits of st_mode, as mknod(2) takes them. */
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

/** AT_FDCWD makes *at() calls resolve relative paths against the cwd. */
export const AT_FDCWD = -100;
/** AT_SYMLINK_NOFOLLOW makes utimensat act on a final symlink itself. */
export const AT_SYMLINK_NOFOLLOW = 0x100;

/** makedevNumber and mknodRaw are the dev_t encoder and mknod(2) of ffi/fs.ts, under the applier's names. */
export { makedev as makedevNumber, mknod as mknodRaw } from './fs.js';

/** lsetxattrRaw is lsetxattr(2) with flags 0 (create or replace). */
export function lsetxattrRaw(path: string, name: string, value: Buffer): void {
  // A zero-length Buffer may be passed as a null pointer; the kernel accepts
  // that with size 0, which is exactly an empty xattr value.
  syscall('lsetxattr', DataType.I32, [str(path), str(name), buf(value), u64(value.length), i32(0)], `${path} ${name}`);
}

/**
 * lgetxattrRaw is lgetxattr(2): the value of name on path (not following a
 * final symlink), or undefined when the attribute is absent (ENODATA).
 */
export function lgetxattrRaw(path: string, name: string): Buffer | undefined {
  // First ask for the size, then read into a buffer of that size.
  const size = callRaw('lgetxattr', DataType.I64, [str(path), str(name), buf(Buffer.alloc(1)), u64(0)]);
  if (size.value < 0) {
    if (size.errno === 61 /* ENODATA */) return undefined;
    throw new ErrnoError('lgetxattr', size.errno, `${path} ${name}`);
  }
  const out = Buffer.alloc(Math.max(size.value, 1));
  const n = syscall('lgetxattr', DataType.I64, [str(path), str(name), buf(out), u64(out.length)], `${path} ${name}`);
  return out.subarray(0, n);
}

/** llistxattrRaw is llistxattr(2): the xattr names on path (a final symlink itself). */
export function llistxattrRaw(path: string): string[] {
  const size = syscall('llistxattr', DataType.I64, [str(path), buf(Buffer.alloc(1)), u64(0)], path);
  if (size === 0) return [];
  const out = Buffer.alloc(size);
  const n = syscall('llistxattr', DataType.I64, [str(path), buf(out), u64(out.length)], path);
  return out
    .subarray(0, n)
    .toString('latin1')
    .split('\0')
    .filter((s) => s.length > 0);
}

/**
 * utimensatRaw is utimensat(2) relative to AT_FDCWD with explicit
 * {sec, nsec} access and modification times; flags is 0 or
 * AT_SYMLINK_NOFOLLOW.
 */
export function utimensatRaw(path: string, atimeSec: bigint, atimeNsec: number, mtimeSec: bigint, mtimeNsec: number, flags: number): void {
  // struct timespec[2] on x86_64/aarch64: two {int64 tv_sec; int64 tv_nsec}.
  const ts = Buffer.alloc(32);
  ts.writeBigInt64LE(atimeSec, 0);
  ts.writeBigInt64LE(BigInt(atimeNsec), 8);
  ts.writeBigInt64LE(mtimeSec, 16);
  ts.writeBigInt64LE(BigInt(mtimeNsec), 24);
  syscall('utimensat', DataType.I32, [i32(AT_FDCWD), str(path), buf(ts), i32(flags)], path);
}
