// The low-space guard over a backend that answers from a cached reading
// (devmapper's PoolSpace): a reading taken before space was freed must not
// refuse a Prepare; the core reads afresh before any refusal, and refuses
// only when the fresh reading is below the reserve too.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoreSnapshotter } from '../../src/core/snapshotter.js';
import { MetaStore } from '../../src/storage/metastore.js';
import type { FreeSpace } from '../../src/core/backend.js';
import { MemoryBackend } from '../fakes/memory-backend.js';

const GiB = 1024 ** 3;

/** CachedSpaceBackend reports `cached` unless asked for a fresh reading, which is `actual`. */
class CachedSpaceBackend extends MemoryBackend {
  cached = 0;
  actual = 0;
  reads: Array<'cached' | 'fresh'> = [];
  freeSpace(opts?: { fresh?: boolean }): FreeSpace {
    this.reads.push(opts?.fresh ? 'fresh' : 'cached');
    return { free: opts?.fresh ? this.actual : this.cached, total: 100 * GiB, what: 'test pool' };
  }
}

let dir: string;
let backend: CachedSpaceBackend;
let sn: CoreSnapshotter;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tsblock-space-'));
  backend = new CachedSpaceBackend();
  sn = await CoreSnapshotter.open({ store: new MetaStore(join(dir, 'metadata.db')), backend, minFree: { bytes: 10 * GiB } });
});

afterEach(async () => {
  await sn.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('low-space guard with a cached reading', () => {
  it('trusts a reading above the reserve without a fresh one', async () => {
    backend.cached = 50 * GiB;
    backend.actual = 50 * GiB;
    await sn.prepare('a', '');
    expect(backend.reads).toEqual(['cached']);
  });

  it('reads afresh before refusing: space freed since the cached reading counts', async () => {
    backend.cached = 1 * GiB; // taken before a removal freed space
    backend.actual = 40 * GiB;
    await sn.prepare('a', '');
    expect(backend.reads).toEqual(['cached', 'fresh']);
  });

  it('refuses when the fresh reading is below the reserve too, and makes nothing', async () => {
    backend.cached = 1 * GiB;
    backend.actual = 2 * GiB;
    await expect(sn.prepare('a', '')).rejects.toMatchObject({ code: 'resource-exhausted' });
    expect(backend.reads).toEqual(['cached', 'fresh']);
    await expect(sn.stat('a')).rejects.toMatchObject({ code: 'not-found' });
  });
});

describe('Commit below the reserve', () => {
  it('refuses to commit a snapshot whose storage ran below the reserve while it was written, and keeps it active', async () => {
    backend.cached = backend.actual = 50 * GiB;
    await sn.prepare('a', '');
    backend.cached = backend.actual = 1 * GiB; // the layer's writes filled the storage
    await expect(sn.commit('c', 'a')).rejects.toMatchObject({ code: 'resource-exhausted', message: expect.stringMatching(/cannot commit snapshot a as c: the storage ran below its reserve.*test pool has 1\.0 GiB free/) });
    expect((await sn.stat('a')).kind).toBe(2); // still active: the caller removes it
    await expect(sn.stat('c')).rejects.toMatchObject({ code: 'not-found' });
    expect(await sn.spaceShortage()).toMatch(/^the storage ran out of space: test pool has 1\.0 GiB free of 100 GiB, below the reserve of 10 GiB/);
    backend.cached = backend.actual = 50 * GiB;
    expect(await sn.spaceShortage()).toBeUndefined();
    await sn.commit('c', 'a');
    expect((await sn.stat('c')).kind).toBe(3);
  });
});
