// fs holds raw filesystem/block ioctl numbers from <linux/fs.h> and the one
// libc call Node's fs module lacks here: mknod(2) (to create a missing
// /dev/loopN node). Only src/sys imports it.

import { DataType, big, i32, str, syscall } from './call.js';

/** FICLONE is _IOW(0x94, 9, int): share all extents of the source fd (reflink). */
export const FICLONE = 0x40049409;
/** BLKGETSIZE64 is _IOR(0x12, 114, size_t): a block device's size in bytes (u64 out). */
export const BLKGETSIZE64 = 0x80081272;
/** BLKDISCARD is _IO(0x12, 119): discard a byte range {u64 start, u64 len}. */
export const BLKDISCARD = 0x1277;

/** FITRIM is _IOWR('X', 121, struct fstrim_range {u64 start, len, minlen}): discard a filesystem's free space. */
export const FITRIM = 0xc0185879;
/** FSTRIM_RANGE_SIZE is sizeof(struct fstrim_range). */
export const FSTRIM_RANGE_SIZE = 24;

/** S_IFBLK is the block-device file type bit of st_mode. */
export const S_IFBLK = 0o060000;

/** FS_MAGIC maps statfs f_type values to filesystem names (linux/magic.h). */
export const FS_MAGIC: ReadonlyMap<number, string> = new Map([
  [0xef53, 'ext4'], // ext2/3/4 share the magic
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x01021994, 'tmpfs'],
  [0x794c7630, 'overlay'],
  [0x6969, 'nfs'],
  [0x2fc12fc1, 'zfs'],
  [0xf2f52010, 'f2fs'],
  [0x73717368, 'squashfs'],
  [0x65735546, 'fuse'],
  [0x858458f6, 'ramfs'],
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
]);

/** makedev encodes a dev_t the way glibc's gnu_dev_makedev does. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/** mknod is mknod(2): mode includes the file type bits (S_IFBLK). */
export function mknod(path: string, mode: number, dev: bigint): void {
  syscall('mknod', DataType.I32, [str(path), i32(mode), big(dev)], path);
}
