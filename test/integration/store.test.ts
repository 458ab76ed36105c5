// The blockfile store (src/backends/blockfile/store.ts, layout.ts) for real:
// an ext4 host filesystem (its own loop-mounted scratch, so the test means
// the same on any machine), tsblock's XFS-in-a-file on it, images cloned with
// FICLONE inside, growth, trim, adoption after a crash, and the layout rules
// for roots that already exist. The shared snapshotter suite also runs on a
// store (blockfile.test.ts).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, statfsSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { rootReason } from '../helpers/env.js';
import { leaksUnder, loopsUnder } from '../helpers/leaks.js';
import { releaseStore } from '../helpers/store.js';
import { MetaStore } from '../../src/storage/metastore.js';
import { CoreSnapshotter } from '../../src/core/snapshotter.js';
import { BlockfileBackend } from '../../src/backends/blockfile/blockfile.js';
import { XfsFileStore, STORE_FILE } from '../../src/backends/blockfile/store.js';
import { blockfileLayout, directDir, imagesDirOf } from '../../src/backends/blockfile/layout.js';
import { FailedPreconditionError } from '../../src/errdefs.js';
import { mountEntry, mountOne, releaseMount, withTempMount } from '../../src/sys/mount.js';
import { canReflink } from '../../src/sys/reflink.js';
import { doctorCommand } from '../../src/cli/commands/doctor.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** A loop-mounted scratch filesystem of the given type (test setup through mount(8), not tsblock's code). */
function scratchFs(type: 'ext4' | 'xfs', size: string): { dir: string; release(): void } {
  const base = mkdtempSync(`/var/tmp/tsblock-store-${type}-`);
  const img = join(base, 'fs.img');
  const dir = join(base, 'mnt');
  mkdirSync(dir);
  execFileSync('truncate', ['-s', size, img]);
  if (type === 'ext4') execFileSync('mkfs.ext4', ['-q', '-F', img]);
  else execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', img]);
  execFileSync('mount', ['-o', 'loop', img, dir]);
  return {
    dir,
    release() {
      for (const m of leaksUnder(dir).filter((l) => l.startsWith('mount ') && l !== `mount ${dir}`).map((l) => l.slice(6)).reverse()) {
        try {
          execFileSync('umount', [m]);
        } catch {
          execFileSync('umount', ['-l', m]);
        }
      }
      try {
        execFileSync('umount', ['-d', dir]);
      } catch {
        execFileSync('umount', ['-l', '-d', dir]);
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}

async function openCore(root: string, store: XfsFileStore | undefined, baseSize = 256 * MiB) {
  mkdirSync(root, { recursive: true });
  const backend = new BlockfileBackend({ dir: store ? join(root, 'store', 'blockfile') : directDir(root), baseSize, store });
  const sn = await CoreSnapshotter.open({ store: new MetaStore(join(root, 'metadata.db')), backend });
  return { sn, backend };
}

function writeMiB(dir: string, name: string, mib: number): void {
  const fd = openSync(join(dir, name), 'w');
  const chunk = Buffer.alloc(MiB);
  try {
    for (let i = 0; i < mib; i++) {
      chunk.fill(i & 0xff);
      chunk.writeUInt32LE(i, 0);
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
}

async function doctorJson(root: string): Promise<Record<string, { status: string; detail: string; fix?: string }>> {
  let out = '';
  const io = { out: (t: string) => void (out += t), err: () => undefined, tty: false, env: {} };
  await doctorCommand(['--root', root, '--json', '--containerd-config', join(root, 'none.toml')], io);
  return Object.fromEntries(JSON.parse(out).checks.map((c: { check: string }) => [c.check, c]));
}

const allocated = (f: string) => statSync(f).blocks * 512;

describe.skipIf(rootReason)(`blockfile store on an ext4 host${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  let host: ReturnType<typeof scratchFs>;
  beforeAll(() => {
    host = scratchFs('ext4', '24G');
  });
  afterAll(() => host?.release());

  it('a new root on ext4 gets a store: sparse XFS reflink=1, direct-I/O loop, images cloned in it', async () => {
    const root = join(host.dir, 'r1');
    mkdirSync(root);
    expect(canReflink(root)).toBe(false); // the point of the store
    expect(blockfileLayout(root, 'auto')).toEqual({ dir: join(root, 'store', 'blockfile'), store: true });
    const store = new XfsFileStore({ root });
    const { sn } = await openCore(root, store);
    try {
      const file = join(root, STORE_FILE);
      // min(32 GiB, host free − reserve): this host has 24 GiB.
      expect(statSync(file).size).toBeLessThan(24 * GiB);
      expect(statSync(file).size).toBeGreaterThan(20 * GiB);
      expect(allocated(file)).toBeLessThan(200 * MiB); // formatted, not filled
      const m = mountEntry(join(root, 'store'));
      expect(m?.fsType).toBe('xfs');
      const dev = m!.source.replace('/dev/', '');
      expect(readFileSync(`/sys/block/${dev}/loop/dio`, 'utf8').trim()).toBe('1'); // cached once, by XFS
      expect(statSync(join(root, 'store')).mode & 0o777).toBe(0o700);
      expect(imagesDirOf(root)).toBe(join(root, 'store', 'blockfile'));
      expect(canReflink(join(root, 'store', 'blockfile'))).toBe(true);

      // A 64 MiB layer, then 20 children of it: clones share its blocks.
      await withTempMount(await sn.prepare('l1', ''), async (d) => writeMiB(d, 'big', 64), { parent: host.dir });
      await sn.commit('c1', 'l1');
      await store.ensureRoom();
      const before = allocated(file);
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) await sn.prepare(`ctr-${i}`, 'c1');
      const perPrepare = (performance.now() - t0) / 20;
      const grew = allocated(file) - before;
      expect(grew, `20 clones of a 64 MiB image cost ${grew} bytes`).toBeLessThan(32 * MiB);
      expect(perPrepare).toBeLessThan(500); // a clone, not a 64 MiB copy
      await withTempMount(await sn.mounts('ctr-7'), async (d) => {
        const buf = readFileSync(join(d, 'big'));
        expect(buf.length).toBe(64 * MiB);
        expect(buf.readUInt32LE(63 * MiB)).toBe(63);
      }, { parent: host.dir });
    } finally {
      await sn.close();
    }
    // Nothing in use: a clean close unmounts the store and frees its loop device.
    expect(mountEntry(join(root, 'store'))).toBeUndefined();
    expect(leaksUnder(root)).toEqual([]);
  }, 120_000);

  it('grows the file online when XFS runs low, and gives removed images back to the host (trim)', async () => {
    const root = join(host.dir, 'r2');
    mkdirSync(root);
    const store = new XfsFileStore({ root, initialSize: GiB });
    const { sn } = await openCore(root, store, GiB);
    try {
      const file = join(root, STORE_FILE);
      // The first clone's ensureRoom found a 1 GiB XFS under its headroom and grew it.
      await sn.prepare('a', '');
      expect(statSync(file).size).toBe(2 * GiB);
      const fs = statfsSync(join(root, 'store'));
      expect(fs.blocks * fs.bsize).toBeGreaterThan(1.9 * GiB);
      await withTempMount(await sn.mounts('a'), async (d) => writeMiB(d, 'data', 300), { parent: host.dir });
      const full = allocated(file);
      expect(full).toBeGreaterThan(300 * MiB);
      await sn.remove('a');
      // Online discard returns the blocks once XFS has logged the free (off the caller's path).
      let after = allocated(file);
      for (let i = 0; i < 50 && full - after < 250 * MiB; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = allocated(file);
      }
      await sn.cleanup(); // Cleanup's FITRIM on top must not fail
      after = Math.min(after, allocated(file));
      expect(full - after, `trim gave back ${full - after} bytes`).toBeGreaterThan(250 * MiB);
    } finally {
      await sn.close();
    }
    expect(leaksUnder(root)).toEqual([]);
  }, 120_000);

  it('a killed daemon leaves the store mounted; the next open adopts it; one in use stays mounted at close', async () => {
    const root = join(host.dir, 'r3');
    mkdirSync(root);
    const first = await openCore(root, new XfsFileStore({ root }));
    await withTempMount(await first.sn.prepare('l', ''), async (d) => writeFileSync(join(d, 'f'), 'kept'), { parent: host.dir });
    await first.sn.commit('c', 'l');
    await first.sn.prepare('ctr', 'c');
    const device = mountEntry(join(root, 'store'))!.source;
    // "Kill": the process state is dropped without close(); the kernel keeps the mount.
    const second = await openCore(root, new XfsFileStore({ root }));
    let handle: ReturnType<typeof mountOne> | undefined;
    try {
      expect(mountEntry(join(root, 'store'))!.source).toBe(device);
      const mounts = await second.sn.mounts('ctr');
      const target = mkdtempSync(join(host.dir, 'ctr-'));
      handle = mountOne(mounts[0]!, target); // a container's rootfs, as containerd mounts it
      expect(readFileSync(join(target, 'f'), 'utf8')).toBe('kept');
      await second.sn.close();
      expect(mountEntry(join(root, 'store'))?.fsType).toBe('xfs'); // still serving the container
      writeFileSync(join(target, 'g'), 'after close');
      releaseMount(handle);
      handle = undefined;
      rmSync(target, { recursive: true });
    } finally {
      if (handle) releaseMount(handle);
      releaseStore(root);
    }
    expect(leaksUnder(root)).toEqual([]);
  }, 120_000);

  it('refuses a foreign filesystem on the mount point and changes nothing', async () => {
    const root = join(host.dir, 'r4');
    mkdirSync(join(root, 'store'), { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', join(root, 'store')]);
    try {
      await expect(new XfsFileStore({ root }).open()).rejects.toThrow(FailedPreconditionError);
      await expect(new XfsFileStore({ root }).open()).rejects.toThrow(/tmpfs .* mounted, not tsblock's store/);
      expect(existsSync(join(root, STORE_FILE))).toBe(false);
    } finally {
      execFileSync('umount', [join(root, 'store')]);
    }
  });

  it('an existing root with images directly keeps them; xfs-file on it is refused; direct on a store root is refused', async () => {
    const root = join(host.dir, 'r5');
    mkdirSync(root);
    // A root made before the store existed: images directly under <root>/blockfile.
    const old = await openCore(root, undefined);
    await withTempMount(await old.sn.prepare('l', ''), async (d) => writeFileSync(join(d, 'f'), 'old'), { parent: host.dir });
    await old.sn.commit('c', 'l');
    await old.sn.close();
    const auto = blockfileLayout(root, 'auto');
    expect(auto).toMatchObject({ dir: directDir(root), store: false });
    expect(auto.note).toMatch(/cannot reflink and keeps its images directly .* full copy/);
    expect(() => blockfileLayout(root, 'xfs-file')).toThrow(/already keeps images directly .* does not move them/);
    expect(existsSync(join(root, STORE_FILE))).toBe(false);
    const again = await openCore(root, undefined);
    expect((await again.sn.stat('c')).name).toBe('c');
    await again.sn.close();
    // doctor says what such a root costs and what to do.
    const doc = await doctorJson(root);
    expect(doc['[tsblock] reflink']).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(/cannot reflink and keeps its images directly .* copies its whole image .* costs the image on disk/),
      fix: expect.stringMatching(/a new root gets an XFS store/),
    });

    const fresh = join(host.dir, 'r6');
    mkdirSync(fresh);
    expect((await doctorJson(fresh))['[tsblock] reflink']).toMatchObject({ status: 'ok', detail: expect.stringMatching(/makes an XFS store .* at its first start/) });
    const s = await openCore(fresh, new XfsFileStore({ root: fresh }));
    await s.sn.close();
    const withStore = await doctorJson(fresh);
    expect(withStore['[tsblock] reflink']).toMatchObject({ status: 'ok', detail: expect.stringMatching(/inside the XFS store/) });
    expect(withStore['[tsblock] xfs store']).toMatchObject({ status: 'ok', detail: expect.stringMatching(/not mounted \(the daemon mounts it at start\)/) });
    expect(() => blockfileLayout(fresh, 'direct')).toThrow(/keeps its images in its store/);
    expect(blockfileLayout(fresh, 'auto').store).toBe(true);
  }, 60_000);

  it('the store runs out before the host does: XFS says ENOSPC, stays healthy, and the host keeps its reserve', async () => {
    // A small host (1.5 GiB) so filling is cheap; store = "xfs-file" forces a store on it.
    const small = scratchFs('ext4', '1536M');
    try {
      const root = join(small.dir, 'r');
      mkdirSync(root);
      expect(blockfileLayout(root, 'auto').store).toBe(false); // too small for auto
      expect(blockfileLayout(root, 'xfs-file').store).toBe(true);
      const store = new XfsFileStore({ root });
      const { sn } = await openCore(root, store, 4 * GiB);
      try {
        await sn.prepare('a', '');
        // Fill the store itself, as images filling up would (a file beside them).
        const filler = join(root, 'store', 'blockfile', 'filler');
        let code: string | undefined;
        try {
          writeMiB(join(root, 'store', 'blockfile'), 'filler', 4096);
        } catch (err) {
          code = (err as NodeJS.ErrnoException).code;
        }
        expect(code).toBe('ENOSPC'); // XFS's own ENOSPC, not an I/O error from the host under it
        const host = statfsSync(root);
        expect(host.bavail * host.bsize).toBeGreaterThan(100 * MiB); // the host was not run dry
        expect(store.freeSpace().free).toBeLessThan(64 * MiB);
        // XFS is healthy: freeing space and trimming lets new snapshots be written.
        rmSync(filler);
        await sn.remove('a');
        await sn.cleanup();
        await withTempMount(await sn.prepare('b', ''), async (d) => writeMiB(d, 'ok', 64), { parent: small.dir });
      } finally {
        await sn.close();
      }
      expect(loopsUnder(root)).toEqual([]);
    } finally {
      small.release();
    }
  }, 300_000);
});

describe.skipIf(rootReason)(`blockfile layout on an XFS host${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  it('a root that can reflink uses its filesystem directly', () => {
    const xfs = scratchFs('xfs', '2G');
    try {
      const root = join(xfs.dir, 'r');
      mkdirSync(root);
      expect(blockfileLayout(root, 'auto')).toEqual({ dir: directDir(root), store: false });
    } finally {
      xfs.release();
    }
  });
});
