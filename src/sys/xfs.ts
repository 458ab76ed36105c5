// xfs: the verbs tsblock needs to keep an XFS filesystem of its own (the
// blockfile store on hosts whose root cannot reflink): format one with
// reflink, grow it online, and give its free space back to the file under it.
// mkfs.xfs and xfs_growfs are real tools (execa, off the hot path: once at
// first start and at each growth step); FITRIM is an ioctl.

import fs from 'node:fs';
import { ioctlBufferAsync, syncfsAsync } from '../../ffi/libc.js';
import { FITRIM, FSTRIM_RANGE_SIZE } from '../../ffi/fs.js';
import { runTool } from './exec.js';

/** MakeXfsOptions tune makeXfs. */
export interface MakeXfsOptions {
  /** sectorSize is the filesystem's sector size (4096 lets a direct-I/O loop device carry it on any host). */
  sectorSize?: number;
  label?: string;
}

/**
 * makeXfs formats target (an existing, sized file or block device) as XFS with
 * reflink=1 (shared extents, what FICLONE needs). -K: no discard pass, which on
 * a sparse file would only punch holes that are already there.
 */
export async function makeXfs(target: string, opts: MakeXfsOptions = {}): Promise<void> {
  const args = ['-q', '-K', '-m', 'reflink=1,crc=1', '-s', `size=${opts.sectorSize ?? 4096}`];
  if (opts.label !== undefined) args.push('-L', opts.label);
  args.push(target);
  await runTool('mkfs.xfs', args, { timeoutMs: 120_000 });
}

/** growXfs grows the XFS mounted at mountpoint to the size of its device (xfs_growfs -d). */
export async function growXfs(mountpoint: string): Promise<void> {
  await runTool('xfs_growfs', ['-d', mountpoint], { timeoutMs: 120_000 });
}

/**
 * trimFilesystem discards the free space of the filesystem mounted at
 * mountpoint (FITRIM over the whole range). On a loop device over a sparse
 * file the discard punches holes, so blocks freed inside go back to the host.
 * Returns the bytes the kernel reports trimmed.
 */
export async function trimFilesystem(mountpoint: string, minLength = 0): Promise<number> {
  const range = Buffer.alloc(FSTRIM_RANGE_SIZE);
  range.writeBigUInt64LE(0n, 0);
  range.writeBigUInt64LE(0xffffffffffffffffn, 8);
  range.writeBigUInt64LE(BigInt(minLength), 16);
  const fd = fs.openSync(mountpoint, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    // XFS frees an unlinked file's blocks in the background (inodegc);
    // syncfs flushes that work, so the blocks are free when FITRIM looks.
    await syncfsAsync(fd, `syncfs ${mountpoint}`);
    await ioctlBufferAsync(fd, FITRIM, range, `FITRIM ${mountpoint}`);
  } finally {
    fs.closeSync(fd);
  }
  // The kernel writes the trimmed length back into range.len.
  return Number(range.readBigUInt64LE(8));
}
