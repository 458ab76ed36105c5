// ops-helpers: one real `tsblock serve --backend devmapper` per test file
// (small owned pool under a scratch dir) for the applier and operator-CLI
// tests, the CLI flags that select the same root, a tree of a committed
// snapshot read through a View, and teardown that releases every dm device,
// pool loop and mount even when a test failed.

import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { defaultOwnedPoolName } from '../../src/backends/devmapper/config.js';
import { listDevices } from '../../src/sys/dm.js';
import { detachLoop } from '../../src/sys/loop.js';
import { withTempMount } from '../../src/sys/mount.js';
import { TestClient } from '../helpers/client.js';
import { leaksUnder, loopsUnder } from '../helpers/leaks.js';
import { ServerProc, tail } from '../helpers/server.js';
import { listTree } from '../integration/apply/tree.js';
import { CLI } from './serve-helpers.js';
import { HAS_DM, SKIP_REASON, removeDevicesWithPrefix, scratchDir } from './helpers.js';

/** DM_SERVE_ARGS is the small pool every devmapper test uses. */
export const DM_SERVE_ARGS = ['--backend', 'devmapper', '--data-size', '1G', '--base-size', '64M'];

/** opsSkipReason is why these files skip ('' when they run). */
export const opsSkipReason = !HAS_DM ? SKIP_REASON : !existsSync(CLI) ? 'dist/cli.js is not built (npm run build)' : '';

/** isPoolLoop tells a pool's own data/metadata loop (the pool, not a leak) from a leaked one. */
export function isPoolLoop(leak: string): boolean {
  return /-> .*\/devmapper\/(data|metadata)$/.test(leak);
}

/** activeSnapDevices lists the live thin devices of a pool (snapshots, not the pool or base). */
export function activeSnapDevices(pool: string): string[] {
  return listDevices()
    .map((d) => d.name)
    .filter((n) => n.startsWith(`${pool}-snap-`))
    .sort();
}

/** waitFor polls cond every 50 ms until it holds (true) or ms passed (false). */
export async function waitFor(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** DmServer is a running devmapper server on a scratch root. */
export interface DmServer {
  dir: string;
  root: string;
  socket: string;
  log: string;
  /** pool is the owned thin-pool's dm name (derived from root). */
  pool: string;
  /** flags select this root, socket and backend for the CLI verbs. */
  flags: string[];
  proc: ServerProc | undefined;
  client: TestClient;
  /** metricsArgs are the serve flags given beyond `flags` (not for CLI verbs). */
  metricsArgs: readonly string[];
  /** leaks lists mounts and loops under dir other than the pool's own loops. */
  leaks(): string[];
}

/** startDmServer starts `tsblock serve --backend devmapper` on a fresh scratch root. */
export async function startDmServer(prefix: string, extraArgs: readonly string[] = []): Promise<DmServer> {
  const dir = scratchDir(prefix);
  const root = join(dir, 'root');
  const socket = join(dir, 's.sock');
  const log = join(dir, 'serve.log');
  const s: DmServer = {
    dir,
    root,
    socket,
    log,
    pool: defaultOwnedPoolName(root),
    flags: ['--root', root, '--socket', socket, ...DM_SERVE_ARGS],
    metricsArgs: extraArgs,
    proc: undefined,
    client: new TestClient(socket, 'tsblock', 'ops'),
    leaks: () => leaksUnder(dir).filter((l) => !isPoolLoop(l)),
  };
  const r = await ServerProc.start({ root, socket, log, args: [...DM_SERVE_ARGS, ...extraArgs], timeoutMs: 300_000 });
  s.proc = r.proc;
  if (r.state !== 'up') {
    await stopDmServer(s);
    throw new Error(`tsblock serve --backend devmapper died at start; log:\n${tail(log)}`);
  }
  return s;
}

/**
 * stopDmServer stops the server and removes whatever is left: every device
 * of the pool (children first, then the pool), the pool's loops, the dir.
 * It returns the leaks found before that forced cleanup (must be none).
 */
export async function stopDmServer(s: DmServer | undefined): Promise<string[]> {
  if (!s) return [];
  s.client.close();
  await s.proc?.stop();
  // An idle daemon removes its devices and its pool at exit; a thin device
  // still there is a leak. The pool's loops are autoclear and may take a
  // moment to go once the pool is gone.
  const leftDevices = listDevices()
    .map((d) => d.name)
    .filter((n) => n.startsWith(`${s.pool}-`));
  const leaks = [...leaksUnder(s.dir).filter((l) => !isPoolLoop(l)), ...leftDevices.map((n) => `dm ${n}`)];
  await removeDevicesWithPrefix(s.pool);
  if (!(await waitFor(() => loopsUnder(s.dir).length === 0, 5_000))) {
    for (const l of loopsUnder(s.dir)) {
      leaks.push(`loop ${l}`);
      try {
        detachLoop(l.split(' ')[0]!);
      } catch (err) {
        console.error(`teardown: detach ${l}: ${String(err)}`);
      }
    }
  }
  if (leaks.length > 0) console.error(`server log:\n${tail(s.log, 60)}`);
  rmSync(s.dir, { recursive: true, force: true });
  return leaks;
}

let views = 0;

/** treeOf lists a committed snapshot's tree (with mtimes) through a temporary read-only View. */
export async function treeOf(s: DmServer, name: string): Promise<string[]> {
  const key = `tree-view-${++views}`;
  const m = await s.client.view(key, name);
  try {
    return await withTempMount(m, async (d) => listTree(d, { mtimes: true }), { readOnly: true, parent: s.dir });
  } finally {
    await s.client.remove(key);
  }
}
