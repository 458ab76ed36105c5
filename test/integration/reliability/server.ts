// server runs a real `node dist/cli.js serve` child for the reliability
// tests: started with fault points armed or not, killed with SIGKILL, and
// restarted on the same root. A start the child does not survive (a fault
// point hit during start-up reconciliation or base creation) is reported,
// not thrown: it is one more crash the test counts.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { TestClient, isRpcError } from '../../helpers/client.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** REPO is the checkout root; CLI the built entry point. */
export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = join(REPO, 'dist', 'cli.js');

/** distReason explains why server-process tests cannot run (undefined when they can). */
export const distReason = (() => {
  if (!existsSync(CLI)) return 'needs a build (npm run build): dist/cli.js is missing';
  const built = join(REPO, 'dist', 'src', 'core', 'faults.js');
  if (!existsSync(built)) return 'needs a fresh build (npm run build): dist lacks src/core/faults.js';
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
      CLI, 'serve', '--backend', 'blockfile', '--root', o.root, '--socket', o.socket,
      '--base-size', '64M', '--metrics-address', '', '--log-level', 'warn', ...(o.args ?? []),
    ];
    const env: NodeJS.ProcessEnv = {};
    // The host's TSBLOCK_* settings must not reach the child (only ours).
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TSBLOCK_')) env[k] = v;
    env.TSBLOCK_CONFIG = '/dev/null';
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
