// libc opens the C library through ffi-rs and exposes the handful of calls
// Node has no binding for: ioctl, mount, umount2, lseek with SEEK_DATA/HOLE,
// fallocate, flock. Each wrapper checks the return value (errno is only
// meaningful after a failure) and throws ErrnoError. Calls are synchronous:
// every one of them is a short syscall.
//
// Only src/sys imports this folder; the rest of tsblock sees typed verbs.

import { DataType, big, buf, callRaw, i32, i64, str, syscall, syscallAsync, u64 } from './call.js';
import { ErrnoError } from './errno.js';

/** ioctlBuffer issues ioctl(fd, request, buf): buf is passed by pointer, in and out. */
export function ioctlBuffer(fd: number, request: number, data: Buffer, detail?: string): number {
  return syscall('ioctl', DataType.I32, [i32(fd), u64(request), buf(data)], detail);
}

/** ioctlBufferAsync is ioctlBuffer on a worker thread; data must stay untouched until it settles. */
export function ioctlBufferAsync(fd: number, request: number, data: Buffer, detail?: string): Promise<number> {
  return syscallAsync('ioctl', DataType.I32, [i32(fd), u64(request), buf(data)], detail);
}

/** ioctlInt issues ioctl(fd, request, arg) with an integer argument (or none: pass 0). */
export function ioctlInt(fd: number, request: number, arg: number, detail?: string): number {
  return syscall('ioctl', DataType.I32, [i32(fd), u64(request), i64(arg)], detail);
}

/** mount is mount(2); data is the filesystem's option string ("" for none). */
export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  syscall('mount', DataType.I32, [str(source), str(target), str(fstype), u64(flags), str(data)], `${source} on ${target}`);
}

/** umount2 is umount2(2). */
export function umount2(target: string, flags: number): void {
  syscall('umount2', DataType.I32, [str(target), i32(flags)], target);
}

/** SEEK_DATA and SEEK_HOLE are Linux's lseek whence values for sparse files. */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/**
 * lseek returns the new offset, or -1 with ENXIO past the last data (SEEK_DATA):
 * that case is returned as -1 rather than thrown, since it is the normal end.
 */
export function lseek(fd: number, offset: number, whence: number): number {
  const r = callRaw('lseek', DataType.BigInt, [i32(fd), big(BigInt(offset)), i32(whence)]);
  if (r.value < 0 && r.errno === 6 /* ENXIO */) return -1;
  if (r.value < 0) throw new ErrnoError('lseek', r.errno);
  return r.value;
}

/** FALLOC_FL_* flags for fallocate. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;

/** fallocate is fallocate(2). */
export function fallocate(fd: number, mode: number, offset: number, length: number): void {
  syscall('fallocate', DataType.I32, [i32(fd), i32(mode), big(BigInt(offset)), big(BigInt(length))]);
}

/** LOCK_* operations for flock. */
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/** flock is flock(2). */
export function flock(fd: number, operation: number): void {
  syscall('flock', DataType.I32, [i32(fd), i32(operation)]);
}


/** syncfsAsync is syncfs(2) on a worker thread: writes back the whole filesystem holding fd. */
export function syncfsAsync(fd: number, detail?: string): Promise<number> {
  return syscallAsync('syncfs', DataType.I32, [i32(fd)], detail);
}
