// crash-run drives the crash-consistency campaign: a real `tsblock serve`
// child armed to SIGKILL itself at the r-th fault point it reaches (r random,
// seeded), a stream of Prepare/View/Commit/Remove/Cleanup requests against
// it until it dies, a restart on the same root (which may itself die in
// start-up reconciliation: one more crash), and after every successful start
// a full check:
//   - List agrees with the model (a request cut short may have happened or
//     not: both outcomes are accepted, then adopted);
//   - no `creating` rows remain; the image files are exactly the rows'
//     (no rm-*, no .tmp, no orphan, none missing); base.img is whole;
//   - no mount or loop device is left under the root;
//   - committed snapshots hold exactly their chain's marker files (mounted
//     read-only straight from the image the metadata names).
// The next request after every restart is the "containerd's next call works"
// check. Figures are returned for the report.

import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { mountOne, mountsUnder, releaseMount, unmount, type MountHandle } from '../../../src/sys/mount.js';
import { KIND_ACTIVE, KIND_COMMITTED, KIND_VIEW, TestClient, isRpcError, type MountMsg } from '../../helpers/client.js';
import { Model, Rng } from '../../helpers/model.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { ServerProc, tail } from '../../helpers/server.js';
import { DiffClient, LAYER_FILES, storeLayer } from './layer.js';
import { imagesDirOf } from '../../../src/backends/blockfile/layout.js';

/** CrashFigures is what a campaign reports. */
export interface CrashFigures {
  seed: number;
  kills: number;
  byPoint: Record<string, number>;
  startupKills: number;
  idleKills?: number;
  /** applyKills are kills inside the Diff service's Apply (apply:*). */
  applyKills?: number;
  requests: number;
  uncertain: number;
  checks: number;
  contentChecks: number;
  leaks: number;
  committedAtEnd: number;
}

/** CrashOptions size a campaign. */
export interface CrashOptions {
  dir: string;
  kills: number;
  seed: number;
  /** maxR bounds the random fault-point index (a cycle then reaches it within a few requests). */
  maxR?: number;
  log?: (s: string) => void;
}

/** TARGETED are the request-time fault points the targeted phase arms one by one. */
const TARGETED = [
  'core:create:after-insert', 'blockfile:create:after-clone', 'core:create:after-backend',
  'core:create:after-ready', 'core:commit:after-backend', 'core:commit:after-tx', 'core:flush:after-backend',
  'blockfile:detach:after-rename', 'core:remove:in-tx', 'core:remove:after-tx', 'blockfile:destroy:after-unlink',
  'core:remove:after-destroy', 'core:cleanup:after-backend',
] as const;

/**
 * APPLY_POINTS are the Diff service Apply's fault points, as armed: with the
 * snapshot just mounted, between two tar entries (mid-apply), after the last
 * entry with the snapshot still mounted, and after the unmount.
 */
const APPLY_POINTS = ['apply:after-mount', `apply:entry@${Math.ceil(LAYER_FILES / 2)}`, 'apply:after-apply', 'apply:after-unmount'] as const;

type Op =
  | { op: 'prepare'; key: string; parent: string }
  | { op: 'view'; key: string; parent: string }
  | { op: 'commit'; name: string; key: string }
  | { op: 'remove'; key: string }
  | { op: 'cleanup' };

