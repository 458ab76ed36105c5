import { describe, expect, it } from 'vitest';
import { compressionOfMediaType, decompressLayer, detectCompression } from '../../../src/apply/decompress.js';
import { parsePaxRecords, parsePaxTime } from '../../../src/apply/header.js';
import { classifyWhiteout } from '../../../src/apply/whiteout.js';
import { chunked, gzipTar, paxRecords, zstdTar } from '../../fixtures/layers/build.js';

describe('PAX records', () => {
  it('keeps binary values byte-exact', () => {
    const cap = Buffer.from([1, 0, 0, 2, 0xff, 0x80, 0x0a, 0x3d, 0]);
    const recs = parsePaxRecords(paxRecords({ 'SCHILY.xattr.security.capability': cap, path: 'ünï/cøde' }));
    expect(recs.get('SCHILY.xattr.security.capability')).toEqual(cap);
    expect(recs.get('path')?.toString()).toBe('ünï/cøde');
  });
  it('refuses malformed records', () => {
    expect(() => parsePaxRecords(Buffer.from('99 path=x\n'))).toThrow(/bad PAX record length/);
    expect(() => parsePaxRecords(Buffer.from('8 pathx\n'))).toThrow(/without a key/);
    expect(() => parsePaxRecords(Buffer.from('10 path=xy'))).toThrow(/not newline-terminated/);
  });
  it('parses times with nanoseconds, including before the epoch', () => {
    expect(parsePaxTime('1500000000.123456789')).toEqual({ sec: 1500000000n, nsec: 123456789 });
    expect(parsePaxTime('12.5')).toEqual({ sec: 12n, nsec: 500000000 });
    expect(parsePaxTime('7')).toEqual({ sec: 7n, nsec: 0 });
    expect(parsePaxTime('-1.25')).toEqual({ sec: -2n, nsec: 750000000 });
    expect(() => parsePaxTime('abc')).toThrow(/bad PAX time/);
  });
});

describe('whiteouts', () => {
  it('classifies names', () => {
    expect(classifyWhiteout('file')).toEqual({ kind: 'none' });
    expect(classifyWhiteout('.wh.file')).toEqual({ kind: 'delete', target: 'file' });
    expect(classifyWhiteout('.wh..wh..opq')).toEqual({ kind: 'opaque' });
    expect(classifyWhiteout('.wh..wh.plnk')).toEqual({ kind: 'meta' });
    expect(() => classifyWhiteout('.wh.')).toThrow(/names no file/);
  });
});

describe('compression', () => {
  it('detects magic bytes', () => {
    expect(detectCompression(Buffer.from([0x1f, 0x8b, 8]))).toBe('gzip');
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(detectCompression(Buffer.from('BZh91AY'))).toBe('bzip2');
    expect(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0]))).toBe('xz');
    expect(detectCompression(Buffer.from('etc/passwd'))).toBe('none');
    expect(detectCompression(Buffer.alloc(0))).toBe('none');
  });
  it('maps media types and refuses unknown ones', () => {
    expect(compressionOfMediaType('application/vnd.oci.image.layer.v1.tar+zstd')).toBe('zstd');
    expect(compressionOfMediaType('application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe('gzip');
    expect(() => compressionOfMediaType('application/vnd.oci.image.layer.v1.tar+encrypted')).toThrow(/unsupported layer media type/);
  });
  it('round-trips gzip and zstd in small chunks', async () => {
    const data = Buffer.alloc(1 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    for (const blob of [data, gzipTar(data), zstdTar(data)]) {
      const out: Buffer[] = [];
      for await (const c of decompressLayer(chunked(blob, 3))) out.push(c);
      expect(Buffer.concat(out).equals(data)).toBe(true);
    }
  });
  it('refuses xz and reports truncated zstd as malformed', async () => {
    const drain = async (src: AsyncIterable<Buffer>) => {
      for await (const _ of decompressLayer(src)) void _;
    };
    await expect(drain(chunked(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0, 1])))).rejects.toThrow(/unsupported layer compression xz/);
    const z = zstdTar(Buffer.alloc(100_000, 3));
    await expect(drain(chunked(z.subarray(0, z.length - 5)))).rejects.toMatchObject({ code: 'invalid-argument', message: expect.stringMatching(/malformed layer: zstd/) });
  });
});
