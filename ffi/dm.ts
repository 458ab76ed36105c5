// dm holds the raw device-mapper ioctl ABI from <linux/dm-ioctl.h> (interface
// version 4): request numbers, flag bits and the byte layouts of struct
// dm_ioctl, dm_target_spec, dm_name_list and dm_target_msg. It only encodes
// and decodes Buffers; src/sys/dm.ts opens /dev/mapper/control and issues the
// ioctls.
//
// Layout (x86_64 and every other Linux ABI: all fields naturally aligned):
//   dm_ioctl:       u32 version[3] @0, data_size @12, data_start @16,
//                   target_count @20, s32 open_count @24, flags @28,
//                   event_nr @32, padding @36, u64 dev @40, name[128] @48,
//                   uuid[129] @176, data[7] @305 → sizeof 312.
//   dm_target_spec: u64 sector_start @0, u64 length @8, s32 status @16,
//                   u32 next @20, char target_type[16] @24 → sizeof 40,
//                   parameter string right after.
//   dm_name_list:   u64 dev @0, u32 next @8, char name[] @12.
//   dm_target_msg:  u64 sector @0, char message[] @8.

/** DM_IOCTL_SIZE is sizeof(struct dm_ioctl). */
export const DM_IOCTL_SIZE = 312;
/** DM_TARGET_SPEC_SIZE is sizeof(struct dm_target_spec). */
export const DM_TARGET_SPEC_SIZE = 40;
/** DM_NAME_LEN / DM_UUID_LEN / DM_MAX_TYPE_NAME are the fixed string sizes (with NUL). */
export const DM_NAME_LEN = 128;
export const DM_UUID_LEN = 129;
export const DM_MAX_TYPE_NAME = 16;

/** DM_VERSION_* is the interface version tsblock speaks (4.x; minor 0 asks for nothing newer). */
export const DM_VERSION_MAJOR = 4;
export const DM_VERSION_MINOR = 0;
export const DM_VERSION_PATCHLEVEL = 0;

/** DmCmd numbers the DM_* ioctl commands (the nr of _IOWR(0xfd, nr, struct dm_ioctl)). */
export const DmCmd = {
  VERSION: 0,
  REMOVE_ALL: 1,
  LIST_DEVICES: 2,
  DEV_CREATE: 3,
  DEV_REMOVE: 4,
  DEV_RENAME: 5,
  DEV_SUSPEND: 6,
  DEV_STATUS: 7,
  DEV_WAIT: 8,
  TABLE_LOAD: 9,
  TABLE_CLEAR: 10,
  TABLE_DEPS: 11,
  TABLE_STATUS: 12,
  LIST_VERSIONS: 13,
  TARGET_MSG: 14,
} as const;
export type DmCmdNr = (typeof DmCmd)[keyof typeof DmCmd];

const DM_IOCTL_TYPE = 0xfd;
const IOC_READ_WRITE = 3;

/** dmRequest is _IOWR(0xfd, nr, struct dm_ioctl): dir<<30 | size<<16 | type<<8 | nr. */
export function dmRequest(nr: number): number {
  // >>> 0 keeps the value an unsigned 32-bit number (the top bit is set).
  return ((IOC_READ_WRITE << 30) | (DM_IOCTL_SIZE << 16) | (DM_IOCTL_TYPE << 8) | nr) >>> 0;
}

/** DmFlag holds the dm_ioctl.flags bits tsblock uses. */
export const DmFlag = {
  READONLY: 1 << 0,
  SUSPEND: 1 << 1,
  PERSISTENT_DEV: 1 << 3,
  STATUS_TABLE: 1 << 4,
  ACTIVE_PRESENT: 1 << 5,
  INACTIVE_PRESENT: 1 << 6,
  BUFFER_FULL: 1 << 8,
  SKIP_LOCKFS: 1 << 10,
  NOFLUSH: 1 << 11,
  UEVENT_GENERATED: 1 << 13,
  DATA_OUT: 1 << 16,
  DEFERRED_REMOVE: 1 << 17,
} as const;

const OFF = {
  version: 0,
  dataSize: 12,
  dataStart: 16,
  targetCount: 20,
  openCount: 24,
  flags: 28,
  eventNr: 32,
  dev: 40,
  name: 48,
  uuid: 176,
} as const;

/** DmHeader is the decoded dm_ioctl. */
export interface DmHeader {
  version: [number, number, number];
  dataSize: number;
  dataStart: number;
  targetCount: number;
  openCount: number;
  flags: number;
  eventNr: number;
  dev: bigint;
  name: string;
  uuid: string;
}

