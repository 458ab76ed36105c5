// snapshotterSuite is tsblock's shared conformance suite, in the spirit of
// containerd's snapshots/testsuite: every case gets a fresh root, mounts what
// the snapshotter returns for real (loop devices or dm devices), and checks
// file content, kinds and parents. Each backend's test file is a few lines
// calling it (test/integration/blockfile.test.ts, test/devmapper/suite.test.ts).

import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync, existsSync, statSync, readdirSync, chownSync, symlinkSync, readlinkSync, statfsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Kind, type Snapshotter, type Info } from '../../src/snapshots/snapshotter.js';
import type { Mount } from '../../src/snapshots/mount.js';
import { withTempMount } from '../../src/sys/mount.js';
import { LABEL_MAX_SIZE } from '../../src/snapshots/labels.js';

/** Opened is one snapshotter over a root, with its way to close. */
export interface Opened {
  sn: Snapshotter;
  close(): Promise<void>;
}

/** SuiteOptions tune the suite per backend. */
export interface SuiteOptions {
  /** open builds a snapshotter over `root` (called again on the same root to test restarts). */
  open(root: string): Promise<Opened>;
  /** tmpParent is where case roots are made (a reflink-capable fs for blockfile-on-XFS runs). */
  tmpParent?: () => string;
  /** chainDepth is how deep the long-chain case goes (slower backends use fewer). */
  chainDepth?: number;
  /** leaks lists kernel objects (loop/dm devices, mounts) the root still holds after close. */
  leaks?: (root: string) => string[];
}

