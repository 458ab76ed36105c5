// Pure encode/decode checks of the device-mapper ioctl ABI (ffi/dm.ts); the
// numbers come from <linux/dm-ioctl.h> and <asm-generic/ioctl.h>.
import { describe, expect, it } from 'vitest';
import {
  DM_IOCTL_SIZE,
  DmCmd,
  DmFlag,
  decodeDataString,
  decodeDmHeader,
  decodeKernelDev,
  decodeNameList,
  decodeTargetStatus,
  dmRequest,
  encodeDmIoctl,
  encodeKernelDev,
  encodeTargetMsg,
  encodeTargets,
} from '../../../ffi/dm.js';

describe('dm ioctl numbers', () => {
  it('encode _IOWR(0xfd, nr, struct dm_ioctl) with sizeof 312', () => {
    expect(DM_IOCTL_SIZE).toBe(312);
    expect(dmRequest(DmCmd.VERSION)).toBe(0xc138fd00);
    expect(dmRequest(DmCmd.DEV_CREATE)).toBe(0xc138fd03);
    expect(dmRequest(DmCmd.TARGET_MSG)).toBe(0xc138fd0e);
  });

  it('has the header flag bits', () => {
    expect(DmFlag.READONLY).toBe(1);
    expect(DmFlag.SUSPEND).toBe(2);
    expect(DmFlag.PERSISTENT_DEV).toBe(8);
    expect(DmFlag.STATUS_TABLE).toBe(16);
    expect(DmFlag.BUFFER_FULL).toBe(256);
    expect(DmFlag.SKIP_LOCKFS).toBe(1024);
    expect(DmFlag.NOFLUSH).toBe(2048);
    expect(DmFlag.UEVENT_GENERATED).toBe(8192);
    expect(DmFlag.DEFERRED_REMOVE).toBe(1 << 17);
  });
});

describe('dm_ioctl header', () => {
  it('round-trips the fields at their offsets', () => {
    const buf = encodeDmIoctl({ name: 'pool-snap-7', uuid: 'tsblock-x', flags: DmFlag.READONLY | DmFlag.SUSPEND, targetCount: 2, dev: 0x1234n }, Buffer.alloc(0), 4096);
    expect(buf.length).toBe(4096);
    expect(buf.readUInt32LE(0)).toBe(4);
    expect(buf.readUInt32LE(12)).toBe(4096); // data_size
    expect(buf.readUInt32LE(16)).toBe(312); // data_start
    expect(buf.readUInt32LE(28)).toBe(3); // flags
    expect(buf.readBigUInt64LE(40)).toBe(0x1234n);
    expect(buf.toString('utf8', 48, 59)).toBe('pool-snap-7');
    expect(buf.toString('utf8', 176, 185)).toBe('tsblock-x');
    const h = decodeDmHeader(buf);
    expect(h).toMatchObject({ dataSize: 4096, dataStart: 312, targetCount: 2, flags: 3, dev: 0x1234n, name: 'pool-snap-7', uuid: 'tsblock-x' });
  });

  it('sizes the buffer to hold the payload, 8-aligned', () => {
    const buf = encodeDmIoctl({ name: 'a' }, Buffer.from('abc'));
    expect(buf.length).toBe(320);
    expect(buf.readUInt32LE(12)).toBe(320);
    expect(buf.toString('utf8', 312, 315)).toBe('abc');
  });

  it('rejects names that do not fit', () => {
    expect(() => encodeDmIoctl({ name: 'x'.repeat(128) })).toThrow(RangeError);
    expect(() => encodeDmIoctl({ name: 'x'.repeat(127) })).not.toThrow();
  });
});

