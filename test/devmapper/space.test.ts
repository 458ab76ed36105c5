// Space on devmapper, in the VM (needs root and dm-thin): a container that
// fills its own volume gets ENOSPC inside it and nobody else notices; a pool
// that really runs dry fails writes at once (error_if_no_space, not a 60 s
// queue), keeps what was written before, refuses new snapshots with
// RESOURCE_EXHAUSTED, and serves again once space is freed.

import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { poolStatus } from '../../src/sys/dm-thin.js';
import { withTempMount } from '../../src/sys/mount.js';
import { failure, grpc, type MountMsg } from '../helpers/client.js';
import { opsSkipReason, startDmServer, stopDmServer, waitFor, type DmServer } from './ops-helpers.js';

const MiB = 1024 ** 2;
const why = opsSkipReason ? ` (skipped: ${opsSkipReason})` : '';
if (opsSkipReason) console.warn(`devmapper space tests skipped: ${opsSkipReason}`);

/** fill writes 1 MiB chunks of non-zero bytes up to `limit`, then fsyncs; it reports where it stopped. */
function fill(path: string, limit: number): { written: number; error?: string; ms: number } {
  const t0 = Date.now();
  const chunk = Buffer.alloc(MiB, 0xa5);
  const fd = openSync(path, 'w');
  let written = 0;
  try {
    while (written < limit) written += writeSync(fd, chunk);
    fsyncSync(fd);
    return { written, ms: Date.now() - t0 };
  } catch (err) {
    return { written, error: (err as NodeJS.ErrnoException).code, ms: Date.now() - t0 };
  } finally {
    try {
      closeSync(fd);
    } catch {
      // a close after a failed writeback may report the error again
    }
  }
}

const asMounts = (m: MountMsg[]) => m.map((x) => ({ type: x.type, source: x.source, options: x.options }));

describe.skipIf(opsSkipReason !== '')(`space on devmapper${why}`, { timeout: 900_000 }, () => {
  it('ENOSPC in one volume stays inside it: a sibling keeps writing, the pool stays rw', async () => {
    let s: DmServer | undefined;
    try {
      s = await startDmServer('tsblock-dmspace-', ['--data-size', '256M', '--base-size', '32M']);
      const c = s.client;
      const full = await c.prepare('full', '');
      const sibling = await c.prepare('sibling', '');
      const r = await withTempMount(asMounts(full), async (mnt) => fill(join(mnt, 'big'), 64 * MiB), { parent: s.dir });
      expect(r.error).toBe('ENOSPC');
      expect(r.written).toBeLessThan(32 * MiB);
      await withTempMount(asMounts(sibling), async (mnt) => {
        const ok = fill(join(mnt, 'small'), 4 * MiB);
        expect(ok.error).toBeUndefined();
        expect(ok.written).toBe(4 * MiB);
      }, { parent: s.dir });
      expect(poolStatus(s.pool)).toMatchObject({ mode: 'rw', failed: false, needsCheck: false });
      await c.remove('full');
      await c.remove('sibling');
    } finally {
      expect(await stopDmServer(s)).toEqual([]);
    }
  });

  it('a pool that runs dry fails writes at once, keeps earlier data, refuses Prepare, and recovers when space is freed', async () => {
    let s: DmServer | undefined;
    try {
      // 64 MiB of pool under volumes of 48 MiB each: the second fill cannot fit.
      s = await startDmServer('tsblock-dmdry-', ['--data-size', '64M', '--base-size', '48M']);
      const c = s.client;
      const keep = await c.prepare('keep', '');
      const hog = await c.prepare('hog', '');
      await withTempMount(asMounts(keep), async (mnt) => {
        expect(fill(join(mnt, 'data'), 24 * MiB).error).toBeUndefined();
      }, { parent: s.dir });
      const r = await withTempMount(asMounts(hog), async (mnt) => fill(join(mnt, 'data'), 44 * MiB), { parent: s.dir });
      expect(['EIO', 'ENOSPC']).toContain(r.error);
      // error_if_no_space: the error comes without the 60 s no_space_timeout queue.
      expect(r.ms).toBeLessThan(50_000);
      expect(poolStatus(s.pool).mode).toBe('out_of_data_space');
      // What was written and synced before is intact.
      await withTempMount(asMounts(await c.mounts('keep')), async (mnt) => {
        const b = readFileSync(join(mnt, 'data'));
        expect(b.length).toBe(24 * MiB);
        expect(b.every((x) => x === 0xa5)).toBe(true);
      }, { parent: s.dir });
      // The low-space guard (default reserve: 1%) refuses a new active snapshot.
      const refused = await failure(c.prepare('next', ''));
      expect(refused.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(refused.details).toMatch(/free/);
      // Removing the hog frees its blocks; the pool leaves out-of-space by itself.
      await c.remove('hog');
      expect(await waitFor(() => poolStatus(s!.pool).mode === 'rw', 60_000)).toBe(true);
      const next = await c.prepare('next', '');
      await withTempMount(asMounts(next), async (mnt) => {
        expect(fill(join(mnt, 'after'), 4 * MiB).error).toBeUndefined();
      }, { parent: s.dir });
      await c.remove('next');
      await c.remove('keep');
    } finally {
      expect(await stopDmServer(s)).toEqual([]);
    }
  });
});
