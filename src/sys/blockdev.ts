// blockdev answers questions about block devices (size, type) with ioctls,
// e.g. to check a thin volume or loop device before handing it out.

import fs from 'node:fs';
import { ioctlBuffer } from '../../ffi/libc.js';
import { BLKGETSIZE64 } from '../../ffi/fs.js';

/** blockDeviceSize returns a block device's size in bytes (BLKGETSIZE64). */
export function blockDeviceSize(path: string): number {
  const fd = fs.openSync(path, fs.constants.O_RDONLY);
  try {
    const out = Buffer.alloc(8);
    ioctlBuffer(fd, BLKGETSIZE64, out, path);
    return Number(out.readBigUInt64LE(0));
  } finally {
    fs.closeSync(fd);
  }
}

/** isBlockDevice tells whether path (following symlinks) is a block device; false if missing. */
export function isBlockDevice(path: string): boolean {
  try {
    return fs.statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}
