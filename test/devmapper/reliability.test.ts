// Reliability on the devmapper backend (runs in the VM with the other
// test/devmapper files): SIGKILL a real `tsblock serve --backend devmapper`
// at the r-th core fault point (src/base/faults.ts: inside Prepare, View,
// Commit, Remove, Cleanup and start-up reconciliation), restart it, and
// check that List agrees with the model (an interrupted request may have
// happened or not), that every committed snapshot holds exactly its chain's
// marker files, and that at the end no dm device, loop device or mount is
// left. Then a short fuzz of random requests against the model.
// Kills also land in pool and base creation (devmapper:pool:*, devmapper:
// base:*: a fresh root's first starts) and inside a layer Apply run by the
// server's Diff service (apply:*), after which the half-applied snapshot must
// be removable and the same apply must work.
// A second test runs the concurrency workload (load-run.ts) with fewer
// clients for a shorter time (Node is ~20x slower under emulation) and the
// pool-full guard (--min-free above the pool's free data: RESOURCE_EXHAUSTED).
// Sizes: TSBLOCK_REL_DM_KILLS (default 6), TSBLOCK_REL_DM_FUZZ (default 60),
// TSBLOCK_REL_DM_CLIENTS (8), TSBLOCK_REL_DM_LOAD_SECONDS (20),
// TSBLOCK_REL_DM_APPLY=all (every apply point; default two),
// TSBLOCK_REL_DM_MAX_COMMITTED (10: more committed snapshots than this and the
// campaign removes leaves before it creates, keeping each check's cost flat).

import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { listDevices } from '../../src/sys/dm.js';
import { mountOne, releaseMount } from '../../src/sys/mount.js';
import { KIND_ACTIVE, KIND_COMMITTED, KIND_VIEW, TestClient, failure, isRpcError, type MountMsg } from '../helpers/client.js';
import { Model, Rng } from '../helpers/model.js';
import { leaksUnder, loopsUnder } from '../helpers/leaks.js';
import { detachLoop } from '../../src/sys/loop.js';
import { CLI } from './serve-helpers.js';
import { HAS_DM, SKIP_REASON, removeDevicesWithPrefix, scratchDir } from './helpers.js';
import { ServerProc, tail } from '../helpers/server.js';
import { recordFigures } from '../integration/reliability/figures.js';
import { DiffClient, LAYER_FILES, storeLayer } from '../integration/reliability/layer.js';
import { runLoad } from '../integration/reliability/load-run.js';
import Database from 'better-sqlite3';

const skipReason = !HAS_DM ? SKIP_REASON : !existsSync(CLI) ? 'dist/cli.js is not built (npm run build)' : '';
const KILLS = Number(process.env.TSBLOCK_REL_DM_KILLS ?? 6);
const FUZZ = Number(process.env.TSBLOCK_REL_DM_FUZZ ?? 60);
const SEED = Number(process.env.TSBLOCK_REL_SEED ?? 20261125);
const TIMEOUT_MS = Number(process.env.TSBLOCK_REL_DM_TIMEOUT_MS ?? 1_800_000);
const CLIENTS = Number(process.env.TSBLOCK_REL_DM_CLIENTS ?? 8);
const LOAD_SECONDS = Number(process.env.TSBLOCK_REL_DM_LOAD_SECONDS ?? 20);
/** Every check mounts every committed snapshot; past this many the campaign removes before it creates, so a long run's cost per kill stays flat. */
const MAX_COMMITTED = Number(process.env.TSBLOCK_REL_DM_MAX_COMMITTED ?? 10);
const DM_ARGS = ['--backend', 'devmapper', '--data-size', '1G', '--base-size', '64M'];
/** POOL_POINTS are reached in this order by the first starts of a fresh root. */
const POOL_POINTS = ['devmapper:pool:after-files', 'devmapper:pool:after-activate', 'devmapper:base:after-thin', 'devmapper:base:after-mkfs'];
const APPLY_POINTS =
  process.env.TSBLOCK_REL_DM_APPLY === 'all'
    ? ['apply:after-mount', `apply:entry@${Math.ceil(LAYER_FILES / 2)}`, 'apply:after-apply', 'apply:after-unmount']
    : [`apply:entry@${Math.ceil(LAYER_FILES / 2)}`, 'apply:after-apply'];

