// Bad input: every RPC with missing, empty, oversized or invalid fields gets
// the right gRPC code and a clear message, and changes nothing (List, the
// metadata rows and the image files are compared before and after). Then a
// seeded fuzz drives random request sequences against a real server and the
// in-memory model (test/helpers/model.ts), comparing after every step.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { rootReason } from '../../helpers/env.js';
import { KIND_ACTIVE, KIND_VIEW, TestClient, failure, grpc, type InfoMsg } from '../../helpers/client.js';
import { Model, Rng } from '../../helpers/model.js';
import { cleanDir } from './crash-run.js';
import { ServerProc, distReason } from '../../helpers/server.js';
import { recordFigures } from './figures.js';
import { imagesDirOf } from '../../../src/backends/blockfile/layout.js';

const reason = rootReason ?? distReason;
const S = grpc.status;
const FUZZ = Number(process.env.TSBLOCK_REL_FUZZ ?? 600);
const SEED = Number(process.env.TSBLOCK_REL_SEED ?? 20261125);

describe.skipIf(reason)(`bad input and fuzzing over gRPC${reason ? ` (skipped: ${reason})` : ''}`, () => {
  let dir: string;
  let proc: ServerProc;
  let c: TestClient;
  const root = () => join(dir, 'root');

  beforeAll(async () => {
    dir = mkdtempSync('/var/tmp/tsblock-badinput-');
    const started = await ServerProc.start({ root: root(), socket: join(dir, 's.sock'), log: join(dir, 'serve.log') });
    proc = started.proc;
    if (started.state !== 'up') throw new Error('server did not start');
    c = new TestClient(join(dir, 's.sock'));
  }, 60_000);

  afterAll(async () => {
    c?.close();
    await proc?.stop();
    expect(cleanDir(dir)).toEqual([]);
  });

  /** state is everything a bad request must not change. */
  async function state(): Promise<string> {
    const listed = (await c.list()).map((i) => ({ ...i, labels: Object.entries(i.labels).sort() })).sort((a, b) => (a.name < b.name ? -1 : 1));
    const db = new Database(join(root(), 'metadata.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT * FROM snapshots ORDER BY id').all();
      const labels = db.prepare('SELECT * FROM labels ORDER BY snapshot_id, name').all();
      const files = readdirSync(join(imagesDirOf(root()), 'snapshots')).sort();
      return JSON.stringify({ listed, rows, labels, files });
    } finally {
      db.close();
    }
  }

  it('answers every malformed request with the right code and a clear message, changing nothing', async () => {
    await c.prepare('base-a');
    await c.commit('layer-1', 'base-a');
    await c.prepare('active-1', 'layer-1');
    await c.view('view-1', 'layer-1');
    const before = await state();
    const big = 'x'.repeat(1024 * 1024);
    const many: Record<string, string> = {};
    for (let i = 0; i < 10_000; i++) many[`l${i}`] = 'v';
    const cases: [string, () => Promise<unknown>, number, RegExp][] = [
      ['Prepare empty key', () => c.call('Prepare', { key: '' }), S.INVALID_ARGUMENT, /key must not be empty/],
      ['Prepare missing key', () => c.call('Prepare', {}), S.INVALID_ARGUMENT, /key must not be empty/],
      ['Prepare key with NUL', () => c.prepare('a\0b'), S.INVALID_ARGUMENT, /NUL/],
      ['Prepare key with /..', () => c.prepare('ns/../../etc'), S.INVALID_ARGUMENT, /"\.\." segment/],
      ['Prepare key ending in /..', () => c.prepare('x/..'), S.INVALID_ARGUMENT, /"\.\." segment/],
      ['Prepare 8 KiB key', () => c.prepare('k'.repeat(8192)), S.INVALID_ARGUMENT, /longer than 4096/],
      ['Prepare 1 MiB label', () => c.prepare('new-1', '', { big }), S.INVALID_ARGUMENT, /greater than maximum size/],
      ['Prepare 10,000 labels', () => c.prepare('new-2', '', many), S.INVALID_ARGUMENT, /too many labels/],
      ['Prepare empty label key', () => c.prepare('new-3', '', { '': 'v' }), S.INVALID_ARGUMENT, /label key must not be empty/],
      ['Prepare bad max-size label', () => c.prepare('new-4', '', { 'containerd.io/snapshot/max-size': '12G' }), S.INVALID_ARGUMENT, /size in bytes/],
      ['Prepare duplicate key', () => c.prepare('active-1', 'layer-1'), S.ALREADY_EXISTS, /already exists/],
      ['Prepare on a missing parent', () => c.prepare('new-5', 'nope'), S.NOT_FOUND, /parent snapshot nope does not exist/],
      ['Prepare on an active parent', () => c.prepare('new-6', 'active-1'), S.INVALID_ARGUMENT, /not committed/],
      ['Prepare on a view parent', () => c.prepare('new-7', 'view-1'), S.INVALID_ARGUMENT, /not committed/],
      ['View on an active parent', () => c.view('new-8', 'active-1'), S.INVALID_ARGUMENT, /not committed/],
      ['View with NUL parent', () => c.view('new-9', 'p\0'), S.INVALID_ARGUMENT, /NUL/],
      ['Commit a view', () => c.commit('new-10', 'view-1'), S.FAILED_PRECONDITION, /not active/],
      ['Commit a committed snapshot', () => c.commit('new-11', 'layer-1'), S.FAILED_PRECONDITION, /not active/],
      ['Commit onto an existing name', () => c.commit('layer-1', 'active-1'), S.ALREADY_EXISTS, /already exists/],
      ['Commit a missing key', () => c.commit('new-12', 'nope'), S.NOT_FOUND, /not found/],
      ['Commit with empty name', () => c.call('Commit', { key: 'active-1', name: '' }), S.INVALID_ARGUMENT, /name must not be empty/],
      ['Commit with 1 MiB label', () => c.commit('new-13', 'active-1', { big }), S.INVALID_ARGUMENT, /greater than maximum size/],
      ['Remove a parent', () => c.remove('layer-1'), S.FAILED_PRECONDITION, /with child/],
      ['Remove a missing key', () => c.remove('nope'), S.NOT_FOUND, /not found/],
      ['Remove empty key', () => c.call('Remove', { key: '' }), S.INVALID_ARGUMENT, /must not be empty/],
      ['Remove key with /..', () => c.remove('../x'), S.INVALID_ARGUMENT, /segment/],
      ['Stat missing', () => c.stat('nope'), S.NOT_FOUND, /not found/],
      ['Stat NUL', () => c.stat('\0'), S.INVALID_ARGUMENT, /NUL/],
      ['Mounts of a committed snapshot', () => c.mounts('layer-1'), S.FAILED_PRECONDITION, /not active or view/],
      ['Mounts missing', () => c.mounts('nope'), S.NOT_FOUND, /not found/],
      ['Usage empty key', () => c.call('Usage', { key: '' }), S.INVALID_ARGUMENT, /must not be empty/],
      ['Update without info', () => c.call('Update', {}), S.INVALID_ARGUMENT, /info is required/],
      ['Update empty name', () => c.update({ name: '' }), S.INVALID_ARGUMENT, /required|must not be empty/],
      ['Update unknown kind', () => c.update({ name: 'layer-1', kind: 7 as InfoMsg['kind'] }), S.INVALID_ARGUMENT, /unknown snapshot kind 7/],
      ['Update a missing snapshot', () => c.update({ name: 'nope', labels: { a: 'b' } }), S.NOT_FOUND, /not found/],
      ['Update a forbidden field', () => c.update({ name: 'layer-1', parent: 'x' }, ['parent']), S.INVALID_ARGUMENT, /cannot update "parent"/],
      ['Update with 10,000 labels', () => c.update({ name: 'layer-1', labels: many }), S.INVALID_ARGUMENT, /too many labels/],
      ['Update with a 1 MiB label', () => c.update({ name: 'layer-1', labels: { big } }, ['labels.big']), S.INVALID_ARGUMENT, /greater than maximum size/],
      ['List with an unparsable filter', () => c.list(['name==']), S.INVALID_ARGUMENT, /filter|parse|unexpected|expected/i],
      ['List with a bad regexp', () => c.list(['name~=/(/']), S.INVALID_ARGUMENT, /regexp|regular|invalid/i],
      ['List with a bad operator', () => c.list(['name<>x']), S.INVALID_ARGUMENT, /./],
    ];
    const got: string[] = [];
    for (const [name, p, code, msg] of cases) {
      const f = await failure(p());
      const ok = f.code === code && msg.test(f.details);
      if (!ok) got.push(`${name}: got ${S[f.code]} ${JSON.stringify(f.details.slice(0, 200))}, want ${S[code]} ${msg}`);
    }
    expect(got).toEqual([]);
    expect(await state()).toBe(before);
    recordFigures('bad-input', { cases: cases.length, wrong: got.length });
  }, 60_000);

  it(`fuzzes ${FUZZ} random requests against the model with no divergence (seed ${SEED})`, async () => {
    const rng = new Rng(SEED);
    const model = new Model();
    for (const i of await c.list()) model.snaps.set(i.name, { kind: i.kind as 1 | 2 | 3, parent: i.parent, labels: i.labels, markers: [] });
    const names = () => (rng.chance(0.15) ? ['nope', '', 'a\0b', 'x/../y'] : [...model.keys(), `fz-${rng.int(40)}`]);
    const labelSets: Record<string, string>[] = [{}, { a: '1' }, { 'containerd.io/gc.root': 'x' }, { big: 'y'.repeat(5000) }, { '': 'e' }];
    const counts: Record<string, number> = {};
    let requests = 0;
    for (let i = 0; i < FUZZ; i++) {
      const key = rng.pick(names())!;
      const other = rng.pick(names())!;
      const labels = rng.chance(0.1) ? rng.pick(labelSets)! : rng.pick(labelSets.slice(0, 3))!;
      const badKey = (k: string) => k === '' || k.includes('\0') || k.split('/').includes('..');
      const badLabels = Object.keys(labels).some((k) => k === '' || k.length + (labels[k] ?? '').length > 4096);
      let want: number;
      let p: Promise<unknown>;
      let desc: string;
      switch (rng.int(8)) {
        case 0:
        case 1: {
          const parent = rng.chance(0.3) ? '' : other;
          desc = `Prepare(${key}, ${parent})`;
          want = badKey(key) || (parent !== '' && badKey(parent)) || badLabels ? S.INVALID_ARGUMENT : model.clone().create(KIND_ACTIVE, key, parent, labels);
          if (want === S.OK) model.create(KIND_ACTIVE, key, parent, labels);
          p = c.prepare(key, parent, labels);
          break;
        }
        case 2: {
          const parent = rng.chance(0.2) ? '' : other;
          desc = `View(${key}, ${parent})`;
          want = badKey(key) || (parent !== '' && badKey(parent)) ? S.INVALID_ARGUMENT : model.clone().create(KIND_VIEW, key, parent);
          if (want === S.OK) model.create(KIND_VIEW, key, parent);
          p = c.view(key, parent);
          break;
        }
        case 3:
        case 4: {
          const active = rng.pick(model.keys(KIND_ACTIVE)) ?? key;
          const name = `fz-${rng.int(60)}`;
          desc = `Commit(${name}, ${active})`;
          want = badKey(active) || badLabels ? S.INVALID_ARGUMENT : model.clone().commit(name, active, labels);
          if (want === S.OK) model.commit(name, active, labels);
          p = c.commit(name, active, labels);
          break;
        }
        case 5: {
          const target = rng.chance(0.6) ? (rng.pick(model.leaves()) ?? key) : key;
          desc = `Remove(${target})`;
          want = badKey(target) ? S.INVALID_ARGUMENT : model.clone().remove(target);
          if (want === S.OK) model.remove(target);
          p = c.remove(target);
          break;
        }
        case 6: {
          desc = `Stat(${key})`;
          want = badKey(key) ? S.INVALID_ARGUMENT : model.stat(key);
          p = c.stat(key);
          break;
        }
        default: {
          const lk = rng.pick(['a', 'b', 'containerd.io/gc.root'])!;
          const lv = rng.pick(['', 'v1', 'v2'])!;
          desc = `Update(${key}, labels.${lk}=${lv})`;
          want = badKey(key) ? S.INVALID_ARGUMENT : model.clone().updateLabels(key, { [lk]: lv }, [`labels.${lk}`]);
          if (want === S.OK) model.updateLabels(key, { [lk]: lv }, [`labels.${lk}`]);
          p = c.update({ name: key, labels: { [lk]: lv } }, [`labels.${lk}`]);
        }
      }
      requests++;
      const f = await failure(p);
      counts[S[f.code]!] = (counts[S[f.code]!] ?? 0) + 1;
      if (f.code !== want) throw new Error(`step ${i} ${desc}: got ${S[f.code]} (${f.details}), model expects ${S[want]}`);
      const d = model.diff(await c.list());
      if (d.length > 0) throw new Error(`step ${i} ${desc}: state diverged:\n  ${d.join('\n  ')}`);
    }
    // Image files agree with the metadata after all of it.
    const db = new Database(join(root(), 'metadata.db'), { readonly: true });
    const ids = (db.prepare('SELECT id FROM snapshots WHERE kind != 1').all() as { id: number }[]).map((r) => String(r.id)).sort();
    db.close();
    expect(readdirSync(join(imagesDirOf(root()), 'snapshots')).sort()).toEqual(ids);
    recordFigures('fuzz', { seed: SEED, requests, codes: counts, divergences: 0 });
  }, 600_000);
});
