import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { attachLoop, detachLoop, findLoopsFor, findLoopsUnder, loopBackingFile, loopStatus } from '../../../src/sys/loop.js';
import { mountOne, mountsUnder, releaseMount, unmount, withTempMount } from '../../../src/sys/mount.js';
import { blockDeviceSize, isBlockDevice } from '../../../src/sys/blockdev.js';
import { growExt4, makeExt4 } from '../../../src/sys/exec.js';
import { execFileSync } from 'node:child_process';
import { readExt4Usage } from '../../../src/sys/fsinfo.js';
import { isRoot, leaksUnder, makeWorkDir, rootReason, sparseFile } from './_fixtures.js';
import { itableZeroed } from '../../helpers/ext4-groups.js';

const MiB = 1024 * 1024;

describe.skipIf(!isRoot)(`loop devices and mounts (${rootReason})`, () => {
  let work: string;
  let image: string;
  const attached: string[] = [];
  const mounted: string[] = [];

  beforeAll(async () => {
    work = makeWorkDir('loop');
    image = sparseFile(path.join(work, 'base.img'), 64 * MiB);
    await makeExt4(image, { noLostFound: true });
  });

  afterEach(() => {
    for (const m of mounted.splice(0)) unmount(m, { ignoreNotMounted: true, detach: true });
    for (const d of attached.splice(0)) detachLoop(d);
  });

  afterAll(() => {
    const leaks = work ? leaksUnder(work) : [];
    for (const d of findLoopsUnder(work)) detachLoop(d);
    fs.rmSync(work, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  });

  it('attaches a file to a loop device and detaches it', () => {
    const dev = attachLoop(image);
    attached.push(dev.path);
    expect(dev.path).toBe(`/dev/loop${dev.number}`);
    expect(dev.fd).toBeUndefined();
    expect(isBlockDevice(dev.path)).toBe(true);
    expect(blockDeviceSize(dev.path)).toBe(64 * MiB);
    expect(loopBackingFile(dev.path)).toBe(fs.realpathSync(image));
    expect(findLoopsFor(image)).toContain(dev.path);
    const st = loopStatus(dev.path)!;
    expect(st.fileName).toBe(fs.realpathSync(image).slice(0, 63));
    expect(st.flags & 1).toBe(0);
    detachLoop(dev.path);
    expect(findLoopsFor(image)).not.toContain(dev.path);
    detachLoop(dev.path); // already detached: no error
  });

  it('attaches read-only and lists a deleted backing file', () => {
    const tmp = sparseFile(path.join(work, 'gone.img'), 8 * MiB);
    const dev = attachLoop(tmp, { readOnly: true });
    attached.push(dev.path);
    expect(loopStatus(dev.path)!.flags & 1).toBe(1);
    fs.unlinkSync(tmp);
    expect(loopBackingFile(dev.path)).toMatch(/ \(deleted\)$/);
    expect(findLoopsFor(tmp)).toEqual([dev.path]);
    expect(findLoopsUnder(work)).toContain(dev.path);
  });

  it('gives concurrent attaches distinct devices', () => {
    const a = attachLoop(image, { readOnly: true });
    attached.push(a.path);
    const b = attachLoop(image, { readOnly: true });
    attached.push(b.path);
    expect(a.path).not.toBe(b.path);
    expect(findLoopsFor(image).sort()).toEqual([a.path, b.path].sort());
  });

  it('mounts with the loop option, and autoclear releases the device at unmount', () => {
    const target = fs.mkdtempSync(path.join(work, 'mnt-'));
    const h = mountOne({ type: 'ext4', source: image, options: ['loop', 'rw'] }, target);
    mounted.push(target);
    expect(h.loopDevice).toMatch(/^\/dev\/loop\d+$/);
    expect(mountsUnder(work)).toEqual([target]);
    expect(fs.readdirSync(target)).toEqual([]); // no lost+found
    expect(fs.statSync(target).mode & 0o7777).toBe(0o755);
    fs.writeFileSync(path.join(target, 'hello'), 'world');
    releaseMount(h);
    expect(mountsUnder(work)).toEqual([]);
    expect(findLoopsFor(image)).toEqual([]);
    fs.rmdirSync(target);
  });

  it('releases its loop device when the mount fails', () => {
    const junk = sparseFile(path.join(work, 'junk.img'), 8 * MiB);
    const target = fs.mkdtempSync(path.join(work, 'mnt-'));
    expect(() => mountOne({ type: 'ext4', source: junk, options: ['loop'] }, target)).toThrow(/mount/);
    expect(findLoopsFor(junk)).toEqual([]);
    expect(mountsUnder(work)).toEqual([]);
    fs.rmdirSync(target);
  });

  it('unmount of a non-mount point fails unless ignoreNotMounted', () => {
    const target = fs.mkdtempSync(path.join(work, 'mnt-'));
    expect(() => unmount(target)).toThrow(/EINVAL/);
    expect(() => unmount(target, { ignoreNotMounted: true })).not.toThrow();
    fs.rmdirSync(target);
  });

  it('withTempMount writes, remounts and reads back, then cleans up', async () => {
    const m = { type: 'ext4', source: image, options: ['loop', 'rw'] };
    let seen = '';
    await withTempMount([m], async (dir) => {
      seen = dir;
      fs.mkdirSync(path.join(dir, 'sub dir'));
      fs.writeFileSync(path.join(dir, 'sub dir', 'f'), 'persisted');
      expect(mountsUnder(work)).toEqual([]); // default parent is os.tmpdir()
      expect(mountsUnder(dir)).toEqual([dir]); // \040 decoded
    });
    expect(fs.existsSync(seen)).toBe(false);
    const text = await withTempMount([m], async (dir) => fs.readFileSync(path.join(dir, 'sub dir', 'f'), 'utf8'), {
      readOnly: true,
      parent: work,
    });
    expect(text).toBe('persisted');
    expect(leaksUnder(work)).toEqual([]);
    expect(findLoopsFor(image)).toEqual([]);
  });

  it('withTempMount mounts read-only when asked', async () => {
    const m = { type: 'ext4', source: image, options: ['loop'] };
    await withTempMount(
      [m],
      async (dir) => {
        expect(() => fs.writeFileSync(path.join(dir, 'x'), 'x')).toThrow(/EROFS/);
      },
      { readOnly: true, parent: work },
    );
    expect(leaksUnder(work)).toEqual([]);
  });

  it('withTempMount cleans up when fn throws', async () => {
    let seen = '';
    await expect(
      withTempMount(
        [{ type: 'ext4', source: image, options: ['loop'] }],
        async (dir) => {
          seen = dir;
          throw new Error('boom');
        },
        { parent: work },
      ),
    ).rejects.toThrow('boom');
    expect(fs.existsSync(seen)).toBe(false);
    expect(leaksUnder(work)).toEqual([]);
    expect(findLoopsFor(image)).toEqual([]);
  });

  it('makeExt4 applies a root mode and keeps lost+found unless asked', async () => {
    const img = sparseFile(path.join(work, 'mode.img'), 32 * MiB);
    await makeExt4(img, { rootMode: 0o700, label: 'tsblk' });
    await withTempMount([{ type: 'ext4', source: img, options: ['loop'] }], async (dir) => {
      expect(fs.statSync(dir).mode & 0o7777).toBe(0o700);
      expect(fs.readdirSync(dir)).toEqual(['lost+found']);
    }, { parent: work, readOnly: true });
    expect(findLoopsFor(img)).toEqual([]);
  });

  // A block device (a loop device here, a thin device in production) cannot
  // show mkfs that it reads zeros, so mkfs leaves inode tables to the
  // kernel's lazy init unless told (prezeroed); a sparse file can.
  it('makeExt4 marks inode tables zeroed on a block device only when told it reads zeros', async () => {
    const img = sparseFile(path.join(work, 'groups.img'), 2048 * MiB);
    const dev = attachLoop(img);
    attached.push(dev.path);
    await makeExt4(dev.path, { noLostFound: true });
    const lazy = itableZeroed(dev.path);
    expect(lazy.groups).toBe(16);
    expect(lazy.zeroed).toBe(0);
    await makeExt4(dev.path, { noLostFound: true, prezeroed: true });
    expect(itableZeroed(dev.path)).toEqual({ groups: 16, zeroed: 16 });
    await makeExt4(img, { noLostFound: true, discard: true });
    expect(itableZeroed(img)).toEqual({ groups: 16, zeroed: 16 });
  });

  // resize2fs leaves a grown filesystem's new groups to lazy init; growExt4
  // marks them zeroed only when told the grown range reads zeros, and leaves
  // the groups that were there before as they were.
  it('growExt4 marks only the grown groups zeroed, and only when told the new range reads zeros', async () => {
    for (const prezeroed of [false, true]) {
      const img = sparseFile(path.join(work, `grow-${prezeroed}.img`), 512 * MiB);
      const dev = attachLoop(img);
      attached.push(dev.path);
      await makeExt4(dev.path, { noLostFound: true }); // on a device: no group marked
      expect(itableZeroed(dev.path)).toEqual({ groups: 4, zeroed: 0 });
      fs.truncateSync(img, 2048 * MiB);
      detachLoop(dev.path);
      attached.pop();
      const grown = attachLoop(img);
      attached.push(grown.path);
      const marked = await growExt4(grown.path, { prezeroed });
      expect(marked).toBe(prezeroed ? 12 : 0);
      expect(itableZeroed(grown.path)).toEqual({ groups: 16, zeroed: prezeroed ? 12 : 0 });
      // The descriptors' checksums were recomputed: e2fsck finds nothing to fix.
      execFileSync('e2fsck', ['-fn', grown.path], { stdio: 'ignore' });
      await withTempMount([{ type: 'ext4', source: grown.path, options: ['rw'] }], async (d) => {
        fs.writeFileSync(path.join(d, 'f'), 'grown');
        expect(fs.statfsSync(d).blocks * fs.statfsSync(d).bsize).toBeGreaterThan(1900 * MiB);
      }, { parent: work });
      execFileSync('e2fsck', ['-fn', grown.path], { stdio: 'ignore' });
    }
  });

  it('withTempMount rejects anything but one mount', async () => {
    await expect(withTempMount([], async () => 1)).rejects.toThrow(/exactly one/);
  });

  it('reads ext4 usage from the unmounted image', async () => {
    const before = readExt4Usage(image);
    await withTempMount([{ type: 'ext4', source: image, options: ['loop'] }], async (dir) => {
      fs.writeFileSync(path.join(dir, 'big'), Buffer.alloc(4 * MiB, 7));
    }, { parent: work });
    const after = readExt4Usage(image);
    expect(after.blockSize).toBe(before.blockSize);
    expect((after.blocksUsed - before.blocksUsed) * after.blockSize).toBeGreaterThanOrEqual(4 * MiB);
    expect(after.inodesUsed).toBeGreaterThan(before.inodesUsed);
  });
});