describe.skipIf(skipReason !== '')(`devmapper reliability${skipReason ? ` (skipped: ${skipReason})` : ''}`, { timeout: TIMEOUT_MS }, () => {
  it(`survives ${KILLS} kills at core fault points, then ${FUZZ} fuzzed requests, with nothing lost or leaked`, async () => {
    const dir = scratchDir('tsblock-dmrel-');
    const root = join(dir, 'root');
    const socket = join(dir, 's.sock');
    const log = join(dir, 'serve.log');
    const trace = join(dir, 'trace');
    const rng = new Rng(SEED);
    const model = new Model();
    const written = new Set<string>();
    const figures = { seed: SEED, kills: 0, byPoint: {} as Record<string, number>, poolKills: 0, applyKills: 0, requests: 0, uncertain: 0, contentChecks: 0, fuzzed: 0, leaks: 0 };
    let proc: ServerProc | undefined;
    let c: TestClient | undefined;
    let seq = 0;
    let poolPrefix = '';

    const start = async (faults?: string): Promise<boolean> => {
      c?.close();
      const r = await ServerProc.start({ root, socket, log, trace, faults, args: DM_ARGS, timeoutMs: 300_000 });
      proc = r.proc;
      c = new TestClient(socket);
      return r.state === 'up';
    };
    const counted = (): void => {
      const points = existsSync(trace) ? readFileSync(trace, 'utf8').split('\n').filter(Boolean) : [];
      const p = points[points.length - 1] ?? '(unknown)';
      if (points.length !== figures.kills + 1) throw new Error(`server died without a fault point; log:\n${tail(log)}`);
      figures.kills++;
      figures.byPoint[p] = (figures.byPoint[p] ?? 0) + 1;
    };
    const withMount = <T>(m: MountMsg, fn: (d: string) => T): T => {
      if (!poolPrefix) poolPrefix = m.source.slice('/dev/mapper/'.length).replace(/-snap-\d+$/, '');
      const t = join(dir, `m${++seq}`);
      mkdirSync(t);
      const h = mountOne({ type: m.type, source: m.source, options: m.options }, t);
      try {
        return fn(t);
      } finally {
        releaseMount(h);
        rmSync(t, { recursive: true, force: true });
      }
    };
    const check = async (): Promise<void> => {
      const d = model.diff(await c!.list());
      if (d.length > 0) throw new Error(`List disagrees with the model:\n  ${d.join('\n  ')}`);
      for (const key of model.keys(KIND_COMMITTED)) {
        const v = `check-${++seq}`;
        const have = withMount((await c!.view(v, key))[0]!, (dir2) => readdirSync(dir2).filter((f) => f.startsWith('m-')).sort());
        await c!.remove(v);
        figures.contentChecks++;
        const want = model.snaps.get(key)!.markers.map((m) => `m-${m}`).sort();
        expect(have, `content of ${key}`).toEqual(want);
      }
      // The owned pool's own data/metadata loop devices are the pool, not leaks.
      const leaks = leaksUnder(dir).filter((l) => !isPoolLoop(l));
      figures.leaks += leaks.length;
      expect(leaks).toEqual([]);
    };
    const isPoolLoop = (l: string): boolean => /-> .*\/root\/devmapper\/(data|metadata)$/.test(l);

    try {
      // Pool and base creation: the first starts of a fresh root die at each step in turn.
      for (const point of POOL_POINTS) {
        if (await start(point)) {
          await proc!.kill9();
          throw new Error(`fault point ${point} was not reached on a fresh root`);
        }
        counted();
        figures.poolKills++;
        expect(readFileSync(trace, 'utf8').trim().split('\n').pop()).toBe(point);
      }
      expect(await start()).toBe(true);
      await check();
      while (figures.kills < KILLS + POOL_POINTS.length) {
        await proc!.kill9();
        if (!(await start(`*@${1 + rng.int(10)}`))) {
          counted(); // died in start-up reconciliation
          expect(await start()).toBe(true);
          await check();
          continue;
        }
        for (let i = 0; i < 10; i++) {
          const committed = model.keys(KIND_COMMITTED);
          const actives = model.keys(KIND_ACTIVE);
          const crowded = committed.length >= MAX_COMMITTED;
          const roll = crowded ? 9 : rng.int(10);
          let before = model.clone();
          let send: () => Promise<MountMsg[] | void>;
          let want: number;
          let key = '';
          if (roll < 4 || actives.length === 0) {
            key = `k${++seq}`;
            const parent = rng.pick(committed) ?? '';
            want = model.create(KIND_ACTIVE, key, parent);
            send = () => c!.prepare(key, parent);
          } else if (roll < 7) {
            const a = rng.pick(actives)!;
            if (!written.has(a)) {
              withMount((await c!.mounts(a))[0]!, (d) => writeFileSync(join(d, `m-${a}`), a));
              written.add(a);
              model.snaps.get(a)!.markers.push(a);
              // The marker is on disk whatever happens to the Commit: a
              // kill that undoes the Commit must not undo the marker too.
              before = model.clone();
            }
            const name = `c${++seq}`;
            want = model.commit(name, a);
            send = () => c!.commit(name, a);
          } else if (roll < 8) {
            key = `v${++seq}`;
            const parent = rng.pick(committed) ?? '';
            want = model.create(KIND_VIEW, key, parent);
            send = () => c!.view(key, parent);
          } else {
            const leaves = model.leaves().filter((k) => model.snaps.get(k)!.kind !== KIND_COMMITTED || committed.length > 3);
            const committedLeaves = leaves.filter((k) => model.snaps.get(k)!.kind === KIND_COMMITTED);
            const leaf = rng.pick(crowded && committedLeaves.length > 0 ? committedLeaves : leaves);
            if (!leaf) continue;
            want = model.remove(leaf);
            send = () => c!.remove(leaf);
          }
          figures.requests++;
          let code: number = status.OK;
          let mounts: MountMsg[] | void = undefined;
          try {
            mounts = await send();
          } catch (err) {
            if (!isRpcError(err)) throw err;
            code = err.code;
          }
          if (!proc!.alive || code === status.UNAVAILABLE || code === status.INTERNAL || code === status.CANCELLED) {
            await proc!.exited;
            counted();
            figures.uncertain++;
            expect(await start()).toBe(true);
            const listed = await c!.list();
            if (model.diff(listed).length > 0) {
              const d = before.diff(listed);
              if (d.length > 0) throw new Error(`after a kill the state matches neither outcome:\n  ${d.join('\n  ')}`);
              model.snaps.clear();
              for (const [k, v] of before.snaps) model.snaps.set(k, v);
            }
            await check();
            break;
          }
          expect(code).toBe(want);
          if (mounts && key.startsWith('k') && code === status.OK) {
            withMount(mounts[0]!, (d) => writeFileSync(join(d, `m-${key}`), key));
            written.add(key);
            model.snaps.get(key)!.markers.push(key);
          }
        }
      }
      // Apply inside the server (Diff service), killed at its steps.
      for (const spec of APPLY_POINTS) {
        await proc!.kill9();
        expect(await start(spec)).toBe(true);
        const n = ++seq;
        const parent = model.keys(KIND_COMMITTED).pop() ?? '';
        const key = `a${n}`;
        const mounts = await c!.prepare(key, parent);
        model.create(KIND_ACTIVE, key, parent);
        const layer = await storeLayer(root, `a${n}`);
        const diff = new DiffClient(socket);
        const applied = await failure(diff.apply(layer, mounts, 600_000));
        diff.close();
        expect(applied.code, `Apply with ${spec} armed`).not.toBe(status.OK);
        await proc!.exited;
        counted();
        figures.applyKills++;
        figures.requests += 2;
        expect(await start()).toBe(true);
        await check(); // no mount or device left open by the interrupted apply
        await c!.remove(key); // the half-applied snapshot is removable
        model.remove(key);
        // The same apply works now, and its commit holds the layer.
        const m2 = await c!.prepare(`${key}b`, parent);
        model.create(KIND_ACTIVE, `${key}b`, parent);
        const again = new DiffClient(socket);
        try {
          expect(await again.apply(layer, m2, 600_000)).toBe(layer.digest);
        } finally {
          again.close();
        }
        await c!.commit(`ac${n}`, `${key}b`);
        model.commit(`ac${n}`, `${key}b`);
        const vm = await c!.view(`av${n}`, `ac${n}`);
        withMount(vm[0]!, (d) => {
          for (const [f, content] of Object.entries(layer.files)) expect(readFileSync(join(d, f), 'utf8'), f).toBe(content);
        });
        await c!.remove(`av${n}`);
        figures.requests += 6;
        figures.contentChecks++;
        await check();
      }

      await proc!.kill9();
      expect(await start()).toBe(true);
      await check();

      // Fuzz: random valid/invalid requests, compared with the model after each.
      for (let i = 0; i < FUZZ; i++) {
        const keys = [...model.keys(), `f${rng.int(20)}`, 'nope'];
        const k = rng.pick(keys)!;
        const other = rng.pick(keys)!;
        let want: number;
        let p: Promise<unknown>;
        switch (rng.int(4)) {
          case 0:
            want = model.create(KIND_ACTIVE, k, other === 'nope' ? '' : other);
            p = c!.prepare(k, other === 'nope' ? '' : other);
            break;
          case 1: {
            const name = `fc${rng.int(30)}`;
            want = model.commit(name, k);
            p = c!.commit(name, k);
            break;
          }
          case 2:
            want = model.remove(k);
            p = c!.remove(k);
            break;
          default:
            want = model.stat(k);
            p = c!.stat(k);
        }
        figures.fuzzed++;
        const f = await failure(p);
        if (f.code !== want) throw new Error(`fuzz step ${i}: got ${f.code} (${f.details}), model expects ${want}`);
      }
      const d = model.diff(await c!.list());
      expect(d).toEqual([]);
      // Remove everything: no thin device may remain but the pool.
      while (model.snaps.size > 0) for (const k of model.leaves()) (await c!.remove(k), model.remove(k));
      await c!.cleanup();
      if (poolPrefix) expect(listDevices().map((x) => x.name).filter((n) => n.startsWith(`${poolPrefix}-snap-`))).toEqual([]);
      recordFigures('devmapper', figures);
    } finally {
      c?.close();
      await proc?.stop();
      if (poolPrefix) await removeDevicesWithPrefix(poolPrefix);
      // With the pool gone, its two loop devices are released (the daemon leaves an owned pool active on exit).
      for (const l of loopsUnder(dir)) if (isPoolLoop(`loop ${l}`)) detachLoop(l.split(' ')[0]!);
      const leaks = leaksUnder(dir);
      rmSync(dir, { recursive: true, force: true });
      expect(leaks).toEqual([]);
    }
  });

  it(`${CLIENTS} clients for ${LOAD_SECONDS}s: only expected errors, consistent state, no leaked dm device; a full pool refuses Prepare`, async () => {
    const dir = scratchDir('tsblock-dmload-');
    const root = join(dir, 'root');
    const socket = join(dir, 's.sock');
    const log = join(dir, 'serve.log');
    const isPoolLoop = (l: string): boolean => /-> .*\/root\/devmapper\/(data|metadata)$/.test(l);
    let proc: ServerProc | undefined;
    let c: TestClient | undefined;
    let poolPrefix = '';
    try {
      const r = await ServerProc.start({ root, socket, log, args: DM_ARGS, timeoutMs: 300_000 });
      proc = r.proc;
      expect(r.state, tail(log)).toBe('up');
      c = new TestClient(socket);
      const parents = ['p0', 'p1', 'p2'];
      for (const p of parents) {
        const m = await c.prepare(`${p}-a`);
        poolPrefix = m[0]!.source.slice('/dev/mapper/'.length).replace(/-snap-\d+$/, '');
        await c.commit(p, `${p}-a`);
      }
      const res = await runLoad({ socket, clients: CLIENTS, seconds: LOAD_SECONDS, parents });
      expect(res.unexpected.slice(0, 10)).toEqual([]);
      expect((await c.list()).map((i) => i.name).sort()).toEqual([...res.kept].sort());
      const db = new Database(join(root, 'metadata.db'), { readonly: true });
      const rows = db.prepare('SELECT id, state FROM snapshots').all() as { id: number; state: string }[];
      const devs = db.prepare('SELECT snapshot_id AS id, state FROM dm_devices').all() as { id: number; state: string }[];
      db.close();
      expect(rows.filter((x) => x.state !== 'ready')).toEqual([]);
      expect(devs.filter((x) => x.state !== 'ready')).toEqual([]);
      // Every active thin device belongs to a live snapshot; committed ones are deactivated.
      const live = new Set(rows.map((x) => `${poolPrefix}-snap-${x.id}`));
      const active = listDevices().map((d) => d.name).filter((n) => n.startsWith(`${poolPrefix}-snap-`));
      expect(active.filter((n) => !live.has(n))).toEqual([]);
      const leaks = leaksUnder(dir).filter((l) => !isPoolLoop(l));
      expect(leaks).toEqual([]);
      recordFigures('devmapper-load', {
        clients: CLIENTS, seconds: Math.round(res.elapsed), operations: res.operations, perSecond: Math.round((res.operations / res.elapsed) * 10) / 10,
        ops: res.ops, expectedErrors: res.expectedErrors, unexpectedErrors: res.unexpected.length, leakedDevices: active.filter((n) => !live.has(n)).length, leaks: leaks.length,
      });
      expect(res.operations).toBeGreaterThan(CLIENTS);

      // Pool-full guard: a reserve above the pool's free data refuses new actives.
      c.close();
      await proc.stop();
      const r2 = await ServerProc.start({ root, socket, log, args: [...DM_ARGS, '--min-free', '2G'], timeoutMs: 300_000 });
      proc = r2.proc;
      expect(r2.state, tail(log)).toBe('up');
      c = new TestClient(socket);
      const refused = await failure(c.prepare('too-much', 'p0'));
      expect(refused.code, refused.details).toBe(status.RESOURCE_EXHAUSTED);
      recordFigures('devmapper-space', { minFree: '2G', prepare: status[refused.code], message: refused.details });
      for (const k of [...res.kept].filter((k) => !parents.includes(k))) await c.remove(k);
      for (const p of parents) await c.remove(p);
      await c.cleanup();
      expect(listDevices().map((d) => d.name).filter((n) => n.startsWith(`${poolPrefix}-snap-`))).toEqual([]);
    } finally {
      c?.close();
      await proc?.stop();
      if (poolPrefix) await removeDevicesWithPrefix(poolPrefix);
      for (const l of loopsUnder(dir)) if (isPoolLoop(`loop ${l}`)) detachLoop(l.split(' ')[0]!);
      const leaks = leaksUnder(dir);
      rmSync(dir, { recursive: true, force: true });
      expect(leaks).toEqual([]);
    }
  });
});
