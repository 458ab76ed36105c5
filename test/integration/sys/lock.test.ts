import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { lockExclusive } from '../../../src/sys/lock.js';
import { UnavailableError } from '../../../src/errdefs.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-lock-'));
const lockFile = path.join(dir, 'tsblock.lock');

// tryInChild runs a second node process that takes a non-blocking flock on
// the file through ffi-rs directly (Node 20 cannot import our .ts) and prints
// "locked" or the errno number.
function tryInChild(): string {
  const script = `
    const ffi = require('ffi-rs');
    const fs = require('node:fs');
    ffi.open({ library: 'c', path: '' });
    const fd = fs.openSync(${JSON.stringify(lockFile)}, 'r+');
    const r = ffi.load({ library: 'c', funcName: 'flock', retType: ffi.DataType.I32,
      paramsType: [ffi.DataType.I32, ffi.DataType.I32], paramsValue: [fd, 2 | 4], errno: true });
    console.log(r.value === 0 ? 'locked' : 'errno ' + r.errnoCode);
  `;
  return execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', cwd: process.cwd() }).trim();
}

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('lockExclusive', () => {
  it('excludes a second holder in this process and in another process', () => {
    const lock = lockExclusive(lockFile);
    try {
      expect(fs.statSync(lockFile).mode & 0o777).toBe(0o600);
      let err: unknown;
      try {
        lockExclusive(lockFile);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UnavailableError);
      expect(String(err)).toContain(`another tsblock holds ${lockFile}`);
      expect(tryInChild()).toBe('errno 11'); // EWOULDBLOCK
    } finally {
      lock.release();
    }
    lock.release(); // idempotent
    expect(tryInChild()).toBe('locked');
    lockExclusive(lockFile).release();
  });
});
