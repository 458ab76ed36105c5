// dm-nodes keeps /dev/mapper/<name> in step with the kernel's devices. The
// kernel only creates /dev/dm-<minor>; the named node is normally udev's job,
// and containers and minimal VMs run no udev (DM_DISABLE_UDEV=1 setups), so
// resume() makes the node itself with mknod and removeDevice() deletes it.

import fs from 'node:fs';
import { isErrno } from '../../ffi/errno.js';
import { S_IFBLK, makedev, mknod } from '../../ffi/fs.js';
import { DM_DIR } from './dm-control.js';
import { sleepSync } from './sleep.js';

/** devicePath is /dev/mapper/<name>. */
export function devicePath(name: string): string {
  return `${DM_DIR}/${name}`;
}

function udevManagesNodes(): boolean {
  if (process.env.DM_DISABLE_UDEV === '1') return false;
  return fs.existsSync('/run/udev/control');
}

function nodeMatches(path: string, dev: bigint): boolean {
  try {
    const st = fs.statSync(path, { bigint: true });
    return st.isBlockDevice() && st.rdev === dev;
  } catch {
    return false;
  }
}

// ensureNode makes /dev/mapper/<name> point at the device's numbers. With
// udev running (and not disabled) it first gives udev a moment, so the two
// don't fight over the name; then it creates or fixes the node itself.
// Without udev (the common case here) a new device's node is one mknod:
// the stat/unlink checks run only when that finds something in the way.
export function ensureNode(name: string, info: { activeTable: boolean; major: number; minor: number }): void {
  if (!info.activeTable) return;
  const path = devicePath(name);
  const dev = makedev(info.major, info.minor);
  if (udevManagesNodes()) {
    for (let i = 0; i < 10 && !nodeMatches(path, dev); i++) sleepSync(20);
    if (nodeMatches(path, dev)) return;
  }
  try {
    mknod(path, S_IFBLK | 0o660, dev);
    return;
  } catch (err) {
    if (!isErrno(err, 'EEXIST', 'ENOENT')) throw err;
  }
  if (nodeMatches(path, dev)) return;
  fs.mkdirSync(DM_DIR, { recursive: true, mode: 0o755 });
  try {
    fs.unlinkSync(path); // stale node from a previous device with this name
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  mknod(path, S_IFBLK | 0o660, dev);
}

// removeNode deletes /dev/mapper/<name> (a node or udev's symlink) if present.
export function removeNode(name: string): void {
  try {
    fs.unlinkSync(devicePath(name));
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}
