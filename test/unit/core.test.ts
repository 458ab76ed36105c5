// The core's rules, as containerd's testsuite and metastore suite check them,
// over an in-memory backend and a real SQLite store in a temp dir.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoreSnapshotter } from '../../src/core/snapshotter.js';
import { MetaStore } from '../../src/storage/metastore.js';
import { Kind, type Info } from '../../src/snapshots/snapshotter.js';
import { MemoryBackend } from '../fakes/memory-backend.js';

let dir: string;
let backend: MemoryBackend;
let sn: CoreSnapshotter;

async function open(): Promise<CoreSnapshotter> {
  return CoreSnapshotter.open({ store: new MetaStore(join(dir, 'metadata.db')), backend });
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tsblock-core-'));
  backend = new MemoryBackend();
  sn = await open();
});

afterEach(async () => {
  await sn.close();
  rmSync(dir, { recursive: true, force: true });
});

async function walkAll(filters?: string[]): Promise<Info[]> {
  const out: Info[] = [];
  await sn.walk((i) => void out.push(i), filters);
  return out;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code });
}

describe('prepare, view, commit', () => {
  it('prepare returns one mount and stats as active with labels and equal timestamps', async () => {
    const mounts = await sn.prepare('a', '', { labels: { l1: 'v1' } });
    expect(mounts).toHaveLength(1);
    const info = await sn.stat('a');
    expect(info).toMatchObject({ kind: Kind.Active, name: 'a', parent: '', labels: { l1: 'v1' } });
    expect(info.created).toEqual(info.updated);
  });

  it('commit turns the active key into a committed name, replacing labels, and the key is gone', async () => {
    await sn.prepare('a', '', { labels: { old: '1' } });
    await sn.commit('c', 'a', { labels: { fresh: '2' } });
    await expectCode(sn.stat('a'), 'not-found');
    const info = await sn.stat('c');
    expect(info).toMatchObject({ kind: Kind.Committed, name: 'c', labels: { fresh: '2' } });
    expect(await sn.usage('c')).toEqual({ size: expect.any(Number), inodes: expect.any(Number) });
  });

  it('a commit that leaves inodes out has them counted by the first Usage, once, and kept', async () => {
    backend.commitLeavesInodes = true;
    await sn.prepare('a', '');
    await sn.commit('c', 'a');
    const id = Number(backend.calls.find((c) => c.startsWith('commit '))!.split(' ')[1]);
    expect(backend.calls.filter((c) => c.startsWith('usage'))).toEqual([]);
    expect(await sn.usage('c')).toEqual({ size: 4096 * id, inodes: 1 });
    expect(await sn.usage('c')).toEqual({ size: 4096 * id, inodes: 1 });
    expect(backend.calls.filter((c) => c.startsWith('usage'))).toEqual([`usage ${id}`]);
    // Views and actives are unaffected.
    await sn.view('v', 'c');
    expect(await sn.usage('v')).toEqual({ size: 0, inodes: 0 });
  });

  it('a child records its parent; the chain is walkable', async () => {
    await sn.prepare('a', '');
    await sn.commit('c1', 'a');
    await sn.prepare('b', 'c1');
    await sn.commit('c2', 'b');
    await sn.view('v', 'c2');
    expect((await sn.stat('c2')).parent).toBe('c1');
    expect((await sn.stat('v')).parent).toBe('c2');
    expect((await sn.stat('v')).kind).toBe(Kind.View);
  });

  it('the parent must exist and be committed', async () => {
    await expectCode(sn.prepare('a', 'missing'), 'not-found');
    await sn.prepare('act', '');
    await expectCode(sn.prepare('b', 'act'), 'invalid-argument');
    await sn.view('v', '');
    await expectCode(sn.view('w', 'v'), 'invalid-argument');
  });

  it('a key that exists cannot be prepared or viewed again, nor a committed name reused', async () => {
    await sn.prepare('a', '');
    await expectCode(sn.prepare('a', ''), 'already-exists');
    await expectCode(sn.view('a', ''), 'already-exists');
    await sn.commit('c', 'a');
    await expectCode(sn.prepare('c', ''), 'already-exists');
    await sn.prepare('b', '');
    await expectCode(sn.commit('c', 'b'), 'already-exists');
    expect((await sn.stat('b')).kind).toBe(Kind.Active);
  });

  it('views and committed snapshots cannot be committed', async () => {
    await sn.view('v', '');
    await expectCode(sn.commit('x', 'v'), 'failed-precondition');
    await sn.prepare('a', '');
    await sn.commit('c', 'a');
    await expectCode(sn.commit('y', 'c'), 'failed-precondition');
    await expectCode(sn.commit('y', 'nope'), 'not-found');
  });

  it('mounts of a committed snapshot is refused; of a missing key is not found', async () => {
    await sn.prepare('a', '');
    await sn.commit('c', 'a');
    await expectCode(sn.mounts('c'), 'failed-precondition');
    await expectCode(sn.mounts('zz'), 'not-found');
  });

  it('a failed backend create leaves no row and no storage', async () => {
    backend.failNext.create = new Error('disk on fire');
    await expect(sn.prepare('a', '')).rejects.toThrow('disk on fire');
    await expectCode(sn.stat('a'), 'not-found');
    expect(await walkAll()).toEqual([]);
    await sn.prepare('a', '');
  });

  it('a failed backend commit leaves the active snapshot as it was', async () => {
    await sn.prepare('a', '', { labels: { x: 'y' } });
    backend.failNext.commit = new Error('sync failed');
    await expect(sn.commit('c', 'a')).rejects.toThrow('sync failed');
    expect(await sn.stat('a')).toMatchObject({ kind: Kind.Active, labels: { x: 'y' } });
    await expectCode(sn.stat('c'), 'not-found');
  });

  it('ENOSPC from the backend is reported as resource exhausted', async () => {
    backend.failNext.create = Object.assign(new Error('no space'), { code: 'ENOSPC' });
    await expectCode(sn.prepare('a', ''), 'resource-exhausted');
  });
});

