import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeExt4Superblock, EXT4_SUPERBLOCK_OFFSET, readExt4Usage } from '../../../src/sys/fsinfo.js';
import { makeExt4, runTool } from '../../../src/sys/exec.js';
import { decodeLoopInfo64, encodeLoopConfig, LOOP_CONFIG_SIZE } from '../../../ffi/loop.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-sb-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// dumpe2fsField reads one "Name:   value" line of `dumpe2fs -h`.
function field(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
  if (!m) throw new Error(`dumpe2fs has no ${name}`);
  return Number(m[1]);
}

describe('decodeExt4Superblock', () => {
  it('agrees with dumpe2fs on a real image', async () => {
    const img = path.join(dir, 'sb.img');
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 64 * 1024 ** 2);
    await makeExt4(img, { noLostFound: true });
    const buf = Buffer.alloc(1024);
    const fd = fs.openSync(img, 'r');
    fs.readSync(fd, buf, 0, 1024, EXT4_SUPERBLOCK_OFFSET);
    fs.closeSync(fd);
    const sb = decodeExt4Superblock(buf);
    const { stdout } = await runTool('dumpe2fs', ['-h', img]);
    expect(sb.blocksCount).toBe(field(stdout, 'Block count'));
    expect(sb.freeBlocks).toBe(field(stdout, 'Free blocks'));
    expect(sb.inodesCount).toBe(field(stdout, 'Inode count'));
    expect(sb.freeInodes).toBe(field(stdout, 'Free inodes'));
    expect(sb.blockSize).toBe(field(stdout, 'Block size'));
    expect(readExt4Usage(img)).toEqual({ inodesUsed: sb.inodesUsed, blocksUsed: sb.blocksUsed, blockSize: sb.blockSize });
    // The _hi halves count when INCOMPAT_64BIT is set (mkfs sets it here).
    expect(buf.readUInt32LE(0x60) & 0x80).toBe(0x80);
    buf.writeUInt32LE(2, 0x150);
    buf.writeUInt32LE(1, 0x158);
    const big = decodeExt4Superblock(buf);
    expect(big.blocksCount).toBe(sb.blocksCount + 2 * 2 ** 32);
    expect(big.freeBlocks).toBe(sb.freeBlocks + 2 ** 32);
    buf.writeUInt32LE(buf.readUInt32LE(0x60) & ~0x80, 0x60);
    expect(decodeExt4Superblock(buf).blocksCount).toBe(sb.blocksCount);
  }, 60_000);

  it('rejects a buffer without the ext4 magic', () => {
    expect(() => decodeExt4Superblock(Buffer.alloc(1024))).toThrow(/not an ext2\/3\/4 superblock/);
    expect(() => decodeExt4Superblock(Buffer.alloc(10))).toThrow(/need 1024 bytes/);
  });
});

describe('loop_config encoding', () => {
  it('places fd, flags and a truncated file name where linux/loop.h puts them', () => {
    const buf = encodeLoopConfig(7, 4096, { flags: 5, fileName: 'x'.repeat(100) });
    expect(buf.length).toBe(LOOP_CONFIG_SIZE);
    expect(buf.readUInt32LE(0)).toBe(7);
    expect(buf.readUInt32LE(4)).toBe(4096);
    const info = decodeLoopInfo64(buf, 8);
    expect(info.flags).toBe(5);
    expect(info.fileName).toBe('x'.repeat(63));
  });
});
