// lock keeps two tsblock daemons off one root: an flock on a file in the
// root, released by the kernel if the process dies (no stale lock files).

import fs from 'node:fs';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN } from '../../ffi/libc.js';
import { isErrno } from '../../ffi/errno.js';
import { UnavailableError } from '../errdefs.js';

/** FileLock is a held exclusive lock. */
export interface FileLock {
  readonly path: string;
  /** release drops the lock and closes the file; calling it twice is harmless. */
  release(): void;
}

/** lockExclusive takes a non-blocking exclusive flock on path (created 0600), or throws UnavailableError. */
export function lockExclusive(path: string): FileLock {
  const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  try {
    flock(fd, LOCK_EX | LOCK_NB);
  } catch (err) {
    fs.closeSync(fd);
    if (isErrno(err, 'EWOULDBLOCK', 'EAGAIN')) {
      throw new UnavailableError(`another tsblock holds ${path}`, { cause: err });
    }
    throw err;
  }
  let held = true;
  return {
    path,
    release(): void {
      if (!held) return;
      held = false;
      try {
        flock(fd, LOCK_UN);
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}
