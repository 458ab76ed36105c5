// ErrnoError is what every failed libc call in ffi/ throws: the syscall's
// name, the errno number and its symbolic code (EBUSY, ENOENT…), so callers
// can branch on `code` the way Node's own fs errors allow.

import { constants } from 'node:os';

const names = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) names.set(value, name);

/** errnoName maps an errno number to its symbol ("EBUSY"), or "E<n>". */
export function errnoName(errno: number): string {
  return names.get(errno) ?? `E${errno}`;
}

/** ErrnoError carries the failing syscall, errno and a readable message. */
export class ErrnoError extends Error {
  readonly code: string;

  constructor(
    readonly syscall: string,
    readonly errno: number,
    detail?: string,
  ) {
    const code = errnoName(errno);
    super(`${syscall}${detail ? ` ${detail}` : ''}: ${code} (errno ${errno})`);
    this.code = code;
    Object.defineProperty(this, 'name', { value: 'ErrnoError', enumerable: false });
  }
}

/** isErrno tells whether err is an ErrnoError (or a Node fs error) with one of the codes. */
export function isErrno(err: unknown, ...codes: string[]): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && codes.includes(code);
}
