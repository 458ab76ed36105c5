// xfs: a loop-mounted scratch XFS with reflink=1 for blockfile's FICLONE
// path, made for the run and removed after it (the mount command is fine
// here: this is a harness, not a snapshotter operation path).

import { mkdirSync, rmSync, closeSync, openSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { sh, which } from './util.mjs';

/** makeScratchXfs returns {dir, release} or {error}. */
export function makeScratchXfs(parent, sizeGiB = 16) {
  if (!which('mkfs.xfs')) return { error: 'mkfs.xfs not installed' };
  const img = join(parent, `tsbench-xfs-${process.pid}.img`);
  const dir = join(parent, `tsbench-xfs-${process.pid}`);
  try {
    const fd = openSync(img, 'w');
    ftruncateSync(fd, sizeGiB * 1024 ** 3);
    closeSync(fd);
    sh('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', img]);
    mkdirSync(dir, { recursive: true });
    sh('mount', ['-o', 'loop', img, dir]);
  } catch (err) {
    rmSync(img, { force: true });
    return { error: `scratch XFS: ${err.message.split('\n')[0]}` };
  }
  return {
    dir,
    release() {
      try {
        sh('umount', [dir]);
      } catch (err) {
        console.error(`warning: umount ${dir}: ${err.message.split('\n')[0]}`);
      }
      rmSync(dir, { recursive: true, force: true });
      rmSync(img, { force: true });
    },
  };
}
