// temp-mounts owns the directory the daemon makes its own short-lived mount
// points in (the Diff service's Apply and Diff mount a snapshot there while
// they read or write it). A daemon killed in the middle of one leaves that
// mount behind, and with it the snapshot's loop device (blockfile) or an open
// dm device (devmapper): containerd would then find the snapshot busy and the
// space never comes back. Nothing but the daemon mounts under this
// directory, so at start-up everything mounted there is a leftover and is
// unmounted (the loop devices are autoclear and go with the mount).

import fs from 'node:fs';
import path from 'node:path';
import { mountsUnder, unmount } from '../sys/mount.js';

/** TEMP_MOUNT_DIR is the daemon's mount-point directory under its root. */
export const TEMP_MOUNT_DIR = 'mnt';

/**
 * sweepTempMounts makes <root>/mnt (0700) and unmounts and removes whatever a
 * previous daemon left in it; it returns the mount points it released.
 */
export function sweepTempMounts(root: string): { dir: string; released: string[] } {
  const dir = path.join(root, TEMP_MOUNT_DIR);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Snapshots are mounted here while they are written: nobody else may look in.
  fs.chmodSync(dir, 0o700);
  const released: string[] = [];
  for (const mp of mountsUnder(dir)) {
    if (mp === path.resolve(dir)) continue;
    unmount(mp, { ignoreNotMounted: true });
    released.push(mp);
  }
  for (const name of fs.readdirSync(dir)) {
    // Only empty mount points are removed: rmdir never deletes data.
    try {
      fs.rmdirSync(path.join(dir, name));
    } catch {
      // Not empty or not a directory: not ours to delete.
    }
  }
  return { dir, released };
}
