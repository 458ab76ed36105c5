// Concurrency: 32 clients run Prepare/Commit/View/Remove cycles on shared
// parents against one real server (10 s in npm test, TSBLOCK_REL_LOAD_SECONDS
// in scripts/reliability.sh). Only the expected errors may occur (racing
// Prepares of one key: AlreadyExists; removing a shared parent:
// FailedPrecondition), no call may hang (a deadline turns a deadlock into a
// failure), and at the end List, the metadata rows and the image files agree
// with what the clients did. A second server on the same root refuses to start.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { rootReason } from '../../helpers/env.js';
import { TestClient } from '../../helpers/client.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { cleanDir } from './crash-run.js';
import { ServerProc, distReason, tail } from '../../helpers/server.js';
import { recordFigures } from './figures.js';
import { runLoad } from './load-run.js';
import { imagesDirOf } from '../../../src/backends/blockfile/layout.js';

const reason = rootReason ?? distReason;
const SECONDS = Number(process.env.TSBLOCK_REL_LOAD_SECONDS ?? 10);
const CLIENTS = 32;

describe.skipIf(reason)(`concurrency and exclusivity${reason ? ` (skipped: ${reason})` : ''}`, () => {
  let dir: string;
  let proc: ServerProc;
  const socket = () => join(dir, 's.sock');
  const root = () => join(dir, 'root');

  beforeAll(async () => {
    dir = mkdtempSync('/var/tmp/tsblock-load-');
    const started = await ServerProc.start({ root: root(), socket: socket(), log: join(dir, 'serve.log') });
    proc = started.proc;
    if (started.state !== 'up') throw new Error(`server did not start:\n${tail(join(dir, 'serve.log'))}`);
  }, 60_000);

  afterAll(async () => {
    await proc?.stop();
    expect(cleanDir(dir)).toEqual([]);
  });

  it('refuses a second server on the same root, and a second server on a live socket', async () => {
    const second = await ServerProc.start({ root: root(), socket: join(dir, 'other.sock'), log: join(dir, 'second.log') });
    expect(second.state).toBe('died');
    expect((await second.proc.exited).code).not.toBe(0);
    expect(tail(join(dir, 'second.log'))).toMatch(/another tsblock holds/);
    // The socket answers (the first server), so wait for the child's exit, not the socket.
    const third = ServerProc.spawn({ root: join(dir, 'root2'), socket: socket(), log: join(dir, 'third.log') });
    const timer = setTimeout(() => void third.kill9(), 20_000);
    const ex = await third.exited;
    clearTimeout(timer);
    expect(ex.code).toBe(1);
    expect(tail(join(dir, 'third.log'))).toMatch(/another server is listening/);
    // Refused before it touched storage: no base image, no store on its root.
    expect(existsSync(join(dir, 'root2', 'blockfile'))).toBe(false);
    expect(existsSync(join(dir, 'root2', 'store.xfs'))).toBe(false);
    expect(existsSync(join(dir, 'root2', 'metadata.db'))).toBe(false);
    // The first server is unaffected.
    const c = new TestClient(socket());
    await c.prepare('still-works');
    await c.remove('still-works');
    c.close();
  }, 60_000);

  it(`${CLIENTS} clients for ${SECONDS}s: only expected errors, no deadlock, consistent state`, async () => {
    const setup = new TestClient(socket());
    const parents = ['p0', 'p1', 'p2'];
    for (const p of parents) {
      await setup.prepare(`${p}-a`);
      await setup.commit(p, `${p}-a`);
    }
    const { elapsed, operations: total, ops, expectedErrors, unexpected, kept } = await runLoad({ socket: socket(), clients: CLIENTS, seconds: SECONDS, parents });
    expect(unexpected.slice(0, 10)).toEqual([]);
    // Consistent end state: exactly the shared parents and the kept layers, no rows
    // half-made, image files = rows, nothing mounted or attached.
    const listed = (await setup.list()).map((i) => i.name).sort();
    expect(listed).toEqual([...kept].sort());
    const db = new Database(join(root(), 'metadata.db'), { readonly: true });
    const rows = db.prepare('SELECT id, state, kind FROM snapshots').all() as { id: number; state: string; kind: number }[];
    db.close();
    expect(rows.filter((r) => r.state !== 'ready')).toEqual([]);
    expect(readdirSync(join(imagesDirOf(root()), 'snapshots')).sort()).toEqual(rows.map((r) => String(r.id)).sort());
    // The server still runs: its store (if the root has one) is mounted.
    expect(leaksUnder(dir, { allowStores: true })).toEqual([]);
    recordFigures('load', { clients: CLIENTS, seconds: Math.round(elapsed), operations: total, perSecond: Math.round(total / elapsed), ops, expectedErrors, unexpectedErrors: unexpected.length, leaks: 0 });
    expect(total).toBeGreaterThan(CLIENTS * 2);
    setup.close();
  }, 600_000);
});
