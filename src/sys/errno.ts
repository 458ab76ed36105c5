// errno is where a kernel error becomes one of tsblock's typed errors, once,
// at the sys boundary. ffi/ throws ErrnoError (and node:fs throws its own
// errors with the same `code`); the layers above ask isErrno() when a code
// steers their own control flow (ENOENT: already gone), and hand anything
// they cannot handle to fromErrno(), which is the only errno → typed error
// table. server/status.ts is the only typed error → gRPC table.

import {
  AlreadyExistsError,
  FailedPreconditionError,
  NotFoundError,
  ResourceExhaustedError,
  errorMessage,
  isTsblockError,
  type TsblockError,
} from '../errdefs.js';
import { ErrnoError, isErrno } from '../../ffi/errno.js';

export { ErrnoError, errnoName, isErrno } from '../../ffi/errno.js';

/** ERRNO_TABLE is every errno a caller can act on, and the typed error it means. */
const ERRNO_TABLE: readonly { codes: readonly string[]; make: (msg: string, cause: unknown) => TsblockError }[] = [
  // The storage under a snapshot (the root's filesystem, the XFS store, a thin pool) is full.
  { codes: ['ENOSPC', 'EDQUOT'], make: (msg, cause) => new ResourceExhaustedError(msg, { cause }) },
  // A device or image is still in use (mounted, held by a container or VM): containerd's GC logs and goes past it.
  { codes: ['EBUSY'], make: (msg, cause) => new FailedPreconditionError(msg, { cause }) },
];

/**
 * fromErrno returns the typed error a kernel error means (ENOSPC/EDQUOT:
 * ResourceExhaustedError, EBUSY: FailedPreconditionError), with `context`
 * before its message; a typed error or any other value is returned as is.
 */
export function fromErrno(err: unknown, context?: string): unknown {
  if (isTsblockError(err)) return err;
  for (const row of ERRNO_TABLE) {
    if (isErrno(err, ...row.codes)) return row.make(context ? `${context}: ${errorMessage(err)}` : errorMessage(err), err);
  }
  return err;
}

/**
 * fromDmErrno is the device-mapper reading of a DM_* ioctl's errno, where the
 * numbers mean something narrower: ENXIO/ENODEV/ENODATA an unknown device or
 * thin id (NotFoundError), EEXIST a taken name (AlreadyExistsError), EBUSY a
 * device still open (FailedPreconditionError). `what` is the command and
 * `name` the device, for the message.
 */
export function fromDmErrno(err: unknown, what: string, name: string | undefined): unknown {
  if (!(err instanceof ErrnoError)) return err;
  const subject = name === undefined ? what : `${what} ${JSON.stringify(name)}`;
  switch (err.code) {
    case 'ENXIO':
    case 'ENODEV':
    case 'ENODATA':
      return new NotFoundError(`${subject}: no such device-mapper device or thin id (${err.code})`, { cause: err });
    case 'EEXIST':
      return new AlreadyExistsError(`${subject}: already exists`, { cause: err });
    case 'EBUSY':
      return new FailedPreconditionError(`${subject}: device is busy`, { cause: err });
    default:
      return err;
  }
}
