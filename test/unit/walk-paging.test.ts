// Walk reads the store in pages (src/core/snapshotter.ts WALK_PAGE = 500):
// across page boundaries every snapshot comes back once, in id order, with
// its parent's key and its own labels, and filters still apply.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoreSnapshotter } from '../../src/core/snapshotter.js';
import { MetaStore } from '../../src/storage/metastore.js';
import { Kind, type Info } from '../../src/snapshots/snapshotter.js';
import { MemoryBackend } from '../fakes/memory-backend.js';

let dir: string;
let sn: CoreSnapshotter;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tsblock-walkpage-'));
  sn = await CoreSnapshotter.open({ store: new MetaStore(join(dir, 'metadata.db')), backend: new MemoryBackend() });
});

afterEach(async () => {
  await sn.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('paged walk', () => {
  it('returns 1,201 snapshots across pages once each, with parents and labels', async () => {
    await sn.prepare('base-a', '');
    await sn.commit('base', 'base-a', { labels: { role: 'base' } });
    for (let i = 0; i < 1200; i++) {
      await sn.view(`v${i}`, 'base', { labels: i % 500 === 499 || i % 500 === 0 ? { edge: String(i) } : {} });
    }
    await sn.remove('v250'); // a hole inside a page
    const seen: Info[] = [];
    await sn.walk((i) => void seen.push(i));
    expect(seen).toHaveLength(1200);
    expect(new Set(seen.map((i) => i.name)).size).toBe(1200);
    expect(seen[0]).toMatchObject({ name: 'base', parent: '', kind: Kind.Committed, labels: { role: 'base' } });
    const v499 = seen.find((i) => i.name === 'v499')!;
    const v500 = seen.find((i) => i.name === 'v500')!;
    expect(v499).toMatchObject({ parent: 'base', kind: Kind.View, labels: { edge: '499' } });
    expect(v500).toMatchObject({ parent: 'base', kind: Kind.View, labels: { edge: '500' } });
    expect(seen.find((i) => i.name === 'v1')!.labels).toEqual({});
    const edges: string[] = [];
    await sn.walk((i) => void edges.push(i.name), ['labels.edge']);
    expect(edges.sort()).toEqual(['v0', 'v1000', 'v499', 'v500', 'v999'].sort());
  });

  it('sees a Stat-identical Info for a snapshot on a later page', async () => {
    await sn.prepare('a', '');
    await sn.commit('c', 'a');
    for (let i = 0; i < 600; i++) await sn.view(`v${i}`, 'c');
    const got: Info[] = [];
    await sn.walk((i) => void got.push(i), ['name==v599']);
    expect(got).toEqual([await sn.stat('v599')]);
  });
});
