// Integration tests of applyLayer: real files in a temp dir (and once in a
// loop-mounted ext4). Needs root for devices, chown and security.* xattrs.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyLayer } from '../../../src/apply/applier.js';
import { getXattr } from '../../../src/sys/nodes.js';
import { withTempMount } from '../../../src/sys/mount.js';
import {
  buildTar,
  diffIdOf,
  dir,
  file,
  gzipTar,
  hardlink,
  opaque,
  packLayer,
  symlink,
  whiteout,
  zstdTar,
  type LayerEntry,
} from '../../fixtures/layers/build.js';
import { applyBuf, isRoot, makeSandbox, type Sandbox } from './helpers.js';

if (!isRoot) console.warn('applier integration tests skipped: they need root (devices, chown, security.* xattrs)');

// security.capability v2: cap_setuid (bit 7 → byte 0x80) + cap_net_raw (bit 13), effective.
const CAP = Buffer.from([1, 0, 0, 2, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

describe.skipIf(!isRoot)('applyLayer (root required)', () => {
  let sb: Sandbox;
  beforeEach(() => {
    sb = makeSandbox();
  });
  afterEach(() => sb.cleanup());
  const at = (p: string) => path.join(sb.root, p);

  it('creates every entry type with its attributes', async () => {
    const t = await buildTar([
      dir('d', { mode: 0o2750, uid: 1000, gid: 1001, mtime: 1_600_000_000 }),
      file('d/suid', 'payload', { mode: 0o4755, uid: 1000, gid: 1001, mtime: 1_500_000_000, pax: { mtime: '1500000000.123456789' }, xattrs: { 'security.capability': CAP, 'user.note': 'hi' } }),
      hardlink('d/suid-link', 'd/suid', { mode: 0o4755, uid: 1000, gid: 1001, mtime: 1_500_000_000, pax: { mtime: '1500000000.123456789' } }),
      symlink('d/sym', '../nowhere', { uid: 7, gid: 8, mtime: 1_400_000_000 }),
      { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'dev/loop200', type: 'block', devmajor: 7, devminor: 200, mode: 0o660, gid: 6 },
      { name: 'dev/fifo', type: 'fifo', mode: 0o1640 },
      file('sticky-empty', '', { mode: 0o1777 }),
    ]);
    const r = await applyBuf(sb.root, t);
    expect(r).toMatchObject({ diffId: diffIdOf(t), size: t.length, entries: 8, skipped: 0 });

    const d = fs.lstatSync(at('d'));
    expect(d.isDirectory()).toBe(true);
    expect(d.mode & 0o7777).toBe(0o2750);
    expect([d.uid, d.gid]).toEqual([1000, 1001]);
    expect(d.mtimeMs).toBe(1_600_000_000_000); // restored after children were written

    const f = fs.lstatSync(at('d/suid'), { bigint: true });
    expect(Number(f.mode) & 0o7777).toBe(0o4755); // setuid survives the chown
    expect([f.uid, f.gid]).toEqual([1000n, 1001n]);
    expect(f.mtimeNs).toBe(1_500_000_000_123_456_789n);
    expect(f.nlink).toBe(2n);
    expect(fs.readFileSync(at('d/suid'), 'utf8')).toBe('payload');
    expect(getXattr(at('d/suid'), 'security.capability')).toEqual(CAP); // binary-exact
    expect(getXattr(at('d/suid'), 'user.note')?.toString()).toBe('hi');
    expect((await execa('getcap', [at('d/suid')])).stdout).toMatch(/cap_setuid,cap_net_raw=ep$/);
    expect(fs.lstatSync(at('d/suid-link')).ino).toBe(Number(f.ino));

    const s = fs.lstatSync(at('d/sym'));
    expect(s.isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(at('d/sym'))).toBe('../nowhere');
    expect([s.uid, s.gid, s.mtimeMs]).toEqual([7, 8, 1_400_000_000_000]);

    const c = fs.lstatSync(at('dev/null'));
    expect(c.isCharacterDevice()).toBe(true);
    expect(c.rdev).toBe(fs.statSync('/dev/null').rdev);
    expect(c.mode & 0o7777).toBe(0o666);
    const b = fs.lstatSync(at('dev/loop200'));
    expect(b.isBlockDevice()).toBe(true);
    expect([Math.floor(b.rdev / 256), b.rdev % 256, b.gid, b.mode & 0o7777]).toEqual([7, 200, 6, 0o660]);
    const p = fs.lstatSync(at('dev/fifo'));
    expect(p.isFIFO()).toBe(true);
    expect(p.mode & 0o7777).toBe(0o1640);
    expect(fs.lstatSync(at('sticky-empty')).mode & 0o7777).toBe(0o1777);
    expect(fs.lstatSync(at('dev')).mode & 0o777).toBe(0o755); // implicit parent
  });

  it('skips devices (counted, warned) when allowDevices is false', async () => {
    const t = await buildTar([{ name: 'null', type: 'char', devmajor: 1, devminor: 3 }, { name: 'fifo', type: 'fifo' }, file('x', 'x')]);
    const warnings: string[] = [];
    const r = await applyBuf(sb.root, t, { allowDevices: false, onWarning: (m) => warnings.push(m) });
    expect(r.skipped).toBe(1);
    expect(warnings).toEqual([expect.stringContaining('device "null" skipped')]);
    expect(fs.existsSync(at('null'))).toBe(false);
    expect(fs.lstatSync(at('fifo')).isFIFO()).toBe(true); // fifos need no privilege
  });

  it('keeps long zero runs as holes (sparse files)', async () => {
    const size = 32 * 1024 * 1024;
    const content = Buffer.alloc(size);
    content.write('head', 0);
    content.write('middle', 10 * 1024 * 1024 + 5);
    content.fill(7, size - 100_000); // dense tail, not block-aligned
    const t = await buildTar([file('sparse.img', content), file('trailing-hole', Buffer.concat([Buffer.from('x'), Buffer.alloc(4 << 20)]))]);
    await applyBuf(sb.root, t, {}, 65_537);
    const st = fs.statSync(at('sparse.img'));
    expect(st.size).toBe(size);
    expect(fs.readFileSync(at('sparse.img')).equals(content)).toBe(true);
    expect(st.blocks * 512).toBeLessThan(1024 * 1024); // ~3 blocks of 64 KiB + tail, not 32 MiB
    const th = fs.statSync(at('trailing-hole'));
    expect(th.size).toBe((4 << 20) + 1);
    expect(th.blocks * 512).toBeLessThanOrEqual(128 * 1024);
  });

  it('computes the diffID of plain, gzip and zstd layers like sha256sum', async () => {
    const t = await buildTar([dir('etc'), file('etc/hostname', 'box\n'), file('big', Buffer.alloc(300_000, 'a'))]);
    const tarPath = path.join(sb.base, 'layer.tar');
    fs.writeFileSync(tarPath, t);
    const expected = `sha256:${(await execa('sha256sum', [tarPath])).stdout.split(' ')[0]}`;
    for (const [blob, mediaType] of [
      [t, 'application/vnd.oci.image.layer.v1.tar'],
      [gzipTar(t), 'application/vnd.oci.image.layer.v1.tar+gzip'],
      [zstdTar(t), 'application/vnd.oci.image.layer.v1.tar+zstd'],
      [gzipTar(t), 'application/vnd.docker.image.rootfs.diff.tar.gzip'],
    ] as const) {
      const r = await applyLayer(sb.root, fs.createReadStream(writeTmp(sb, blob)), { mediaType, expectedDiffId: expected });
      expect(r.diffId).toBe(expected);
      expect(r.size).toBe(t.length);
      expect(fs.readFileSync(at('etc/hostname'), 'utf8')).toBe('box\n');
    }
  });

  it('trusts magic bytes over a wrong media type and refuses unknown types', async () => {
    const t = await buildTar([file('a', 'a')]);
    const warnings: string[] = [];
    const r = await applyBuf(sb.root, gzipTar(t), { mediaType: 'application/vnd.oci.image.layer.v1.tar', onWarning: (m) => warnings.push(m) });
    expect(r.diffId).toBe(diffIdOf(t));
    expect(warnings[0]).toMatch(/says none but the data is gzip/);
    await expect(applyBuf(sb.root, t, { mediaType: 'application/vnd.oci.image.layer.v1.tar+bzip2' })).rejects.toMatchObject({
      code: 'invalid-argument',
      message: expect.stringMatching(/unsupported layer media type/),
    });
  });

  it('applies whiteouts and opaque directories across three layers', async () => {
    await applyBuf(
      sb.root,
      await buildTar([
        dir('a'),
        file('a/keep', '1'),
        file('a/gone', '1'),
        dir('a/sub'),
        file('a/sub/deep', '1'),
        dir('o1'),
        file('o1/lower', '1'),
        dir('o1/lowerdir'),
        file('o1/lowerdir/x', '1'),
        dir('o2'),
        file('o2/lower', '1'),
        dir('o2/mixed'),
        file('o2/mixed/lower', '1'),
        file('shared', 'lower-content', { mode: 0o640, uid: 5 }),
      ]),
    );
    // Layer 2: whiteouts, opaque marker AFTER own entries (o1) and BEFORE (o2).
    await applyBuf(
      sb.root,
      await buildTar([
        whiteout('a/gone'),
        whiteout('a/sub'),
        file('o1/mine', '2'),
        dir('o1/lowerdir'), // re-listed: merged, but its lower child must go too
        file('o1/lowerdir/new', '2'),
        opaque('o1'),
        opaque('o2'),
        file('o2/mixed/mine', '2'), // implicit parent dir o2/mixed, own entry
        hardlink('linked', 'shared', { mode: 0o640, uid: 5 }), // hardlink to a lower-layer file
        whiteout('missing/parent'), // no-op, parent not created
      ]),
    );
    expect(fs.readdirSync(at('a')).sort()).toEqual(['keep']);
    expect(fs.readdirSync(at('o1')).sort()).toEqual(['lowerdir', 'mine']);
    expect(fs.readdirSync(at('o1/lowerdir'))).toEqual(['new']);
    expect(fs.readdirSync(at('o2'))).toEqual(['mixed']);
    expect(fs.readdirSync(at('o2/mixed'))).toEqual(['mine']);
    expect(fs.existsSync(at('missing'))).toBe(false);
    expect(fs.readFileSync(at('linked'), 'utf8')).toBe('lower-content');
    expect(fs.statSync(at('shared')).nlink).toBe(2);
    // Layer 3: whiteout of a whole dir from two layers, opaque on the root.
    await applyBuf(sb.root, await buildTar([whiteout('o1'), file('late', '3')]));
    expect(fs.readdirSync(sb.root).sort()).toEqual(['a', 'late', 'linked', 'o2', 'shared']);
    await applyBuf(sb.root, await buildTar([file('only', '4'), opaque('')]));
    expect(fs.readdirSync(sb.root)).toEqual(['only']);
  });

  it('replaces entries: file over dir, dir over file, dir over dir merges', async () => {
    await applyBuf(sb.root, await buildTar([dir('x'), file('x/child', '1'), file('y', '1'), dir('z', { mode: 0o700 }), file('z/old', '1'), symlink('w', 'z')]));
    await applyBuf(sb.root, await buildTar([file('x', 'now a file'), dir('y', { mode: 0o711 }), dir('z', { mode: 0o755 }), file('z/new', '2'), dir('w')]));
    expect(fs.readFileSync(at('x'), 'utf8')).toBe('now a file');
    expect(fs.lstatSync(at('y')).mode & 0o777).toBe(0o711);
    expect(fs.readdirSync(at('z')).sort()).toEqual(['new', 'old']);
    expect(fs.lstatSync(at('z')).mode & 0o777).toBe(0o755);
    expect(fs.lstatSync(at('w')).isDirectory()).toBe(true); // symlink replaced, not followed
    expect(fs.readdirSync(at('w'))).toEqual([]);
  });

  it('applies a chain of 200 small layers in sequence', async () => {
    for (let i = 0; i < 200; i++) {
      const entries: LayerEntry[] = [dir('chain'), file(`chain/f${i}`, `layer ${i}`), file('chain/latest', String(i))];
      if (i > 0) entries.push(whiteout(`chain/f${i - 1}`));
      if (i % 50 === 49) entries.push(opaque('chain'));
      await applyBuf(sb.root, gzipTar(await buildTar(entries)));
    }
    expect(fs.readdirSync(at('chain')).sort()).toEqual(['f199', 'latest']);
    expect(fs.readFileSync(at('chain/latest'), 'utf8')).toBe('199');
  }, 60_000);

  it('applies into a real loop-mounted ext4', async () => {
    const img = path.join(fs.mkdtempSync(path.join('/var/tmp', 'tsblock-apply-ext4-')), 'fs.img');
    try {
      fs.writeFileSync(img, '');
      fs.truncateSync(img, 64 << 20);
      await execa('mkfs.ext4', ['-q', '-F', img]);
      const t = await buildTar([
        dir('usr/bin'),
        file('usr/bin/ping', 'elf', { mode: 0o4755, xattrs: { 'security.capability': CAP } }),
        file('var/big', Buffer.concat([Buffer.alloc(8 << 20), Buffer.from('end')])),
        { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      ]);
      await withTempMount([{ type: 'ext4', source: img, options: ['loop'] }], async (mnt) => {
        const r = await applyBuf(mnt, gzipTar(t));
        expect(r.diffId).toBe(diffIdOf(t));
        expect(getXattr(path.join(mnt, 'usr/bin/ping'), 'security.capability')).toEqual(CAP);
        expect(fs.statSync(path.join(mnt, 'usr/bin/ping')).mode & 0o7777).toBe(0o4755);
        expect(fs.statSync(path.join(mnt, 'var/big')).blocks * 512).toBeLessThan(256 * 1024);
        expect(fs.lstatSync(path.join(mnt, 'dev/null')).isCharacterDevice()).toBe(true);
      });
    } finally {
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
    }
  }, 60_000);

  it('applies a 100 MiB mixed layer (throughput figure)', async () => {
    const entries: LayerEntry[] = [];
    let total = 0;
    for (let i = 0; total < 100 << 20; i++) {
      const big = i % 100 === 0;
      const n = big ? 8 << 20 : 1024 + ((i * 7919) % (64 << 10));
      entries.push(file(`d${i % 50}/f${i}`, Buffer.alloc(n, i & 0xff || 1)));
      total += n;
    }
    const t = await buildTar(entries);
    const src = writeTmp(sb, t, '/var/tmp');
    try {
      const start = performance.now();
      const r = await applyLayer(sb.root, fs.createReadStream(src, { highWaterMark: 1 << 20 }));
      const secs = (performance.now() - start) / 1000;
      console.log(`applied ${(r.size / 2 ** 20).toFixed(0)} MiB in ${entries.length} files (${os.tmpdir()}): ${(r.size / 2 ** 20 / secs).toFixed(0)} MiB/s`);
      expect(r.entries).toBe(entries.length);
    } finally {
      fs.rmSync(src);
    }
  }, 120_000);
});

function writeTmp(sb: Sandbox, blob: Buffer, dirPath = sb.base): string {
  const p = path.join(dirPath, `blob-${process.pid}-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(p, blob);
  return p;
}

// Streaming: a layer built on the fly is consumed without buffering it whole.
describe.skipIf(!isRoot)('applyLayer streaming (root required)', () => {
  it('consumes a packed stream directly', async () => {
    const sb = makeSandbox();
    try {
      const r = await applyLayer(sb.root, packLayer([dir('s'), file('s/a', 'x'.repeat(100_000))]) as unknown as AsyncIterable<Buffer>);
      expect(r.entries).toBe(2);
      expect(fs.statSync(path.join(sb.root, 's/a')).size).toBe(100_000);
    } finally {
      sb.cleanup();
    }
  });
});
