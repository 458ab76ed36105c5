// fsinfo measures space: what a file really occupies (st_blocks), what a
// filesystem has left (statfs), and how full an ext4 image is from the
// inside (its superblock), without mounting it.

import fs from 'node:fs';
import { FS_MAGIC } from '../../ffi/fs.js';

/** allocatedBytes is the space a file occupies on disk (st_blocks × 512), not its apparent size. */
export function allocatedBytes(path: string): number {
  return fs.statSync(path).blocks * 512;
}

/** FsInfo describes the filesystem holding a directory. */
export interface FsInfo {
  /** type is ext4/xfs/btrfs/tmpfs/… or "0x<magic>" when unknown. */
  type: string;
  magic: number;
  blockSize: number;
  totalBytes: number;
  /** freeBytes is what an unprivileged writer may use (f_bavail). */
  freeBytes: number;
  totalInodes: number;
  freeInodes: number;
}

/** fsInfo runs statfs on dir. */
export function fsInfo(dir: string): FsInfo {
  const s = fs.statfsSync(dir);
  const magic = Number(s.type) >>> 0;
  return {
    type: FS_MAGIC.get(magic) ?? `0x${magic.toString(16)}`,
    magic,
    blockSize: Number(s.bsize),
    totalBytes: Number(s.blocks) * Number(s.bsize),
    freeBytes: Number(s.bavail) * Number(s.bsize),
    totalInodes: Number(s.files),
    freeInodes: Number(s.ffree),
  };
}

/** fsFreeBytes is fsInfo(dir).freeBytes. */
export function fsFreeBytes(dir: string): number {
  return fsInfo(dir).freeBytes;
}

/** EXT4_SUPERBLOCK_OFFSET is where the primary superblock starts. */
export const EXT4_SUPERBLOCK_OFFSET = 1024;
/** EXT4_SUPERBLOCK_SIZE is the superblock's size on disk. */
export const EXT4_SUPERBLOCK_SIZE = 1024;
const EXT4_MAGIC = 0xef53;
const INCOMPAT_64BIT = 0x80;

/** Ext4Superblock is the decoded subset of struct ext4_super_block tsblock needs. */
export interface Ext4Superblock {
  inodesCount: number;
  freeInodes: number;
  blocksCount: number;
  freeBlocks: number;
  blockSize: number;
  inodesUsed: number;
  blocksUsed: number;
  /** groups is the number of block groups (s_first_data_block 0x14, s_blocks_per_group 0x20). */
  groups: number;
}

/**
 * decodeExt4Superblock decodes the 1024-byte superblock (offsets from the
 * kernel's ext4 on-disk layout: s_inodes_count 0x0, s_blocks_count_lo 0x4,
 * s_free_blocks_count_lo 0xC, s_free_inodes_count 0x10, s_log_block_size
 * 0x18, s_magic 0x38, s_feature_incompat 0x60, s_blocks_count_hi 0x150,
 * s_free_blocks_count_hi 0x158; the _hi halves only count with INCOMPAT_64BIT).
 */
export function decodeExt4Superblock(buf: Buffer): Ext4Superblock {
  if (buf.length < EXT4_SUPERBLOCK_SIZE) throw new Error(`ext4 superblock: need ${EXT4_SUPERBLOCK_SIZE} bytes, got ${buf.length}`);
  const magic = buf.readUInt16LE(0x38);
  if (magic !== EXT4_MAGIC) throw new Error(`not an ext2/3/4 superblock (magic 0x${magic.toString(16)})`);
  const is64 = (buf.readUInt32LE(0x60) & INCOMPAT_64BIT) !== 0;
  const hi = (off: number): number => (is64 ? buf.readUInt32LE(off) * 2 ** 32 : 0);
  const inodesCount = buf.readUInt32LE(0x0);
  const freeInodes = buf.readUInt32LE(0x10);
  const blocksCount = buf.readUInt32LE(0x4) + hi(0x150);
  const freeBlocks = buf.readUInt32LE(0xc) + hi(0x158);
  const blockSize = 1024 * 2 ** buf.readUInt32LE(0x18);
  return {
    inodesCount,
    freeInodes,
    blocksCount,
    freeBlocks,
    blockSize,
    inodesUsed: inodesCount - freeInodes,
    blocksUsed: blocksCount - freeBlocks,
    groups: Math.ceil((blocksCount - buf.readUInt32LE(0x14)) / buf.readUInt32LE(0x20)),
  };
}

/** Ext4Usage is how much of an ext4 filesystem is in use. */
export interface Ext4Usage {
  inodesUsed: number;
  blocksUsed: number;
  blockSize: number;
}

/**
 * readExt4Usage reads the superblock of an ext4 image file or device. The
 * kernel writes the free counts back only at sync/commit/unmount, so on a
 * mounted filesystem the numbers lag; they are exact once it is unmounted.
 */
export function readExt4Usage(imageFileOrDevice: string): Ext4Usage {
  const fd = fs.openSync(imageFileOrDevice, fs.constants.O_RDONLY);
  try {
    return readExt4UsageFd(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** readExt4Groups reads the number of block groups from an ext4 image file's or device's superblock. */
export function readExt4Groups(imageFileOrDevice: string): number {
  const fd = fs.openSync(imageFileOrDevice, fs.constants.O_RDONLY);
  try {
    const buf = Buffer.alloc(EXT4_SUPERBLOCK_SIZE);
    const n = fs.readSync(fd, buf, 0, EXT4_SUPERBLOCK_SIZE, EXT4_SUPERBLOCK_OFFSET);
    return decodeExt4Superblock(buf.subarray(0, n)).groups;
  } finally {
    fs.closeSync(fd);
  }
}

/** readExt4UsageFd is readExt4Usage on an open descriptor (a caller that already holds one saves an open). */
export function readExt4UsageFd(fd: number): Ext4Usage {
  const buf = Buffer.alloc(EXT4_SUPERBLOCK_SIZE);
  const n = fs.readSync(fd, buf, 0, EXT4_SUPERBLOCK_SIZE, EXT4_SUPERBLOCK_OFFSET);
  const sb = decodeExt4Superblock(buf.subarray(0, n));
  return { inodesUsed: sb.inodesUsed, blocksUsed: sb.blocksUsed, blockSize: sb.blockSize };
}
