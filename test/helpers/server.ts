// server is the one way tests start a tsblock server:
//   - ServerProc runs a real `node dist/cli.js serve` child (any backend):
//     started with fault points armed or not, killed with SIGKILL, and
//     restarted on the same root. A start the child does not survive (a
//     fault point hit during start-up reconciliation or base creation) is
//     reported, not thrown: it is one more crash the test counts.
//   - serveInProcess serves a Snapshotter (and optionally the Diff service)
//     from this process on a unix socket, for tests that need the gRPC edge
//     over an in-process core.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadDiffService, loadSnapshotsService } from '../../src/proto/load.js';
import { snapshotsHandlers } from '../../src/server/service.js';
import { diffHandlers, type DiffServiceOptions } from '../../src/server/diff-service.js';
import { listenUnix, shutdownServer, type ListenOptions } from '../../src/server/listen.js';
import type { Snapshotter } from '../../src/snapshots/snapshotter.js';
import { TestClient, isRpcError } from './client.js';

/** REPO is the checkout root; CLI the built entry point. */
export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(REPO, 'dist', 'cli.js');

/** distReason explains why server-process tests cannot run (undefined when they can). */
export const distReason = (() => {
  if (!existsSync(CLI)) return 'needs a build (npm run build): dist/cli.js is missing';
  const built = join(REPO, 'dist', 'src', 'base', 'faults.js');
  if (!existsSync(built)) return 'needs a fresh build (npm run build): dist lacks src/base/faults.js';
  const src = join(REPO, 'src', 'core', 'snapshotter.ts');
  const out = join(REPO, 'dist', 'src', 'core', 'snapshotter.js');
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs - 1000) {
    return 'needs a fresh build (npm run build): dist is older than src/core/snapshotter.ts';
  }
  return undefined;
})();

/** StartOptions are one server start's settings. */
export interface StartOptions {
  root: string;
  socket: string;
  log: string;
  /** faults is TSBLOCK_FAULT_POINTS (unset: none armed). */
  faults?: string;
  trace?: string;
  args?: string[];
  env?: Record<string, string>;
  timeoutMs?: number;
  /**
   * backendArgs replace the backend flags (default: blockfile with a 64M
   * base), e.g. ['--backend', 'devmapper', '--data-size', '1G', '--base-size', '64M'].
   */
  backendArgs?: string[];
  /** quiet (default true) turns metrics off and logs warnings only; false keeps the daemon's defaults. */
  quiet?: boolean;
  /** hostEnv (default false) passes the host's TSBLOCK_* variables and config file through. */
  hostEnv?: boolean;
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** ServerProc is one `tsblock serve` child. */
export class ServerProc {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private dead = false;

  private constructor(readonly child: ChildProcess, readonly opts: StartOptions) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => (this.dead = true));
  }

  /** alive is false once the child has exited. */
  get alive(): boolean {
    return !this.dead;
  }

  /** spawn starts a child; ready() waits for its socket. */
  static spawn(o: StartOptions): ServerProc {
    const fd = openSync(o.log, 'a');
    const args = [
      CLI, 'serve', ...(o.backendArgs ?? ['--backend', 'blockfile', '--base-size', '64M']), '--root', o.root, '--socket', o.socket,
      ...(o.quiet === false ? [] : ['--metrics-address', '', '--log-level', 'warn']), ...(o.args ?? []),
    ];
    const env: NodeJS.ProcessEnv = {};
    if (o.hostEnv) Object.assign(env, process.env);
    else {
      // The host's TSBLOCK_* settings must not reach the child (only ours).
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TSBLOCK_')) env[k] = v;
      env.TSBLOCK_CONFIG = '/dev/null';
    }
    if (o.faults) env.TSBLOCK_FAULT_POINTS = o.faults;
    if (o.trace) env.TSBLOCK_FAULT_TRACE = o.trace;
    Object.assign(env, o.env ?? {});
    const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    return new ServerProc(child, o);
  }

  /** start spawns and waits: 'up' when the server serves, 'died' when the child exited first. */
  static async start(o: StartOptions): Promise<{ proc: ServerProc; state: 'up' | 'died' }> {
    const proc = ServerProc.spawn(o);
    return { proc, state: await proc.ready(o.timeoutMs ?? 30_000) };
  }

  /**
   * ready waits until the server serves: the socket answers before start-up
   * (reconciliation, base creation) is done, and calls wait for it, so a Stat
   * of a key nobody has must come back NOT_FOUND. A start-up that dies (a
   * fault point) or fails ends that call otherwise and the child exits.
   */
  async ready(timeoutMs: number): Promise<'up' | 'died'> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.dead) return 'died';
      if (existsSync(this.opts.socket) && (await canConnect(this.opts.socket))) {
        // A stale socket from the previous (killed) server also exists: only a
        // live child that answers counts.
        const c = new TestClient(this.opts.socket);
        try {
          await c.stat('tsblock-ready-probe');
        } catch (err) {
          if (isRpcError(err) && err.code === grpc.status.NOT_FOUND && !this.dead) return 'up';
        } finally {
          c.close();
        }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    this.child.kill('SIGKILL');
    await this.exited;
    throw new Error(`tsblock serve did not listen on ${this.opts.socket} within ${timeoutMs} ms; log:\n${tail(this.opts.log)}`);
  }

  /** kill9 kills the child with SIGKILL and waits for it. */
  async kill9(): Promise<void> {
    if (!this.dead) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** stop sends SIGTERM and waits (SIGKILL after timeoutMs). */
  async stop(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.dead) this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t);
    }
  }
}

/** tail returns the last lines of a log file, for failure messages. */
export function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** InProcessServer is a gRPC server this process runs for a test. */
export interface InProcessServer {
  server: grpc.Server;
  socket: string;
  /** close shuts the server down (waiting up to graceMs for calls in flight). */
  close(graceMs?: number): Promise<void>;
}

/** InProcessOptions choose what serveInProcess serves and how it listens. */
export interface InProcessOptions {
  /** diff also serves containerd's Diff service with these options. */
  diff?: DiffServiceOptions;
  /** log receives the services' one line per failed request. */
  log?: (line: object) => void;
  /** listen are listenUnix's options (socket mode, group). */
  listen?: ListenOptions;
}

/** serveInProcess serves sn's Snapshots service (and Diff when asked) on a unix socket at `socket`. */
export async function serveInProcess(sn: Snapshotter, socket: string, o: InProcessOptions = {}): Promise<InProcessServer> {
  const log = o.log ?? (() => {});
  const server = new grpc.Server();
  server.addService(loadSnapshotsService(), snapshotsHandlers(sn, log));
  if (o.diff) server.addService(loadDiffService(), diffHandlers(o.diff, log));
  await listenUnix(server, socket, o.listen);
  return { server, socket, close: (graceMs = 1000) => shutdownServer(server, graceMs) };
}