describe('remove', () => {
  it('a parent with children cannot be removed; after the child goes it can', async () => {
    await sn.prepare('a', '');
    await sn.commit('c', 'a');
    await sn.prepare('b', 'c');
    await expectCode(sn.remove('c'), 'failed-precondition');
    await sn.remove('b');
    await sn.remove('c');
    expect(await walkAll()).toEqual([]);
    expect(backend.stored.size).toBe(0);
  });

  it('a removed key and a removed name can be used again', async () => {
    await sn.prepare('a', '');
    await sn.commit('c', 'a');
    await sn.remove('c');
    await sn.prepare('c', '');
    await sn.prepare('a', '');
    await sn.commit('c2', 'a');
  });

  it('a failed detach rolls the metadata back and the snapshot stays', async () => {
    await sn.prepare('a', '');
    backend.failNext.detach = new Error('rename failed');
    await expect(sn.remove('a')).rejects.toThrow('rename failed');
    expect((await sn.stat('a')).kind).toBe(Kind.Active);
  });

  it('a failed destroy still removes the snapshot; cleanup reclaims the storage', async () => {
    await sn.prepare('a', '');
    backend.failNext.destroy = new Error('busy');
    await sn.remove('a');
    await expectCode(sn.stat('a'), 'not-found');
    expect(backend.stored.size).toBe(1);
    await sn.cleanup();
    expect(backend.stored.size).toBe(0);
  });

  it('removing what does not exist is not found', async () => {
    await expectCode(sn.remove('nope'), 'not-found');
  });
});

describe('update', () => {
  beforeEach(async () => {
    await sn.prepare('a', '', { labels: { keep: '1', drop: '2' } });
  });

  it('no field paths replaces all labels and bumps updated only', async () => {
    const before = await sn.stat('a');
    const after = await sn.update({ ...before, labels: { only: 'x' } });
    expect(after.labels).toEqual({ only: 'x' });
    expect(after.created).toEqual(before.created);
    expect(after.updated).not.toEqual(before.updated);
    expect(await sn.stat('a')).toEqual(after);
  });

  it('labels.<key> sets or deletes one label', async () => {
    const info = await sn.stat('a');
    const after = await sn.update({ ...info, labels: { add: 'n' } }, ['labels.add', 'labels.drop']);
    expect(after.labels).toEqual({ keep: '1', add: 'n' });
  });

  it('"labels" replaces all; an unknown path is invalid and changes nothing', async () => {
    const info = await sn.stat('a');
    await expectCode(sn.update({ ...info, labels: { z: '1' } }, ['parent']), 'invalid-argument');
    expect((await sn.stat('a')).labels).toEqual({ keep: '1', drop: '2' });
    const after = await sn.update({ ...info, labels: { z: '1' } }, ['labels']);
    expect(after.labels).toEqual({ z: '1' });
  });

  it('updating a missing snapshot is not found', async () => {
    const info = await sn.stat('a');
    await expectCode(sn.update({ ...info, name: 'zz' }), 'not-found');
  });
});