/** DmRequestFields are what a caller sets in a request header. */
export interface DmRequestFields {
  name?: string;
  uuid?: string;
  flags?: number;
  targetCount?: number;
  eventNr?: number;
  dev?: bigint;
}

/** align8 rounds n up to a multiple of 8 (dm payload records are 8-byte aligned). */
export function align8(n: number): number {
  return (n + 7) & ~7;
}

function writeCString(buf: Buffer, offset: number, size: number, value: string, what: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length >= size) throw new RangeError(`dm ${what} ${JSON.stringify(value)} is too long (max ${size - 1} bytes)`);
  if (bytes.includes(0)) throw new RangeError(`dm ${what} ${JSON.stringify(value)} contains a NUL byte`);
  bytes.copy(buf, offset);
}

function readCString(buf: Buffer, offset: number, max: number): string {
  const end = Math.min(offset + max, buf.length);
  let i = offset;
  while (i < end && buf[i] !== 0) i++;
  return buf.toString('utf8', offset, i);
}

/**
 * encodeDmIoctl builds one request buffer: the header, `payload` at
 * data_start, and zeroed room up to `bufferSize` for the kernel's answer.
 */
export function encodeDmIoctl(fields: DmRequestFields, payload: Buffer = Buffer.alloc(0), bufferSize = 0): Buffer {
  const size = Math.max(DM_IOCTL_SIZE + align8(payload.length), align8(bufferSize));
  const buf = Buffer.alloc(size);
  buf.writeUInt32LE(DM_VERSION_MAJOR, OFF.version);
  buf.writeUInt32LE(DM_VERSION_MINOR, OFF.version + 4);
  buf.writeUInt32LE(DM_VERSION_PATCHLEVEL, OFF.version + 8);
  buf.writeUInt32LE(size, OFF.dataSize);
  buf.writeUInt32LE(DM_IOCTL_SIZE, OFF.dataStart);
  buf.writeUInt32LE(fields.targetCount ?? 0, OFF.targetCount);
  buf.writeUInt32LE((fields.flags ?? 0) >>> 0, OFF.flags);
  buf.writeUInt32LE(fields.eventNr ?? 0, OFF.eventNr);
  buf.writeBigUInt64LE(fields.dev ?? 0n, OFF.dev);
  if (fields.name !== undefined) writeCString(buf, OFF.name, DM_NAME_LEN, fields.name, 'name');
  if (fields.uuid !== undefined) writeCString(buf, OFF.uuid, DM_UUID_LEN, fields.uuid, 'uuid');
  payload.copy(buf, DM_IOCTL_SIZE);
  return buf;
}

/** decodeDmHeader reads the dm_ioctl header of a (kernel-filled) buffer. */
export function decodeDmHeader(buf: Buffer): DmHeader {
  if (buf.length < DM_IOCTL_SIZE) throw new RangeError(`dm_ioctl buffer is ${buf.length} bytes, need ${DM_IOCTL_SIZE}`);
  return {
    version: [buf.readUInt32LE(0), buf.readUInt32LE(4), buf.readUInt32LE(8)],
    dataSize: buf.readUInt32LE(OFF.dataSize),
    dataStart: buf.readUInt32LE(OFF.dataStart),
    targetCount: buf.readUInt32LE(OFF.targetCount),
    openCount: buf.readInt32LE(OFF.openCount),
    flags: buf.readUInt32LE(OFF.flags),
    eventNr: buf.readUInt32LE(OFF.eventNr),
    dev: buf.readBigUInt64LE(OFF.dev),
    name: readCString(buf, OFF.name, DM_NAME_LEN),
    uuid: readCString(buf, OFF.uuid, DM_UUID_LEN),
  };
}

/** DmTarget is one table line: `start length type params` (sectors of 512 bytes). */
export interface DmTarget {
  start: number;
  length: number;
  type: string;
  params: string;
}

/** DmTargetStatus is a target as TABLE_STATUS reports it (params = status or table line). */
export interface DmTargetStatus extends DmTarget {
  status: number;
}

/**
 * encodeTargets lays out dm_target_spec records for TABLE_LOAD: each spec is
 * followed by its NUL-terminated params, padded to 8 bytes; `next` is the
 * distance from this spec to the next one.
 */