describe('dm_target_spec', () => {
  it('lays out TABLE_LOAD records with relative next offsets', () => {
    const b = encodeTargets([
      { start: 0, length: 2048, type: 'thin-pool', params: '/dev/loop0 /dev/loop1 128 1024 1 skip_block_zeroing' },
      { start: 2048, length: 8, type: 'zero', params: '' },
    ]);
    const first = 40 + 51 + 1; // spec + params + NUL = 92 → 96
    expect(b.readUInt32LE(20)).toBe(96);
    expect(Number(b.readBigUInt64LE(96))).toBe(2048);
    expect(b.readUInt32LE(96 + 20)).toBe(48);
    expect(b.length).toBe(96 + 48);
    expect(b.toString('utf8', 24, 33)).toBe('thin-pool');
    expect(b.toString('utf8', 40, 40 + first - 41)).toBe('/dev/loop0 /dev/loop1 128 1024 1 skip_block_zeroing');
  });

  it('decodes TABLE_STATUS records whose next counts from the first spec', () => {
    // Build what the kernel writes: two specs, next = absolute offset from data_start.
    const rec = (start: number, len: number, type: string, params: string, next: number): Buffer => {
      const r = Buffer.alloc(64);
      r.writeBigUInt64LE(BigInt(start), 0);
      r.writeBigUInt64LE(BigInt(len), 8);
      r.writeUInt32LE(next, 20);
      r.write(type, 24);
      r.write(params, 40);
      return r;
    };
    const payload = Buffer.concat([rec(0, 100, 'thin', '12 11', 64), rec(100, 50, 'linear', '7:0 0', 128)]);
    const buf = encodeDmIoctl({ targetCount: 2 }, payload);
    const h = decodeDmHeader(buf);
    expect(decodeTargetStatus(buf, h)).toEqual([
      { start: 0, length: 100, status: 0, type: 'thin', params: '12 11' },
      { start: 100, length: 50, status: 0, type: 'linear', params: '7:0 0' },
    ]);
  });
});

describe('dm_name_list', () => {
  it('reads a chain and the empty list', () => {
    const e1 = Buffer.alloc(24);
    e1.writeBigUInt64LE(encodeKernelDev({ major: 253, minor: 0 }), 0);
    e1.writeUInt32LE(24, 8);
    e1.write('pool', 12);
    const e2 = Buffer.alloc(32);
    e2.writeBigUInt64LE(encodeKernelDev({ major: 253, minor: 1 }), 0);
    e2.write('pool-snap-1', 12);
    const buf = encodeDmIoctl({}, Buffer.concat([e1, e2]));
    const list = decodeNameList(buf, decodeDmHeader(buf));
    expect(list.map((e) => e.name)).toEqual(['pool', 'pool-snap-1']);
    expect(decodeKernelDev(list[1]!.dev)).toEqual({ major: 253, minor: 1 });
    const empty = encodeDmIoctl({}, Buffer.alloc(16));
    expect(decodeNameList(empty, decodeDmHeader(empty))).toEqual([]);
  });
});

describe('dm_target_msg and dev numbers', () => {
  it('encodes a message after its sector', () => {
    const m = encodeTargetMsg(0, 'create_thin 5');
    expect(m.readBigUInt64LE(0)).toBe(0n);
    expect(m.toString('utf8', 8, 21)).toBe('create_thin 5');
    expect(m[21]).toBe(0);
    expect(m.length % 8).toBe(0);
  });

  it('reads a DATA_OUT string', () => {
    const buf = encodeDmIoctl({}, Buffer.from('ok\0junk'));
    expect(decodeDataString(buf, decodeDmHeader(buf))).toBe('ok');
  });

  it('splits huge_encode_dev values', () => {
    expect(decodeKernelDev(0xfd00n)).toEqual({ major: 253, minor: 0 });
    expect(decodeKernelDev(encodeKernelDev({ major: 253, minor: 300 }))).toEqual({ major: 253, minor: 300 });
    expect(decodeKernelDev(encodeKernelDev({ major: 7, minor: 1048575 }))).toEqual({ major: 7, minor: 1048575 });
  });
});