describe('walk', () => {
  beforeEach(async () => {
    await sn.prepare('a', '', { labels: { l: '1' } });
    await sn.commit('p', 'a', { labels: { l: '2', 'containerd.io/gc.root': 'check-walk' } });
    await sn.prepare('b', 'p');
    await sn.view('v', 'p', { labels: { l: '3' } });
  });

  const names = (infos: Info[]) => infos.map((i) => i.name).sort();

  it('no filter walks everything, with the same Info as Stat', async () => {
    const all = await walkAll();
    expect(names(all)).toEqual(['b', 'p', 'v']);
    for (const info of all) expect(await sn.stat(info.name)).toEqual(info);
  });

  it('filters by kind, name, parent and labels, OR-ed across strings and AND-ed by commas', async () => {
    expect(names(await walkAll(['kind==committed']))).toEqual(['p']);
    expect(names(await walkAll(['kind==active', 'kind==view']))).toEqual(['b', 'v']);
    expect(names(await walkAll(['parent==p']))).toEqual(['b', 'v']);
    expect(names(await walkAll(['parent!=""']))).toEqual(['b', 'v']);
    expect(names(await walkAll(['labels.l']))).toEqual(['p', 'v']);
    expect(names(await walkAll(['labels.l==2']))).toEqual(['p']);
    expect(names(await walkAll(['labels."containerd.io/gc.root"==check-walk']))).toEqual(['p']);
    expect(names(await walkAll(['parent==p,kind==view']))).toEqual(['v']);
    expect(names(await walkAll(['name==p']))).toEqual(['p']);
  });

  it('a filter that does not parse is invalid', async () => {
    await expectCode(walkAll(['kind==']), 'invalid-argument');
  });
});

describe('input validation changes nothing', () => {
  it('rejects empty keys, NUL, ".." segments and oversized labels', async () => {
    await expectCode(sn.prepare('', ''), 'invalid-argument');
    await expectCode(sn.prepare('a\0b', ''), 'invalid-argument');
    await expectCode(sn.prepare('a/../b', ''), 'invalid-argument');
    await expectCode(sn.prepare('a', '', { labels: { k: 'x'.repeat(5000) } }), 'invalid-argument');
    const many: Record<string, string> = {};
    for (let i = 0; i < 10_000; i++) many[`k${i}`] = 'v';
    await expectCode(sn.prepare('a', '', { labels: many }), 'invalid-argument');
    await expectCode(sn.prepare('a', '', { labels: { 'containerd.io/snapshot/max-size': 'lots' } }), 'invalid-argument');
    expect(await walkAll()).toEqual([]);
    expect(backend.calls.filter((c) => c.startsWith('create'))).toEqual([]);
  });
});

