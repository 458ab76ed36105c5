// call is the one place ffi-rs is asked to call into libc: every binding in
// ffi/ builds its parameters with the helpers below and goes through
// syscall(). ffi-rs reports a stale errno on success, so the return value is
// checked first and errno is only read after a failure.

import ffi from 'ffi-rs';
import { ErrnoError } from './errno.js';

const { DataType, load, open } = ffi;
const LIB = 'libc';
let opened = false;

function lib(): string {
  if (!opened) {
    // An empty path asks ffi-rs for the running process's own symbols, which
    // include glibc: no hard-coded libc.so path.
    open({ library: LIB, path: '' });
    opened = true;
  }
  return LIB;
}

/** Param is one typed argument of a C call. */
export type Param = { type: ffi.DataType; value: unknown };

/** Raw is what ffi-rs returns for a call made with errno: true. */
type Raw = { value: number | bigint; errnoCode: number };

/** options builds the ffi-rs call description shared by the sync and async paths. */
function options(funcName: string, retType: ffi.DataType, params: Param[]) {
  return { library: lib(), funcName, retType, paramsType: params.map((p) => p.type), paramsValue: params.map((p) => p.value), errno: true as const };
}

/** settle turns a raw result into value and errno (64-bit returns come back as bigint). */
function settle(r: Raw): { value: number; errno: number } {
  return { value: typeof r.value === 'bigint' ? Number(r.value) : r.value, errno: r.errnoCode };
}

/** callRaw calls funcName and returns its value and errno without judging them. */
export function callRaw(funcName: string, retType: ffi.DataType, params: Param[]): { value: number; errno: number } {
  return settle(load(options(funcName, retType, params)) as unknown as Raw);
}

/** syscall calls funcName and throws ErrnoError(name, errno, detail) when it returns a negative value. */
export function syscall(funcName: string, retType: ffi.DataType, params: Param[], detail?: string, name = funcName): number {
  const r = callRaw(funcName, retType, params);
  if (r.value < 0) throw new ErrnoError(name, r.errno, detail);
  return r.value;
}

/**
 * syscallAsync is syscall() run on a worker thread (ffi-rs runInNewThread):
 * the event loop keeps serving while the kernel works. Buffer arguments are
 * still passed by pointer, so the caller must not touch them until it settles.
 */
export async function syscallAsync(funcName: string, retType: ffi.DataType, params: Param[], detail?: string, name = funcName): Promise<number> {
  const r = settle((await load({ ...options(funcName, retType, params), runInNewThread: true })) as unknown as Raw);
  if (r.value < 0) throw new ErrnoError(name, r.errno, detail);
  return r.value;
}

/** i32 is a C int argument. */
export const i32 = (value: number): Param => ({ type: DataType.I32, value });
/** u64 is an unsigned long / size_t argument. */
export const u64 = (value: number): Param => ({ type: DataType.U64, value });
/** i64 is a long / off_t argument. */
export const i64 = (value: number): Param => ({ type: DataType.I64, value });
/** big is a 64-bit argument given as a bigint (dev_t). */
export const big = (value: bigint): Param => ({ type: DataType.BigInt, value });
/** str is a NUL-terminated string argument. */
export const str = (value: string): Param => ({ type: DataType.String, value });
/** buf passes a Buffer by pointer; the callee may write into it. */
export const buf = (value: Buffer): Param => ({ type: DataType.U8Array, value });

export { DataType };
