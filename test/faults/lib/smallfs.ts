/**
 * smallfs makes a small loop-backed filesystem for the disk-full cases: a
 * sparse image under /var/tmp, formatted ext4 or XFS (reflink=1), mounted
 * with mount(8) (test setup, not a tsblock code path). `fill(leave)` writes
 * a filler file until only `leave` bytes are free, `unfill()` removes it,
 * `release()` unmounts (lazily if busy), detaches and deletes everything.
 */

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TMPBASE } from './rig.js';

export interface SmallFs {
  dir: string;
  kind: 'ext4' | 'xfs';
  free(): number;
  fill(leave: number): number;
  unfill(): void;
  release(): void;
}

export function makeSmallFs(kind: 'ext4' | 'xfs', sizeMiB: number, name: string): SmallFs {
  const base = fs.mkdtempSync(path.join(TMPBASE, `faults-fs-${name}.`));
  const img = path.join(base, 'fs.img');
  const dir = path.join(base, 'mnt');
  fs.mkdirSync(dir);
  fs.writeFileSync(img, '');
  fs.truncateSync(img, sizeMiB * 1024 ** 2);
  if (kind === 'ext4') execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', img]);
  else execFileSync('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', img]);
  execFileSync('mount', ['-o', 'loop', img, dir]);
  const filler = path.join(dir, 'filler');
  const free = () => {
    const st = fs.statfsSync(dir);
    return st.bavail * st.bsize;
  };
  return {
    dir,
    kind,
    free,
    /** fill grows the filler (real blocks) until `leave` bytes are free; returns the filler's size. */
    fill(leave: number): number {
      // fallocate: real blocks at once. Written data would leave XFS's
      // speculative preallocation counted as used, which XFS takes back when
      // it runs low: the filesystem would have more room than it showed.
      for (let round = 0; round < 8 && free() > leave + 1024 ** 2; round++) {
        const have = fs.existsSync(filler) ? fs.statSync(filler).size : 0;
        const more = Math.floor((free() - leave) / 4096) * 4096;
        for (const n of [more, Math.floor(more / 2 / 4096) * 4096, 4096]) {
          try {
            execFileSync('fallocate', ['-l', String(have + n), filler], { stdio: 'ignore' });
            break;
          } catch {
            // less, then
          }
        }
        execFileSync('sync', ['-f', dir]);
      }
      if (leave === 0) {
        // The last blocks: append until ENOSPC.
        const fd = fs.openSync(filler, 'a');
        try {
          for (;;) fs.writeSync(fd, Buffer.alloc(4096, 0x5a));
        } catch {
          // full
        } finally {
          fs.closeSync(fd);
        }
      }
      return fs.statSync(filler).size;
    },
    unfill() {
      fs.rmSync(filler, { force: true });
      execFileSync('sync', ['-f', dir]);
    },
    release() {
      try {
        execFileSync('umount', ['-d', dir], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', '-d', dir], { stdio: 'ignore' });
      }
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}