/** runCrashCampaign runs until `kills` SIGKILLs at fault points have been survived. */
export async function runCrashCampaign(o: CrashOptions): Promise<CrashFigures> {
  const rng = new Rng(o.seed);
  const root = join(o.dir, 'root');
  const socket = join(o.dir, 's.sock');
  const logFile = join(o.dir, 'serve.log');
  const trace = join(o.dir, 'trace');
  const mnt = join(o.dir, 'mnt');
  mkdirSync(mnt, { recursive: true });
  const figures: CrashFigures = {
    seed: o.seed, kills: 0, byPoint: {}, startupKills: 0, requests: 0, uncertain: 0, checks: 0, contentChecks: 0, leaks: 0, committedAtEnd: 0,
  };
  const model = new Model();
  /** written marks actives whose marker file is in their filesystem. */
  const written = new Set<string>();
  let seq = 0;
  let proc: ServerProc | undefined;
  let client: TestClient | undefined;
  const traced = (): string[] => (existsSync(trace) ? readFileSync(trace, 'utf8').split('\n').filter(Boolean) : []);
  const countKill = (startup: boolean): void => {
    const points = traced();
    const point = points[points.length - 1] ?? '(unknown)';
    if (points.length !== figures.kills + 1) throw new Error(`the server died without a fault point (trace has ${points.length}, expected ${figures.kills + 1}); log:\n${tail(logFile)}`);
    figures.kills++;
    figures.byPoint[point] = (figures.byPoint[point] ?? 0) + 1;
    if (startup) figures.startupKills++;
  };

  /** start brings a server up with a random fault point armed; start-up deaths are counted kills. */
  const start = async (armed: boolean, faults?: string): Promise<void> => {
    for (;;) {
      const r = 1 + rng.int(o.maxR ?? 12);
      const { proc: p, state } = await ServerProc.start({ root, socket, log: logFile, trace, faults: faults ?? (armed ? `*@${r}` : undefined) });
      if (state === 'up') {
        proc = p;
        client?.close();
        client = new TestClient(socket);
        return;
      }
      const ex = await p.exited;
      if (ex.signal !== 'SIGKILL') throw new Error(`tsblock serve exited (${ex.code}/${ex.signal}) during start-up; log:\n${tail(logFile)}`);
      countKill(true);
    }
  };

  try {
    // Base creation: the first start of a fresh root dies at each base step in turn.
    for (const point of ['blockfile:base:after-truncate', 'blockfile:base:after-mkfs', 'blockfile:base:after-rename']) {
      const { proc: p, state } = await ServerProc.start({ root, socket, log: logFile, trace, faults: point });
      if (state !== 'died') {
        await p.kill9();
        if (point !== 'blockfile:base:after-rename') throw new Error(`fault point ${point} was not reached on a fresh root`);
      } else countKill(true);
    }
    await start(false);
    await check();

    // Targeted: each request-time fault point, armed alone, must be reached
    // by a fixed script of requests and survived.
    for (const point of TARGETED) {
      await proc!.kill9();
      await start(false, `${point}@1`);
      await check();
      const killsBefore = figures.kills;
      for (const op of script()) {
        if (await step(op, () => start(false))) break;
      }
      if (figures.kills === killsBefore) throw new Error(`fault point ${point} was not reached by the targeted script`);
      const last = traced().pop();
      if (last !== point) throw new Error(`armed ${point} but died at ${last}`);
    }

    // Apply: a layer applied inside the server (Diff service), killed at each apply step.
    for (const spec of APPLY_POINTS) await applyCrash(spec);

    let idleKills = 0;
    while (figures.kills < o.kills) {
      // A server that lived through a whole cycle is killed idle (a crash too,
      // not counted as a fault point) and restarted armed.
      await proc!.kill9();
      idleKills++;
      await start(true);
      await check();
      // Run requests until the armed point kills the server; each death is
      // followed by an armed restart, the check, and more requests.
      for (let i = 0; i < 12 && figures.kills < o.kills; i++) {
        if (await step(nextOp(), () => start(true))) i = 0;
      }
      if (figures.kills < o.kills) await check();
    }
    figures.idleKills = idleKills;
    await proc!.kill9();
    await start(false);
    await check(true);
    figures.committedAtEnd = model.keys(KIND_COMMITTED).length;
    // Leave nothing: remove every snapshot, leaves first.
    while (model.snaps.size > 0) {
      for (const k of model.leaves()) {
        await client!.remove(k);
        model.remove(k);
      }
    }
    await client!.cleanup();
    const files = readdirSync(join(imagesDirOf(root), 'snapshots'));
    if (files.length > 0) throw new Error(`files left after removing everything: ${files.join(' ')}`);
    return figures;
  } finally {
    client?.close();
    await proc?.stop();
  }

  /** step sends one request; true when the server died in it (then restarted, resolved and checked). */
  async function step(op: Op, restart: () => Promise<void>): Promise<boolean> {
    // An active whose Prepare was cut short has no marker yet: write it now
    // (Mounts hits no fault point), so its commit has content to check.
    if (op.op === 'commit' && model.snaps.get(op.key)?.kind === KIND_ACTIVE && !written.has(op.key)) await ensureMarker(op.key);
    const before = model.clone();
    const expected = apply(model, op);
    figures.requests++;
    let code: number;
    let mounts: MountMsg[] | undefined;
    try {
      mounts = await send(op);
      code = status.OK;
    } catch (err) {
      if (!isRpcError(err)) throw err;
      code = err.code;
    }
    if (!proc!.alive || code === status.UNAVAILABLE || code === status.CANCELLED || code === status.INTERNAL) {
      await proc!.exited;
      countKill(false);
      figures.uncertain++;
      await restart();
      await resolveUncertain(before, op);
      await check();
      return true;
    }
    if (code !== expected) throw new Error(`${JSON.stringify(op)}: code ${code}, model expects ${expected}`);
    if (op.op === 'prepare' && code === status.OK) writeMarker(op.key, mounts!);
    return false;
  }

  /**
   * applyCrash prepares an active snapshot, has the server apply a layer into
   * it with `spec` armed, and after the kill checks: nothing committed lost,
   * no mount or loop device left by the interrupted apply (check()), the
   * half-applied snapshot removable, and the same apply then working.
   */
  async function applyCrash(spec: string): Promise<void> {
    const point = spec.split('@')[0]!;
    await proc!.kill9();
    await start(false, spec);
    await check();
    const n = ++seq;
    const parent = model.keys(KIND_COMMITTED).pop() ?? '';
    const key = `a${n}`;
    const mounts = await client!.prepare(key, parent);
    model.create(KIND_ACTIVE, key, parent);
    const layer = await storeLayer(root, `a${n}`);
    figures.requests += 2;
    const diff = new DiffClient(socket);
    try {
      await diff.apply(layer, mounts);
      throw new Error(`Apply completed with ${spec} armed`);
    } catch (err) {
      if (!isRpcError(err)) throw err;
    } finally {
      diff.close();
    }
    await proc!.exited;
    countKill(false);
    figures.applyKills = (figures.applyKills ?? 0) + 1;
    const last = traced().pop();
    if (last !== point) throw new Error(`armed ${spec} but died at ${last}`);
    await start(false);
    await check();
    // The half-applied snapshot is still there (its Prepare completed) and removable.
    await client!.remove(key);
    model.remove(key);
    figures.requests++;
    await check();
    // The next apply of the same layer works and its commit holds every file.
    const key2 = `a${n}b`;
    const name = `ac${n}`;
    const m2 = await client!.prepare(key2, parent);
    model.create(KIND_ACTIVE, key2, parent);
    const again = new DiffClient(socket);
    let diffId: string;
    try {
      diffId = await again.apply(layer, m2);
    } finally {
      again.close();
    }
    if (diffId !== layer.digest) throw new Error(`Apply after the crash reported diffID ${diffId}, expected ${layer.digest}`);
    await client!.commit(name, key2);
    model.commit(name, key2);
    const v = `av${n}`;
    const vm = await client!.view(v, name);
    figures.requests += 5;
    try {
      withMount(vm[0]!, true, (dir) => {
        for (const [f, content] of Object.entries(layer.files)) {
          if (readFileSync(join(dir, f), 'utf8') !== content) throw new Error(`${name}: ${f} does not hold what the layer wrote`);
        }
      });
      figures.contentChecks++;
    } finally {
      await client!.remove(v);
    }
    await check();
  }

  /** script is the fixed request sequence of the targeted phase: it passes every request-time point. */
  function script(): Op[] {
    const parent = model.keys(KIND_COMMITTED).pop() ?? '';
    const n = ++seq;
    return [
      { op: 'prepare', key: `k${n}`, parent },
      { op: 'commit', name: `c${n}`, key: `k${n}` },
      { op: 'view', key: `v${n}`, parent: `c${n}` },
      { op: 'remove', key: `v${n}` },
      { op: 'prepare', key: `k${n}b`, parent: `c${n}` },
      { op: 'remove', key: `k${n}b` },
      { op: 'prepare', key: `k${n}c`, parent: '' },
      { op: 'commit', name: `c${n}c`, key: `k${n}c` },
      { op: 'remove', key: `c${n}c` },
      { op: 'cleanup' },
    ];
  }

  function nextOp(): Op {
    const committed = model.keys(KIND_COMMITTED);
    const actives = model.keys(KIND_ACTIVE);
    const roll = rng.int(100);
    if (roll < 30 || model.snaps.size < 3) {
      const parent = rng.chance(0.7) ? (rng.pick(committed) ?? '') : '';
      return { op: 'prepare', key: `k${++seq}`, parent };
    }
    if (roll < 55 && actives.length > 0) return { op: 'commit', name: `c${++seq}`, key: rng.pick(actives)! };
    if (roll < 65) return { op: 'view', key: `v${++seq}`, parent: rng.pick(committed) ?? '' };
    if (roll < 95) {
      const leaves = model.leaves();
      // Keep a few committed snapshots around so content checks have material.
      const target = rng.pick(committed.length > 4 ? leaves : leaves.filter((k) => model.snaps.get(k)!.kind !== KIND_COMMITTED));
      if (target) return { op: 'remove', key: target };
    }
    return { op: 'cleanup' };
  }

  function apply(m: Model, op: Op): number {
    switch (op.op) {
      case 'prepare':
        return m.create(KIND_ACTIVE, op.key, op.parent);
      case 'view':
        return m.create(KIND_VIEW, op.key, op.parent);
      case 'commit':
        return m.commit(op.name, op.key);
      case 'remove':
        return m.remove(op.key);
      case 'cleanup':
        return status.OK;
    }
  }

  async function send(op: Op): Promise<MountMsg[] | undefined> {
    const c = client!;
    switch (op.op) {
      case 'prepare':
        return c.prepare(op.key, op.parent);
      case 'view':
        return c.view(op.key, op.parent);
      case 'commit':
        await c.commit(op.name, op.key);
        return undefined;
      case 'remove':
        await c.remove(op.key);
        return undefined;
      case 'cleanup':
        await c.cleanup();
        return undefined;
    }
  }

  /** writeMarker writes m-<key> into a new active snapshot through the mount the server returned. */
  function writeMarker(key: string, mounts: MountMsg[]): void {
    withMount(mounts[0]!, false, (dir) => writeFileSync(join(dir, `m-${key}`), key));
    written.add(key);
    model.snaps.get(key)!.markers.push(key);
  }

  /** ensureMarker writes the marker of an active whose Prepare outcome was uncertain. */
  async function ensureMarker(key: string): Promise<void> {
    writeMarker(key, await client!.mounts(key));
  }

  /** resolveUncertain adopts whichever outcome the interrupted request had, failing on any third. */
  async function resolveUncertain(before: Model, op: Op): Promise<void> {
    const listed = await client!.list();
    const after = model; // already holds the "it happened" outcome
    if (after.diff(listed).length === 0) return;
    const d = before.diff(listed);
    if (d.length > 0) {
      throw new Error(`after a kill in ${JSON.stringify(op)} the state matches neither outcome:\n  ${d.join('\n  ')}\n  vs "done": ${after.diff(listed).join('; ')}`);
    }
    model.snaps.clear();
    for (const [k, v] of before.snaps) model.snaps.set(k, v);
  }

  /** check verifies metadata, files, kernel objects and (some) content; `all` checks every committed snapshot. */
  async function check(all = false): Promise<void> {
    figures.checks++;
    const listed = await client!.list();
    const d = model.diff(listed);
    if (d.length > 0) throw new Error(`List disagrees with the model:\n  ${d.join('\n  ')}`);
    const db = new Database(join(root, 'metadata.db'), { readonly: true, fileMustExist: true });
    let rows: { id: number; key: string; kind: number; state: string }[];
    try {
      rows = db.prepare('SELECT id, key, kind, state FROM snapshots').all() as typeof rows;
    } finally {
      db.close();
    }
    {
      const creating = rows.filter((r) => r.state !== 'ready');
      if (creating.length > 0) throw new Error(`rows left in state creating: ${creating.map((r) => r.key).join(' ')}`);
      const want = rows.filter((r) => r.kind !== KIND_VIEW).map((r) => String(r.id)).sort();
      const have = readdirSync(join(imagesDirOf(root), 'snapshots')).sort();
      if (JSON.stringify(want) !== JSON.stringify(have)) {
        throw new Error(`image files disagree with the metadata: rows ${want.join(' ')} files ${have.join(' ')}`);
      }
      const base = readdirSync(imagesDirOf(root)).filter((f) => f !== 'snapshots');
      if (JSON.stringify(base) !== '["base.img"]') throw new Error(`unexpected files next to the base image: ${base.join(' ')}`);
    }
    const leaks = leaksUnder(o.dir, { allowStores: true });
    if (leaks.length > 0) {
      figures.leaks += leaks.length;
      throw new Error(`leaked kernel objects: ${leaks.join(', ')}`);
    }
    const committed = rows.filter((r) => r.kind === KIND_COMMITTED);
    const sample = all ? committed : [rng.pick(committed), rng.pick(committed)].filter((r) => r !== undefined);
    for (const r of sample) {
      const want = [...(model.snaps.get(r.key)?.markers ?? [])].map((m) => `m-${m}`).sort();
      const image = join(imagesDirOf(root), 'snapshots', String(r.id));
      const have = withMount({ type: 'ext4', source: image, options: ['loop', 'ro', 'noload'] }, true, (dir) =>
        readdirSync(dir).filter((f) => f.startsWith('m-')).sort().map((f) => {
          if (readFileSync(join(dir, f), 'utf8') !== f.slice(2)) throw new Error(`${r.key}: marker ${f} has wrong content`);
          return f;
        }),
      );
      figures.contentChecks++;
      if (JSON.stringify(want) !== JSON.stringify(have)) {
        throw new Error(`committed ${r.key} (image ${r.id}) holds ${have.join(' ')}; expected ${want.join(' ')}`);
      }
    }
  }

  function withMount<T>(m: Pick<MountMsg, 'type' | 'source' | 'options'>, ro: boolean, fn: (dir: string) => T): T {
    const target = join(mnt, `t${seq}-${rng.int(1e9)}`);
    mkdirSync(target);
    let h: MountHandle | undefined;
    try {
      h = mountOne({ type: m.type, source: m.source, options: ro && !m.options.includes('ro') ? [...m.options, 'ro'] : m.options }, target);
      return fn(target);
    } finally {
      if (h) releaseMount(h);
      rmdirSync(target);
    }
  }
}

/** cleanDir removes a campaign directory after making sure nothing is mounted in it. */
export function cleanDir(dir: string): string[] {
  // A campaign may end on a kill: the store that daemon left mounted is
  // released here (the next start would have adopted it).
  for (const m of mountsUnder(dir)) if (m.endsWith('/store') && existsSync(`${m}.xfs`)) unmount(m);
  const leaks = leaksUnder(dir);
  if (leaks.length === 0) rmSync(dir, { recursive: true, force: true });
  return leaks;
}
