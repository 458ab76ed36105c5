import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detachLoop, findLoopsUnder } from '../../../src/sys/loop.js';
import { mountOne, releaseMount, unmount, type MountHandle } from '../../../src/sys/mount.js';
import { canReflink, cloneFile, cloneOrCopy, copySparse, isNoReflink } from '../../../src/sys/reflink.js';
import { allocatedBytes, fsInfo } from '../../../src/sys/fsinfo.js';
import { makeExt4, runTool } from '../../../src/sys/exec.js';
import { isRoot, leaksUnder, makeWorkDir, rootReason, sparseFile } from './_fixtures.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// writeSparseSample makes a 256 MiB file with three separated data extents.
function writeSparseSample(file: string): Buffer[] {
  sparseFile(file, 256 * MiB);
  const fd = fs.openSync(file, 'r+');
  const parts = [0, 100 * MiB, 256 * MiB - 8192].map((off, i) => {
    const b = Buffer.alloc(i === 1 ? 5 * MiB + 123 : 8192, 0x41 + i);
    fs.writeSync(fd, b, 0, b.length, off);
    return b;
  });
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return parts;
}

function sameContent(a: string, b: string): boolean {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  try {
    const ba = Buffer.alloc(4 * MiB);
    const bb = Buffer.alloc(4 * MiB);
    for (let off = 0; ; off += ba.length) {
      const na = fs.readSync(fa, ba, 0, ba.length, off);
      const nb = fs.readSync(fb, bb, 0, bb.length, off);
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
      if (na === 0) return true;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}

const hostIsExt4 = fs.existsSync('/var/tmp') && fsInfo('/var/tmp').type === 'ext4';

describe.skipIf(!hostIsExt4)('reflink on an ext4 host (/var/tmp must be ext4)', () => {
  let work: string;
  beforeAll(() => {
    work = makeWorkDir('ext4');
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  it('cannot reflink, so cloneOrCopy makes a sparse copy with equal content', async () => {
    expect(canReflink(work)).toBe(false);
    const src = path.join(work, 'src');
    writeSparseSample(src);
    expect(() => cloneFile(src, path.join(work, 'nope'))).toThrow(expect.objectContaining({ code: expect.any(String) }));
    expect(fs.existsSync(path.join(work, 'nope'))).toBe(false);
    const dst = path.join(work, 'dst');
    expect(await cloneOrCopy(src, dst)).toBe('sparse-copy');
    expect(fs.statSync(dst).size).toBe(fs.statSync(src).size);
    expect(fs.statSync(dst).mode & 0o777).toBe(0o600);
    const srcAlloc = allocatedBytes(src);
    const dstAlloc = allocatedBytes(dst);
    expect(dstAlloc).toBeLessThanOrEqual(srcAlloc + 1 * MiB);
    expect(dstAlloc).toBeGreaterThanOrEqual(5 * MiB);
    expect(sameContent(src, dst)).toBe(true);
  });

  it('copySparse refuses an existing destination and leaves it alone', async () => {
    const src = sparseFile(path.join(work, 's2'), MiB);
    const dst = path.join(work, 'd2');
    fs.writeFileSync(dst, 'keep');
    await expect(copySparse(src, dst)).rejects.toThrow(/EEXIST/);
    expect(fs.readFileSync(dst, 'utf8')).toBe('keep');
  });

  it('copies a fresh 10 GiB ext4 base image sparsely', async () => {
    const base = sparseFile(path.join(work, 'base10g.img'), 10 * GiB);
    await makeExt4(base, { noLostFound: true });
    const t0 = performance.now();
    expect(await cloneOrCopy(base, path.join(work, 'copy10g.img'))).toBe('sparse-copy');
    const ms = performance.now() - t0;
    console.log(`cloneOrCopy 10 GiB base on ext4: ${ms.toFixed(1)} ms, allocated ${allocatedBytes(base)} -> ${allocatedBytes(path.join(work, 'copy10g.img'))}`);
    expect(allocatedBytes(path.join(work, 'copy10g.img'))).toBeLessThan(64 * MiB);
    // Comparing 10 GiB of holes byte by byte takes ~45 s; e2fsck proves the
    // copied filesystem is intact in milliseconds.
    await runTool('e2fsck', ['-fn', path.join(work, 'copy10g.img')]);
  }, 120_000);
});

describe.skipIf(!isRoot)(`reflink on a loop-mounted XFS with reflink=1 (${rootReason})`, () => {
  let work: string;
  let mnt: string;
  let handle: MountHandle | undefined;

  beforeAll(async () => {
    work = makeWorkDir('xfs');
    const img = sparseFile(path.join(work, 'xfs.img'), 24 * GiB);
    await runTool('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', img]);
    mnt = path.join(work, 'mnt');
    fs.mkdirSync(mnt);
    handle = mountOne({ type: 'xfs', source: img, options: ['loop', 'rw'] }, mnt);
  }, 60_000);

  afterAll(() => {
    try {
      if (handle) releaseMount(handle);
      else if (mnt) unmount(mnt, { ignoreNotMounted: true });
    } finally {
      for (const d of findLoopsUnder(work)) detachLoop(d);
      const leaks = leaksUnder(work);
      fs.rmSync(work, { recursive: true, force: true });
      expect(leaks).toEqual([]);
    }
  });

  it('reflinks, sharing extents, with equal content', async () => {
    expect(fsInfo(mnt).type).toBe('xfs');
    expect(canReflink(mnt)).toBe(true);
    const src = path.join(mnt, 'src');
    writeSparseSample(src);
    const dst = path.join(mnt, 'dst');
    const freeBefore = fsInfo(mnt).freeBytes;
    expect(await cloneOrCopy(src, dst)).toBe('reflink');
    // A reflink allocates no new data blocks.
    expect(freeBefore - fsInfo(mnt).freeBytes).toBeLessThan(MiB);
    expect(fs.statSync(dst).mode & 0o777).toBe(0o600);
    expect(sameContent(src, dst)).toBe(true);
  });

  it('reflinks a fresh 10 GiB ext4 base image', async () => {
    const base = sparseFile(path.join(mnt, 'base10g.img'), 10 * GiB);
    await makeExt4(base, { noLostFound: true });
    const t0 = performance.now();
    expect(await cloneOrCopy(base, path.join(mnt, 'copy10g.img'))).toBe('reflink');
    console.log(`cloneOrCopy 10 GiB base on XFS: ${(performance.now() - t0).toFixed(1)} ms`);
  }, 120_000);

  it('classifies a cross-filesystem clone as "cannot reflink"', () => {
    const src = path.join(mnt, 'src');
    try {
      cloneFile(src, path.join(work, 'cross'));
      expect.unreachable('cross-device FICLONE must fail');
    } catch (err) {
      expect(isNoReflink(err)).toBe(true);
    }
    expect(fs.existsSync(path.join(work, 'cross'))).toBe(false);
  });
});