describe('persistence and reconciliation', () => {
  it('committed snapshots survive a reopen with identical Info', async () => {
    await sn.prepare('a', '', { labels: { x: '1' } });
    await sn.commit('c', 'a', { labels: { y: '2' } });
    const before = await sn.stat('c');
    await sn.close();
    sn = await open();
    expect(await sn.stat('c')).toEqual(before);
  });

  it('a row left `creating` by a crash is removed at open, with its storage', async () => {
    const store = new MetaStore(join(dir, 'metadata.db'));
    store.db
      .prepare(
        "INSERT INTO snapshots (id, key, parent_id, kind, state, created_s, created_ns, updated_s, updated_ns) VALUES (77, 'half', NULL, 2, 'creating', 0, 0, 0, 0)",
      )
      .run();
    store.close();
    backend.stored.set(77, 'live');
    backend.stored.set(99, 'live'); // an orphan no row owns
    await sn.close();
    sn = await open();
    await expectCode(sn.stat('half'), 'not-found');
    expect(backend.stored.has(77)).toBe(false);
    expect(backend.stored.has(99)).toBe(false);
    await sn.prepare('half', '');
  });

  it('ids are never reused after removal', async () => {
    await sn.prepare('a', '');
    await sn.remove('a');
    await sn.prepare('a', '');
    const ids = backend.calls.filter((c) => c.startsWith('create')).map((c) => Number(c.split(' ')[1]));
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('concurrency on one key', () => {
  it('two prepares of the same key: exactly one wins', async () => {
    const results = await Promise.allSettled([sn.prepare('k', ''), sn.prepare('k', '')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected')[0]).toMatchObject({ reason: { code: 'already-exists' } });
  });
});

describe('Cleanup against concurrent operations', () => {
  it('a Prepare, Commit or Remove that races a slow Cleanup sweep keeps its storage', async () => {
    await sn.prepare('a', '');
    await sn.commit('base', 'a');
    await sn.prepare('to-commit', 'base');
    await sn.prepare('to-remove', 'base');
    let resume!: () => void;
    backend.cleanupStall = new Promise<void>((r) => (resume = r));
    const sweep = sn.cleanup();
    // Cleanup has read the live ids and is stalled inside the backend's sweep.
    await new Promise((r) => setImmediate(r));
    expect(backend.calls.at(-1)).toBe('cleanup');
    const ops = Promise.all([sn.prepare('during', 'base'), sn.commit('c', 'to-commit'), sn.remove('to-remove')]);
    await new Promise((r) => setImmediate(r));
    // None of them may start while the sweep works from its list of live ids.
    expect(backend.calls.at(-1)).toBe('cleanup');
    resume();
    await Promise.all([sweep, ops]);
    const during = sn.listRows().find((r) => r.key === 'during')!;
    expect(backend.stored.get(during.id)).toBe('live');
    expect((await sn.stat('c')).kind).toBe(Kind.Committed);
    await expectCode(sn.stat('to-remove'), 'not-found');
    // And the sweep after them finds nothing to reclaim.
    backend.cleanupStall = undefined;
    const before = [...backend.stored.keys()].sort();
    await sn.cleanup();
    expect([...backend.stored.keys()].sort()).toEqual(before);
  });
});

describe('remote snapshot protocol (containerd.io/snapshot.ref)', () => {
  it('Prepare answers AlreadyExists when a committed snapshot with that ref and parent exists', async () => {
    await sn.prepare('x', '');
    await sn.commit('sha256:base', 'x', { labels: { 'containerd.io/snapshot.ref': 'sha256:base' } });
    await sn.prepare('y', 'sha256:base');
    await sn.commit('sha256:top', 'y', { labels: { 'containerd.io/snapshot.ref': 'sha256:top' } });
    const ref = { labels: { 'containerd.io/snapshot.ref': 'sha256:top' } };
    await expectCode(sn.prepare('ns/9/extract-1', 'sha256:base', ref), 'already-exists');
    await expectCode(sn.stat('ns/9/extract-1'), 'not-found');
    // a different parent is a different chain: the layer is unpacked normally
    await sn.prepare('ns/9/extract-2', '', ref);
    const found: Info[] = [];
    await sn.walk((i) => void found.push(i), ['labels."containerd.io/snapshot.ref"==sha256:top,parent=="sha256:base"']);
    expect(found.map((i) => i.name)).toEqual(['sha256:top']);
  });

  it('a seed from tsblock import survives containerd\'s GC Remove until an unpack adopts it', async () => {
    const seed = { 'containerd.io/snapshot.ref': 'sha256:seed', 'tsblock.io/seed': 'example.com/img:1' };
    // tsblock import: extraction with the seed mark, committed with it.
    await sn.prepare('tsblock-extract-1 sha256:seed', '', { labels: seed });
    await sn.commit('sha256:seed', 'tsblock-extract-1 sha256:seed', { labels: seed });
    // containerd's GC (it does not know the seed yet): refused, nothing changes.
    await expect(sn.remove('sha256:seed')).rejects.toMatchObject({ code: 'failed-precondition', message: /seeded by tsblock import/ });
    expect((await sn.stat('sha256:seed')).labels).toEqual(seed);
    // A second import's Prepare with the same ref does not adopt it.
    await expectCode(sn.prepare('tsblock-extract-2 sha256:seed', '', { labels: seed }), 'already-exists');
    expect((await sn.stat('sha256:seed')).labels['tsblock.io/seed']).toBe('example.com/img:1');
    // containerd's unpacker: AlreadyExists, and from now on the snapshot is containerd's.
    await expectCode(sn.prepare('default/3/extract-9 sha256:seed', '', { labels: { 'containerd.io/snapshot.ref': 'sha256:seed' } }), 'already-exists');
    expect((await sn.stat('sha256:seed')).labels).toEqual({ 'containerd.io/snapshot.ref': 'sha256:seed' });
    await sn.remove('sha256:seed');
    await expectCode(sn.stat('sha256:seed'), 'not-found');
  });

  it('an active extraction snapshot carrying the seed mark is removable (a failed import cleans up)', async () => {
    await sn.prepare('tsblock-extract-3 sha256:x', '', { labels: { 'tsblock.io/seed': 'img' } });
    await sn.remove('tsblock-extract-3 sha256:x');
    expect(sn.listRows()).toEqual([]);
  });
});
