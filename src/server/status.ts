// status is the one place a thrown error becomes a gRPC status. containerd
// acts on the codes (AlreadyExists during unpack means "layer already there",
// NotFound on Stat means "prepare it"), so the mapping follows containerd's
// errdefs → gRPC table exactly; the message travels as the status details.

import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { fromErrno } from '../sys/errno.js';
import { errorMessage, isTsblockError, type ErrorCode } from '../errdefs.js';

const codes: Record<ErrorCode, Status> = {
  'not-found': Status.NOT_FOUND,
  'already-exists': Status.ALREADY_EXISTS,
  'failed-precondition': Status.FAILED_PRECONDITION,
  'invalid-argument': Status.INVALID_ARGUMENT,
  unavailable: Status.UNAVAILABLE,
  'resource-exhausted': Status.RESOURCE_EXHAUSTED,
  'not-implemented': Status.UNIMPLEMENTED,
  'data-loss': Status.DATA_LOSS,
  internal: Status.INTERNAL,
};

/**
 * statusCode is the gRPC status for any thrown value. A raw kernel error that
 * reached the edge gets its typed meaning from sys/errno.ts first (EBUSY:
 * FailedPrecondition, which containerd's GC logs and goes past; ENOSPC/EDQUOT:
 * ResourceExhausted); anything else untyped is UNKNOWN.
 */
export function statusCode(err: unknown): Status {
  const typed = fromErrno(err);
  if (isTsblockError(typed)) return codes[typed.code] ?? Status.UNKNOWN;
  return Status.UNKNOWN;
}

/**
 * toServiceError turns any thrown value into the error object grpc-js sends
 * ({code, details, metadata}); details is the error's message.
 */
export function toServiceError(err: unknown): ServiceError {
  const code = statusCode(err);
  const details = errorMessage(err) || Status[code];
  const out = new Error(details) as ServiceError;
  out.code = code;
  out.details = details;
  out.metadata = new Metadata();
  return out;
}
