// Reliability on the devmapper backend (runs in the VM with the other
// test/devmapper files): SIGKILL a real `tsblock serve --backend devmapper`
// at the r-th core fault point (src/core/faults.ts: inside Prepare, View,
// Commit, Remove, Cleanup and start-up reconciliation), restart it, and
// check that List agrees with the model (an interrupted request may have
// happened or not), that every committed snapshot holds exactly its chain's
// marker files, and that at the end no dm device, loop device or mount is
// left. Then a short fuzz of random requests against the model.
// Sizes: TSBLOCK_REL_DM_KILLS (default 6), TSBLOCK_REL_DM_FUZZ (default 60).

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
import { ServerProc, tail } from '../integration/reliability/server.js';
import { recordFigures } from '../integration/reliability/figures.js';

const skipReason = !HAS_DM ? SKIP_REASON : !existsSync(CLI) ? 'dist/cli.js is not built (npm run build)' : '';
const KILLS = Number(process.env.TSBLOCK_REL_DM_KILLS ?? 6);
const FUZZ = Number(process.env.TSBLOCK_REL_DM_FUZZ ?? 60);
const SEED = Number(process.env.TSBLOCK_REL_SEED ?? 20261125);
const DM_ARGS = ['--backend', 'devmapper', '--data-size', '1G', '--base-size', '64M'];

describe.skipIf(skipReason !== '')(`devmapper reliability${skipReason ? ` (skipped: ${skipReason})` : ''}`, { timeout: 1_800_000 }, () => {
  it(`survives ${KILLS} kills at core fault points, then ${FUZZ} fuzzed requests, with nothing lost or leaked`, async () => {
    const dir = scratchDir('tsblock-dmrel-');
    const root = join(dir, 'root');
    const socket = join(dir, 's.sock');
    const log = join(dir, 'serve.log');
    const trace = join(dir, 'trace');
    const rng = new Rng(SEED);
    const model = new Model();
    const written = new Set<string>();
    const figures = { seed: SEED, kills: 0, byPoint: {} as Record<string, number>, requests: 0, uncertain: 0, contentChecks: 0, fuzzed: 0, leaks: 0 };
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
      expect(await start()).toBe(true);
      while (figures.kills < KILLS) {
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
          const roll = rng.int(10);
          const before = model.clone();
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
            const leaf = rng.pick(model.leaves().filter((k) => model.snaps.get(k)!.kind !== KIND_COMMITTED || committed.length > 3));
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
});
