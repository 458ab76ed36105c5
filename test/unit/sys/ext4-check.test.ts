// ext4check against real images made by mkfs.ext4: sound images pass, a
// flipped byte in the superblock or in any group descriptor is found (as the
// kernel and e2fsck find it), with where; and what it costs per check.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { crc32c, ext4ImageDamage } from '../../../src/sys/ext4check.js';
import { makeExt4, runTool } from '../../../src/sys/exec.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-ext4check-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function image(name: string, size: number): Promise<string> {
  const img = path.join(dir, name);
  fs.writeFileSync(img, '');
  fs.truncateSync(img, size);
  await makeExt4(img, { noLostFound: true });
  return img;
}

function flip(img: string, at: number): void {
  const fd = fs.openSync(img, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, at);
  b[0]! ^= 0x01;
  fs.writeSync(fd, b, 0, 1, at);
  fs.closeSync(fd);
}

async function e2fsckFinds(img: string): Promise<boolean> {
  return runTool('e2fsck', ['-fn', img]).then(() => false, () => true);
}

describe('crc32c', () => {
  it('is CRC-32C (Castagnoli): the check value of "123456789" is 0xe3069283', () => {
    expect((crc32c(0xffffffff, Buffer.from('123456789')) ^ 0xffffffff) >>> 0).toBe(0xe3069283);
    expect(crc32c(0xffffffff, Buffer.alloc(0))).toBe(0xffffffff);
  });
});

describe('ext4ImageDamage', () => {
  it('passes a fresh 10 GiB image (80 groups) and costs well under a millisecond', async () => {
    const img = await image('big.img', 10 * 1024 ** 3);
    expect(ext4ImageDamage(img)).toBeUndefined();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 200; i++) ext4ImageDamage(img);
    const us = Number(process.hrtime.bigint() - t0) / 200 / 1000;
    console.log(`ext4ImageDamage, 10 GiB image: ${us.toFixed(0)} µs per check`);
    expect(us).toBeLessThan(5000);
  });

  it('finds a flipped byte in the superblock, as e2fsck does', async () => {
    const img = await image('sb.img', 256 * 1024 ** 2);
    flip(img, 1024 + 0x78);
    expect(ext4ImageDamage(img)).toMatch(/^superblock: checksum 0x[0-9a-f]+ does not match the stored 0x[0-9a-f]+$/);
    expect(await e2fsckFinds(img)).toBe(true);
  });

  it('finds a flipped byte in every group descriptor field it covers, naming the group', async () => {
    const img = await image('gd.img', 1024 ** 3);
    const bs = 4096;
    for (const [group, field] of [[0, 0x0c], [3, 0x00], [7, 0x20]] as const) {
      const at = bs + group * 64 + field;
      flip(img, at);
      expect(ext4ImageDamage(img)).toMatch(new RegExp(`^group descriptor ${group}: checksum`));
      flip(img, at);
      expect(ext4ImageDamage(img)).toBeUndefined();
    }
  });

  it('reports a bad magic and a truncated image', async () => {
    const img = await image('magic.img', 64 * 1024 ** 2);
    flip(img, 1024 + 0x38);
    expect(ext4ImageDamage(img)).toMatch(/^superblock: bad magic/);
    const short = path.join(dir, 'short.img');
    fs.writeFileSync(short, Buffer.alloc(1500));
    expect(ext4ImageDamage(short)).toMatch(/short read/);
  });
});