/** snapshotterSuite registers the shared cases under `describe(name)`. */
export function snapshotterSuite(name: string, opts: SuiteOptions): void {
  describe(name, () => {
    let root: string;
    let opened: Opened;
    let sn: Snapshotter;

    beforeEach(async () => {
      root = mkdtempSync(join(opts.tmpParent?.() ?? '/var/tmp', 'tsblock-suite-'));
      opened = await opts.open(root);
      sn = opened.sn;
    });

    afterEach(async () => {
      try {
        await opened.close();
        const leaks = opts.leaks?.(root) ?? [];
        expect(leaks, 'kernel objects left behind').toEqual([]);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    const write = (mounts: Mount[], fn: (dir: string) => void) => withTempMount(mounts, async (dir) => fn(dir));
    const read = <T>(mounts: Mount[], fn: (dir: string) => T) => withTempMount(mounts, async (dir) => fn(dir));

    it('prepare returns exactly one mount of an empty ext4 whose root is 0755 with no lost+found', async () => {
      const mounts = await sn.prepare('first', '');
      expect(mounts).toHaveLength(1);
      expect(mounts[0]!.type).toBe('ext4');
      await read(mounts, (dir) => {
        expect(readdirSync(dir)).toEqual([]);
        expect(statSync(dir).mode & 0o7777).toBe(0o755);
      });
    });

    it('layers stack: a child sees its parent, its own changes do not touch the parent', async () => {
      await write(await sn.prepare('l1', ''), (d) => {
        writeFileSync(join(d, 'a'), 'one');
        mkdirSync(join(d, 'dir'));
        writeFileSync(join(d, 'dir', 'b'), 'bee');
        symlinkSync('a', join(d, 'link'));
      });
      await sn.commit('c1', 'l1');
      await write(await sn.prepare('l2', 'c1'), (d) => {
        expect(readFileSync(join(d, 'a'), 'utf8')).toBe('one');
        expect(readlinkSync(join(d, 'link'))).toBe('a');
        writeFileSync(join(d, 'a'), 'two');
        rmSync(join(d, 'dir'), { recursive: true });
        writeFileSync(join(d, 'c'), 'sea');
      });
      await sn.commit('c2', 'l2');
      await read(await sn.view('v1', 'c1'), (d) => {
        expect(readFileSync(join(d, 'a'), 'utf8')).toBe('one');
        expect(readFileSync(join(d, 'dir', 'b'), 'utf8')).toBe('bee');
        expect(existsSync(join(d, 'c'))).toBe(false);
      });
      await read(await sn.view('v2', 'c2'), (d) => {
        expect(readFileSync(join(d, 'a'), 'utf8')).toBe('two');
        expect(existsSync(join(d, 'dir'))).toBe(false);
        expect(readFileSync(join(d, 'c'), 'utf8')).toBe('sea');
      });
    });

    it('owners and modes survive commit', async () => {
      await write(await sn.prepare('l1', ''), (d) => {
        mkdirSync(join(d, 'owned'), { mode: 0o750 });
        chownSync(join(d, 'owned'), 1234, 5678);
        writeFileSync(join(d, 'suid'), 'x', { mode: 0o4755 });
      });
      await sn.commit('c1', 'l1');
      await read(await sn.prepare('l2', 'c1'), (d) => {
        const st = statSync(join(d, 'owned'));
        expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1234, 5678, 0o750]);
        expect(statSync(join(d, 'suid')).mode & 0o7777).toBe(0o4755);
      });
    });

    it('a view is read-only and reports kind view with its parent', async () => {
      await write(await sn.prepare('l1', ''), (d) => writeFileSync(join(d, 'f'), 'x'));
      await sn.commit('c1', 'l1');
      const mounts = await sn.view('v', 'c1');
      expect(mounts[0]!.options).toContain('ro');
      await read(mounts, (d) => {
        expect(() => writeFileSync(join(d, 'g'), 'y')).toThrow(/EROFS|read-only/);
      });
      expect(await sn.stat('v')).toMatchObject({ kind: Kind.View, parent: 'c1' });
      expect(await sn.mounts('v')).toEqual(mounts);
    });

    it('usage counts allocated bytes of the snapshot itself, not its parent', async () => {
      const big = Buffer.alloc(8 * 1024 * 1024, 7);
      await write(await sn.prepare('l1', ''), (d) => {
        writeFileSync(join(d, 'big'), big);
        mkdirSync(join(d, 'dir'));
        writeFileSync(join(d, 'dir', 'f'), 'f');
      });
      await sn.commit('c1', 'l1');
      const u1 = await sn.usage('c1');
      // Allocation accounting is per filesystem block of the image file, and a
      // sparse copy may allocate a few blocks fewer than the base: allow 2%.
      expect(u1.size).toBeGreaterThanOrEqual(8 * 1024 * 1024 * 0.98);
      expect(u1.size).toBeLessThan(64 * 1024 * 1024);
      // The three inodes the layer made (big, dir, dir/f), counted once and kept.
      expect(u1.inodes).toBe(3);
      expect(await sn.usage('c1')).toEqual(u1);
      await write(await sn.prepare('l2', 'c1'), (d) => writeFileSync(join(d, 'g'), 'g'));
      const u2 = await sn.usage('l2');
      expect(u2.size).toBeLessThan(4 * 1024 * 1024);
      await sn.commit('c2', 'l2');
      expect((await sn.usage('c2')).inodes).toBe(1);
    });

    it('removal: children first, then parents; keys are reusable and storage is released', async () => {
      await sn.prepare('l1', '');
      await sn.commit('c1', 'l1');
      await sn.prepare('l2', 'c1');
      await expect(sn.remove('c1')).rejects.toMatchObject({ code: 'failed-precondition' });
      await sn.remove('l2');
      await sn.remove('c1');
      const infos: Info[] = [];
      await sn.walk((i) => void infos.push(i));
      expect(infos).toEqual([]);
      await sn.prepare('c1', '');
    });

    it(`a chain of ${opts.chainDepth ?? 40} layers mounts as one device with every layer's file`, async () => {
      const depth = opts.chainDepth ?? 40;
      let parent = '';
      for (let i = 0; i < depth; i++) {
        await write(await sn.prepare(`a${i}`, parent), (d) => {
          writeFileSync(join(d, `f${i}`), String(i));
          if (i > 0 && i % 3 === 0) unlinkSync(join(d, `f${i - 1}`));
        });
        await sn.commit(`c${i}`, `a${i}`);
        parent = `c${i}`;
      }
      const mounts = await sn.prepare('top', parent);
      expect(mounts).toHaveLength(1);
      await read(mounts, (d) => {
        const expected = [];
        for (let i = 0; i < depth; i++) if (!((i + 1) % 3 === 0 && i + 1 < depth)) expected.push(`f${i}`);
        expect(readdirSync(d).sort()).toEqual(expected.sort());
        expect(readFileSync(join(d, `f${depth - 1}`), 'utf8')).toBe(String(depth - 1));
      });
    });

    it('committed content and metadata survive a restart', async () => {
      await write(await sn.prepare('l1', ''), (d) => writeFileSync(join(d, 'kept'), 'yes'));
      await sn.commit('c1', 'l1', { labels: { k: 'v' } });
      await sn.prepare('active', 'c1');
      const before = await sn.stat('c1');
      await opened.close();
      opened = await opts.open(root);
      sn = opened.sn;
      expect(await sn.stat('c1')).toEqual(before);
      expect((await sn.stat('active')).kind).toBe(Kind.Active);
      await read(await sn.view('v', 'c1'), (d) => expect(readFileSync(join(d, 'kept'), 'utf8')).toBe('yes'));
      await read(await sn.mounts('active'), (d) => expect(readFileSync(join(d, 'kept'), 'utf8')).toBe('yes'));
    });

    it('the max-size label gives a snapshot a larger filesystem', async () => {
      const plain = await sn.prepare('plain', '');
      const plainSize = await read(plain, (d) => statfsSync(d).blocks * statfsSync(d).bsize);
      const want = Math.ceil((plainSize * 2) / (1024 * 1024)) * 1024 * 1024;
      const big = await sn.prepare('big', '', { labels: { [LABEL_MAX_SIZE]: String(want) } });
      const bigSize = await read(big, (d) => statfsSync(d).blocks * statfsSync(d).bsize);
      expect(bigSize).toBeGreaterThan(plainSize * 1.5);
    });
  });
}
