// errdefs holds the error classes callers catch. They mirror containerd's
// errdefs package: the class decides the gRPC status code (see
// src/server/status.ts, the only place that mapping happens), the message is
// for people. Every error a request can cause is one of these; anything else
// reaching the server edge is a bug and goes out as INTERNAL/UNKNOWN.

/** ErrorCode is the stable, machine-readable kind of a TsblockError. */
export type ErrorCode =
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'invalid-argument'
  | 'unavailable'
  | 'resource-exhausted'
  | 'not-implemented'
  | 'data-loss'
  | 'internal';

const marker = Symbol.for('tsblock.error');

/** TsblockError is the base of every typed error; `code` never changes meaning. */
export abstract class TsblockError extends Error {
  abstract readonly code: ErrorCode;
  readonly [marker] = true;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false });
  }
}

/** NotFoundError: the snapshot, parent or object does not exist. */
export class NotFoundError extends TsblockError {
  readonly code = 'not-found' as const;
}

/** AlreadyExistsError: the key or name is taken. containerd treats it as "someone else did it". */
export class AlreadyExistsError extends TsblockError {
  readonly code = 'already-exists' as const;
}

/** FailedPreconditionError: the request is valid but the state forbids it (e.g. removing a parent). */
export class FailedPreconditionError extends TsblockError {
  readonly code = 'failed-precondition' as const;
}

/** InvalidArgumentError: the request itself is malformed; nothing was changed. */
export class InvalidArgumentError extends TsblockError {
  readonly code = 'invalid-argument' as const;
}

/** UnavailableError: the service is shutting down or a resource is temporarily absent. */
export class UnavailableError extends TsblockError {
  readonly code = 'unavailable' as const;
}

/** ResourceExhaustedError: the pool or the filesystem under the root is (nearly) full. */
export class ResourceExhaustedError extends TsblockError {
  readonly code = 'resource-exhausted' as const;
}

/** NotImplementedError: the backend does not support the operation. */
export class NotImplementedError extends TsblockError {
  readonly code = 'not-implemented' as const;
}

/** DataLossError: stored data is damaged (e.g. an image's ext4 metadata checksums fail); the message says where. */
export class DataLossError extends TsblockError {
  readonly code = 'data-loss' as const;
}

/** InternalError: an invariant broke; the message says which. */
export class InternalError extends TsblockError {
  readonly code = 'internal' as const;
}

/** isTsblockError works across module copies (symbol registry), like execa's isExecaError. */
export function isTsblockError(err: unknown): err is TsblockError {
  return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[marker] === true;
}

export function isNotFound(err: unknown): err is NotFoundError {
  return isTsblockError(err) && err.code === 'not-found';
}

export function isAlreadyExists(err: unknown): err is AlreadyExistsError {
  return isTsblockError(err) && err.code === 'already-exists';
}

export function isFailedPrecondition(err: unknown): err is FailedPreconditionError {
  return isTsblockError(err) && err.code === 'failed-precondition';
}

export function isInvalidArgument(err: unknown): err is InvalidArgumentError {
  return isTsblockError(err) && err.code === 'invalid-argument';
}

/** errorMessage renders any thrown value for a log line. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
