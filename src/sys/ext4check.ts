// ext4check verifies an ext4 image's superblock and group descriptors the
// way the kernel does at mount (ext4 metadata_csum: crc32c of the
// superblock, and of every group descriptor seeded with the filesystem's
// checksum seed and the group number), from userspace, without mounting.
// blockfile runs it on a parent image before cloning it (a child of a
// damaged image would inherit the damage and fail, or worse, at a
// container's start) and `tsblock doctor` on every image. It reads the
// first few blocks only: ~20 µs for a 10 GiB image (docs/reliability.md).
//
// Layout (the kernel's struct ext4_super_block / ext4_group_desc):
// superblock at byte 1024: s_blocks_count_lo 0x4, s_first_data_block 0x14,
// s_log_block_size 0x18, s_blocks_per_group 0x20, s_magic 0x38,
// s_feature_incompat 0x60 (64BIT 0x80, META_BG 0x10, CSUM_SEED 0x2000),
// s_feature_ro_compat 0x64 (METADATA_CSUM 0x400), s_uuid 0x68,
// s_desc_size 0xFE, s_first_meta_bg 0x104, s_blocks_count_hi 0x150,
// s_checksum_type 0x175, s_checksum_seed 0x270, s_checksum 0x3FC.
// Group descriptors follow in block s_first_data_block + 1; bg_checksum at 0x1E.

import fs from 'node:fs';

const SB_OFFSET = 1024;
const SB_SIZE = 1024;
const MAGIC = 0xef53;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_CSUM_SEED = 0x2000;
const RO_COMPAT_METADATA_CSUM = 0x400;

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** crc32c continues a CRC-32C (Castagnoli) from `crc` over buf, without the final inversion (the kernel's crc32c()). */
export function crc32c(crc: number, buf: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < buf.length; i++) c = CRC32C_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

function le32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/**
 * ext4MetadataDamage checks the superblock and the group descriptors of the
 * ext4 filesystem in the image open as fd. It returns what is wrong, or
 * undefined when they are sound. Without metadata_csum only the magic
 * number and the geometry are checked.
 */
export function ext4MetadataDamage(fd: number): string | undefined {
  const sb = Buffer.alloc(SB_SIZE);
  if (fs.readSync(fd, sb, 0, SB_SIZE, SB_OFFSET) !== SB_SIZE) return 'superblock: short read (image truncated)';
  const magic = sb.readUInt16LE(0x38);
  if (magic !== MAGIC) return `superblock: bad magic 0x${magic.toString(16)} (not ext4, or overwritten)`;
  const incompat = sb.readUInt32LE(0x60);
  const csum = (sb.readUInt32LE(0x64) & RO_COMPAT_METADATA_CSUM) !== 0;
  if (csum) {
    if (sb[0x175] !== 1) return `superblock: unknown checksum type ${sb[0x175]}`;
    const want = sb.readUInt32LE(0x3fc);
    const got = crc32c(0xffffffff, sb.subarray(0, 0x3fc));
    if (got !== want) return `superblock: checksum 0x${got.toString(16)} does not match the stored 0x${want.toString(16)}`;
  }
  const logBlock = sb.readUInt32LE(0x18);
  const perGroup = sb.readUInt32LE(0x20);
  const is64 = (incompat & INCOMPAT_64BIT) !== 0;
  const blocks = sb.readUInt32LE(0x4) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const firstData = sb.readUInt32LE(0x14);
  const descSize = is64 ? sb.readUInt16LE(0xfe) : 32;
  if (logBlock > 6 || perGroup === 0 || blocks <= firstData || descSize < 32 || descSize > 1024 || (descSize & (descSize - 1)) !== 0) {
    return `superblock: impossible geometry (log block size ${logBlock}, ${perGroup} blocks per group, ${blocks} blocks, descriptor size ${descSize})`;
  }
  if (!csum) return undefined;
  const blockSize = 1024 << logBlock;
  let groups = Math.ceil((blocks - firstData) / perGroup);
  // With meta_bg only the first s_first_meta_bg descriptor blocks follow the superblock.
  if (incompat & INCOMPAT_META_BG) groups = Math.min(groups, sb.readUInt32LE(0x104) * (blockSize / descSize));
  const gdt = Buffer.alloc(groups * descSize);
  if (fs.readSync(fd, gdt, 0, gdt.length, (firstData + 1) * blockSize) !== gdt.length) return 'group descriptors: short read (image truncated)';
  const seed = incompat & INCOMPAT_CSUM_SEED ? sb.readUInt32LE(0x270) : crc32c(0xffffffff, sb.subarray(0x68, 0x78));
  const zero = Buffer.alloc(2);
  for (let g = 0; g < groups; g++) {
    const d = gdt.subarray(g * descSize, (g + 1) * descSize);
    let c = crc32c(seed, le32(g));
    c = crc32c(c, d.subarray(0, 0x1e));
    c = crc32c(c, zero);
    if (descSize > 0x20) c = crc32c(c, d.subarray(0x20));
    const want = d.readUInt16LE(0x1e);
    if ((c & 0xffff) !== want) return `group descriptor ${g}: checksum 0x${(c & 0xffff).toString(16)} does not match the stored 0x${want.toString(16)}`;
  }
  return undefined;
}

/** ext4ImageDamage is ext4MetadataDamage of an image file by path. */
export function ext4ImageDamage(path: string): string | undefined {
  const fd = fs.openSync(path, 'r');
  try {
    return ext4MetadataDamage(fd);
  } finally {
    fs.closeSync(fd);
  }
}
