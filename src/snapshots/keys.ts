// keys validates snapshot keys and names. tsblock never turns a key into a
// path or a device name (those come from numeric ids), so the rules only keep
// out what no caller can mean: empty, NUL, oversized, or `..` path segments.

import { InvalidArgumentError } from '../errdefs.js';

/** MAX_KEY_LENGTH bounds a key in bytes (containerd keys are "ns/id/name", far shorter). */
export const MAX_KEY_LENGTH = 4096;

/** validateKey throws InvalidArgumentError when `key` cannot name a snapshot. */
export function validateKey(key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string' || key === '') throw new InvalidArgumentError(`${what} must not be empty`);
  if (key.includes('\0')) throw new InvalidArgumentError(`${what} contains a NUL byte`);
  if (Buffer.byteLength(key) > MAX_KEY_LENGTH) {
    throw new InvalidArgumentError(`${what} is longer than ${MAX_KEY_LENGTH} bytes`);
  }
  if (key.split('/').includes('..')) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(key)} contains a ".." segment`);
  }
}
