// loop holds the raw loop-device ABI from <linux/loop.h>: ioctl numbers, flag
// bits and the byte layout of struct loop_info64 / struct loop_config. It only
// encodes and decodes buffers; src/sys/loop.ts issues the ioctls.
//
// Layout checked against /usr/include/linux/loop.h (x86_64, no padding: every
// field is naturally aligned): loop_info64 is 232 bytes, loop_config 304.

/** LOOP_* ioctl request numbers (type 'L' = 0x4C, no size encoding). */
export const LOOP_SET_FD = 0x4c00;
export const LOOP_CLR_FD = 0x4c01;
export const LOOP_SET_STATUS64 = 0x4c04;
export const LOOP_GET_STATUS64 = 0x4c05;
export const LOOP_CONFIGURE = 0x4c0a;
export const LOOP_SET_CAPACITY = 0x4c07;
export const LOOP_CTL_GET_FREE = 0x4c82;

/** LO_FLAGS_* bits of loop_info64.lo_flags. */
export const LO_FLAGS_READ_ONLY = 1;
export const LO_FLAGS_AUTOCLEAR = 4;
export const LO_FLAGS_PARTSCAN = 8;
export const LO_FLAGS_DIRECT_IO = 16;

/** LOOP_MAJOR is the block major number of /dev/loopN. */
export const LOOP_MAJOR = 7;

/** LO_NAME_SIZE is the size of lo_file_name (including the NUL). */
export const LO_NAME_SIZE = 64;

/** LOOP_INFO64_SIZE is sizeof(struct loop_info64). */
export const LOOP_INFO64_SIZE = 232;
/** LOOP_CONFIG_SIZE is sizeof(struct loop_config). */
export const LOOP_CONFIG_SIZE = 304;

// Field offsets inside loop_info64.
const OFF = {
  device: 0,
  inode: 8,
  rdevice: 16,
  offset: 24,
  sizelimit: 32,
  number: 40,
  encryptType: 44,
  encryptKeySize: 48,
  flags: 52,
  fileName: 56,
  cryptName: 120,
  encryptKey: 184,
  init: 216,
} as const;

/** LoopInfo64 is the decoded subset of loop_info64 tsblock uses. */
export interface LoopInfo64 {
  device: bigint;
  inode: bigint;
  rdevice: bigint;
  offset: bigint;
  sizelimit: bigint;
  number: number;
  flags: number;
  fileName: string;
}

/** encodeLoopInfo64 writes info into buf at `at` (the rest must already be zero). */
export function encodeLoopInfo64(buf: Buffer, at: number, info: Partial<LoopInfo64>): void {
  buf.writeBigUInt64LE(info.offset ?? 0n, at + OFF.offset);
  buf.writeBigUInt64LE(info.sizelimit ?? 0n, at + OFF.sizelimit);
  buf.writeUInt32LE(info.flags ?? 0, at + OFF.flags);
  if (info.fileName !== undefined) {
    // lo_file_name is informational (losetup shows it); the kernel keeps only
    // 63 bytes. Truncate on a byte boundary and leave the NUL terminator.
    const name = Buffer.from(info.fileName, 'utf8').subarray(0, LO_NAME_SIZE - 1);
    name.copy(buf, at + OFF.fileName);
  }
}

/** decodeLoopInfo64 reads a loop_info64 from buf at `at`. */
export function decodeLoopInfo64(buf: Buffer, at = 0): LoopInfo64 {
  const nameBytes = buf.subarray(at + OFF.fileName, at + OFF.fileName + LO_NAME_SIZE);
  const nul = nameBytes.indexOf(0);
  return {
    device: buf.readBigUInt64LE(at + OFF.device),
    inode: buf.readBigUInt64LE(at + OFF.inode),
    rdevice: buf.readBigUInt64LE(at + OFF.rdevice),
    offset: buf.readBigUInt64LE(at + OFF.offset),
    sizelimit: buf.readBigUInt64LE(at + OFF.sizelimit),
    number: buf.readUInt32LE(at + OFF.number),
    flags: buf.readUInt32LE(at + OFF.flags),
    fileName: nameBytes.subarray(0, nul < 0 ? LO_NAME_SIZE : nul).toString('utf8'),
  };
}

/** encodeLoopConfig builds a struct loop_config for LOOP_CONFIGURE. */
export function encodeLoopConfig(fd: number, blockSize: number, info: Partial<LoopInfo64>): Buffer {
  const buf = Buffer.alloc(LOOP_CONFIG_SIZE);
  buf.writeUInt32LE(fd, 0);
  buf.writeUInt32LE(blockSize, 4);
  encodeLoopInfo64(buf, 8, info);
  return buf;
}
