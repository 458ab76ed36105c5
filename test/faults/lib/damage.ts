/**
 * damage flips bytes in an ext4 image or thin device for the corruption
 * cases: `where(path, what)` is the offset of one byte in its superblock,
 * group 0's descriptor or the root directory's inode, `flip(path, at)`
 * flips it (and fsyncs), `oopsed()` reads the kernel's oops taint flag.
 */

import fs from 'node:fs';

/** where returns the byte offset to flip in an ext4 image for each kind of damage. */
export function where(image: string, what: 'superblock' | 'group descriptor' | 'inode table'): number {
  const fd = fs.openSync(image, 'r');
  try {
    const sb = Buffer.alloc(1024);
    fs.readSync(fd, sb, 0, 1024, 1024);
    const bs = 1024 << sb.readUInt32LE(0x18);
    const gdt = (sb.readUInt32LE(0x14) + 1) * bs;
    if (what === 'superblock') return 1024 + 0x78; // s_volume_name[0]: covered by the checksum, harmless otherwise
    if (what === 'group descriptor') return gdt + 0x0c; // group 0's bg_free_blocks_count_lo
    const d = Buffer.alloc(64);
    fs.readSync(fd, d, 0, 64, gdt);
    const is64 = (sb.readUInt32LE(0x60) & 0x80) !== 0 && sb.readUInt16LE(0xfe) >= 64;
    const table = d.readUInt32LE(0x08) + (is64 ? d.readUInt32LE(0x28) * 2 ** 32 : 0);
    return table * bs + sb.readUInt16LE(0x58) + 0x10; // inode 2 (the root directory): i_mtime
  } finally {
    fs.closeSync(fd);
  }
}

export function flip(image: string, at: number): void {
  const fd = fs.openSync(image, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0]! ^= 0x5a;
    fs.writeSync(fd, b, 0, 1, at);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** oopsed tells whether the kernel taint flag D (an oops or BUG happened) is set. */
export function oopsed(): boolean {
  return (Number(fs.readFileSync('/proc/sys/kernel/tainted', 'utf8').trim()) & 128) !== 0;
}