export function encodeTargets(targets: readonly DmTarget[]): Buffer {
  const parts: Buffer[] = [];
  for (const t of targets) {
    const params = Buffer.from(t.params, 'utf8');
    if (params.includes(0)) throw new RangeError(`dm target params contain a NUL byte: ${JSON.stringify(t.params)}`);
    const recLen = align8(DM_TARGET_SPEC_SIZE + params.length + 1);
    const rec = Buffer.alloc(recLen);
    rec.writeBigUInt64LE(BigInt(t.start), 0);
    rec.writeBigUInt64LE(BigInt(t.length), 8);
    rec.writeInt32LE(0, 16);
    rec.writeUInt32LE(recLen, 20);
    writeCString(rec, 24, DM_MAX_TYPE_NAME, t.type, 'target type');
    params.copy(rec, DM_TARGET_SPEC_SIZE);
    parts.push(rec);
  }
  return Buffer.concat(parts);
}

/**
 * decodeTargetStatus reads `count` dm_target_spec records that TABLE_STATUS
 * wrote at data_start; there `next` counts from the first spec, not the
 * current one.
 */
export function decodeTargetStatus(buf: Buffer, header: DmHeader): DmTargetStatus[] {
  const base = header.dataStart;
  const out: DmTargetStatus[] = [];
  let off = base;
  for (let i = 0; i < header.targetCount; i++) {
    if (off + DM_TARGET_SPEC_SIZE > buf.length) throw new RangeError('dm_target_spec runs past the buffer');
    const next = buf.readUInt32LE(off + 20);
    out.push({
      start: Number(buf.readBigUInt64LE(off)),
      length: Number(buf.readBigUInt64LE(off + 8)),
      status: buf.readInt32LE(off + 16),
      type: readCString(buf, off + 24, DM_MAX_TYPE_NAME),
      params: readCString(buf, off + DM_TARGET_SPEC_SIZE, buf.length - off - DM_TARGET_SPEC_SIZE),
    });
    off = base + next;
  }
  return out;
}

/** DmNameEntry is one LIST_DEVICES record. */
export interface DmNameEntry {
  name: string;
  dev: bigint;
}

/** decodeNameList reads LIST_DEVICES' dm_name_list chain (dev 0 first = no devices). */
export function decodeNameList(buf: Buffer, header: DmHeader): DmNameEntry[] {
  const out: DmNameEntry[] = [];
  let off = header.dataStart;
  if (header.dataSize <= header.dataStart) return out;
  for (;;) {
    if (off + 12 > buf.length) throw new RangeError('dm_name_list runs past the buffer');
    const dev = buf.readBigUInt64LE(off);
    const next = buf.readUInt32LE(off + 8);
    if (dev === 0n && next === 0 && out.length === 0) return out;
    out.push({ dev, name: readCString(buf, off + 12, buf.length - off - 12) });
    if (next === 0) return out;
    off += next;
  }
}

/** encodeTargetMsg builds dm_target_msg: the sector, then the NUL-terminated message. */
export function encodeTargetMsg(sector: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8');
  if (text.includes(0)) throw new RangeError('dm message contains a NUL byte');
  const buf = Buffer.alloc(align8(8 + text.length + 1));
  buf.writeBigUInt64LE(BigInt(sector), 0);
  text.copy(buf, 8);
  return buf;
}

/** decodeDataString reads the NUL-terminated string the kernel wrote at data_start (messages with DATA_OUT). */
export function decodeDataString(buf: Buffer, header: DmHeader): string {
  if (header.dataSize <= header.dataStart) return '';
  return readCString(buf, header.dataStart, Math.min(header.dataSize, buf.length) - header.dataStart);
}

/** DevNumber is a block device's major and minor. */
export interface DevNumber {
  major: number;
  minor: number;
}

/**
 * decodeKernelDev splits dm_ioctl.dev, which the kernel fills with
 * huge_encode_dev(): minor low byte in bits 0-7, major in bits 8-19, the
 * rest of the minor from bit 20 up.
 */
export function decodeKernelDev(dev: bigint): DevNumber {
  const d = Number(dev & 0xffffffffn);
  return { major: (d >>> 8) & 0xfff, minor: (d & 0xff) | ((d >>> 12) & 0xfff00) };
}

/** encodeKernelDev is decodeKernelDev's inverse (tests, PERSISTENT_DEV requests). */
export function encodeKernelDev(n: DevNumber): bigint {
  return BigInt(((n.minor & 0xff) | ((n.major & 0xfff) << 8) | ((n.minor & ~0xff) << 12)) >>> 0);
}
