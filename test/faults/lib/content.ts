/**
 * content checks what committed layers hold: each committed snapshot's image
 * (its image, or its thin device: Rig.withStorage) is mounted read-only
 * (`ro,noload`, so nothing is replayed or written) on a
 * directory of the test's, its whole tree is hashed (path, type, mode,
 * owner, size, file bytes, link targets) and it is unmounted again.
 *
 * - `treeSum(image, mnt)`: {sum, bytes} of one image.
 * - `LayerSums`: remembers the first sum seen per committed name;
 *   `check(rig)` hashes every committed snapshot now and lists each whose
 *   tree differs from the one first seen (or that no longer mounts).
 *
 * Test setup, not a tsblock code path: mount(8) keeps this independent of
 * the code under test.
 */

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { named, type Rig } from './rig.js';

/** treeSum hashes the tree of an ext4 image mounted read-only at mnt (made and removed here). */
export async function treeSum(image: string, mnt: string): Promise<{ sum: string; bytes: number }> {
  fs.mkdirSync(mnt, { recursive: true });
  // An image file through a loop device; a thin device (devmapper) as it is.
  const opts = fs.statSync(image).isBlockDevice() ? 'ro,noload' : 'loop,ro,noload';
  const m = await execa('mount', ['-t', 'ext4', '-o', opts, image, mnt], { reject: false });
  if (m.exitCode !== 0) throw new Error(`mount ${image}: ${m.stderr.trim()}`);
  try {
    const h = createHash('sha256');
    let bytes = 0;
    const walk = (rel: string) => {
      const names = fs.readdirSync(path.join(mnt, rel)).sort();
      for (const n of names) {
        const r = path.join(rel, n);
        const p = path.join(mnt, r);
        const st = fs.lstatSync(p);
        h.update(`${r}\0${st.mode}\0${st.uid}:${st.gid}\0${st.size}\0${st.nlink}\0`);
        if (st.isSymbolicLink()) h.update(fs.readlinkSync(p));
        else if (st.isFile()) {
          const b = fs.readFileSync(p);
          bytes += b.length;
          h.update(createHash('sha256').update(b).digest());
        } else if (st.isDirectory()) walk(r);
        h.update('\n');
      }
    };
    walk('.');
    return { sum: h.digest('hex'), bytes };
  } finally {
    await execa('umount', [mnt], { reject: false });
    fs.rmSync(mnt, { recursive: true, force: true });
  }
}

/** LayerSums keeps the first tree sum of every committed snapshot name. */
export class LayerSums {
  readonly first = new Map<string, string>();
  /** bytes counts every file byte hashed (the "bytes checked" figure). */
  bytes = 0;
  layers = 0;

  /** check hashes every committed snapshot and lists those that changed since first seen. */
  async check(rig: Rig): Promise<string[]> {
    const bad: string[] = [];
    const mnt = path.join(rig.work, 'check-mnt');
    for (const s of await rig.snaps()) {
      if (s.kind !== 'committed' || !s.storage) continue;
      const name = s.key.replace(/^[^/]+\/\d+\//, '');
      let sum: string;
      try {
        const r = await rig.withStorage(s, (dev) => treeSum(dev, mnt));
        sum = r.sum;
        this.bytes += r.bytes;
        this.layers++;
      } catch (err) {
        bad.push(`${name}: ${(err as Error).message}`);
        continue;
      }
      const was = this.first.get(name);
      if (was === undefined) this.first.set(name, sum);
      else if (was !== sum) bad.push(`${name}: tree changed (${was.slice(0, 12)} → ${sum.slice(0, 12)})`);
    }
    return bad;
  }
}

/**
 * expectIntact is the check every fault case ends with: each of chainIds is
 * a committed snapshot, containerd and tsblock agree, nothing is leaked, and
 * every committed layer's tree is the one the reference pull recorded.
 */
export async function expectIntact(rig: Rig, chainIds: string[], sums: LayerSums, what: string): Promise<void> {
  const list = await rig.snaps();
  for (const c of chainIds) expect(named(list, c)?.kind, `${what}: ${c}`).toBe('committed');
  expect(await rig.disagreement(), `${what}: containerd vs tsblock`).toEqual([]);
  expect(rig.leaks(), `${what}: leaks`).toEqual([]);
  expect(await sums.check(rig), `${what}: committed layers`).toEqual([]);
}
