import { describe, expect, it } from 'vitest';
import { status as Status } from '@grpc/grpc-js';
import {
  AlreadyExistsError,
  DataLossError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
  ResourceExhaustedError,
  UnavailableError,
} from '../../../src/errdefs.js';
import { ErrnoError } from '../../../ffi/errno.js';
import { statusCode, toServiceError } from '../../../src/server/status.js';

describe('toServiceError', () => {
  const cases: Array<[string, Error, Status]> = [
    ['not-found', new NotFoundError('snapshot x: not found'), Status.NOT_FOUND],
    ['already-exists', new AlreadyExistsError('snapshot x: already exists'), Status.ALREADY_EXISTS],
    ['failed-precondition', new FailedPreconditionError('x has children'), Status.FAILED_PRECONDITION],
    ['invalid-argument', new InvalidArgumentError('bad filter'), Status.INVALID_ARGUMENT],
    ['unavailable', new UnavailableError('shutting down'), Status.UNAVAILABLE],
    ['resource-exhausted', new ResourceExhaustedError('pool full'), Status.RESOURCE_EXHAUSTED],
    ['not-implemented', new NotImplementedError('no diff'), Status.UNIMPLEMENTED],
    ['data-loss', new DataLossError('image damaged'), Status.DATA_LOSS],
    ['internal', new InternalError('invariant broke'), Status.INTERNAL],
    ['a raw EBUSY (fs error)', Object.assign(new Error('EBUSY: resource busy or locked, rmdir'), { code: 'EBUSY' }), Status.FAILED_PRECONDITION],
    ['a raw ENOSPC', Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }), Status.RESOURCE_EXHAUSTED],
    ['an ErrnoError EBUSY from an ioctl', new ErrnoError('ioctl DM_DEV_REMOVE', 16, 'tsblock-x-snap-3'), Status.FAILED_PRECONDITION],
    ['a raw EIO', Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' }), Status.UNKNOWN],
    ['a plain Error', new Error('boom'), Status.UNKNOWN],
    ['a TypeError', new TypeError('x is undefined'), Status.UNKNOWN],
  ];

  it.each(cases)('maps %s to the right code and keeps the message', (_name, err, code) => {
    const se = toServiceError(err);
    expect(se.code).toBe(code);
    expect(statusCode(err)).toBe(code);
    expect(se.details).toBe(err.message);
    expect(se.message).toBe(err.message);
    expect(se.metadata.getMap()).toEqual({});
    expect(se).toBeInstanceOf(Error);
  });

  it('renders non-Error throws as UNKNOWN with their text', () => {
    const se = toServiceError('just a string');
    expect(se.code).toBe(Status.UNKNOWN);
    expect(se.details).toBe('just a string');
  });

  it('never sends empty details', () => {
    const se = toServiceError(new NotFoundError(''));
    expect(se.code).toBe(Status.NOT_FOUND);
    expect(se.details).toBe('NOT_FOUND');
  });

  it('recognizes typed errors from another module copy by their marker', () => {
    const foreign = Object.assign(new Error('gone'), { code: 'not-found', [Symbol.for('tsblock.error')]: true });
    expect(toServiceError(foreign).code).toBe(Status.NOT_FOUND);
  });

  it('does not trust a code string on an untyped error', () => {
    const errnoLike = Object.assign(new Error('ENOENT: no such file'), { code: 'not-found' });
    expect(toServiceError(errnoLike).code).toBe(Status.UNKNOWN);
  });
});
