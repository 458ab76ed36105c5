/**
 * tsblock runs `node dist/cli.js serve` the way systemd's tsblock.socket +
 * tsblock.service do: the test process owns the listening unix socket (made
 * with socket/bind/listen, never accepted on here) and passes it to each
 * daemon it starts as fd 3 with LISTEN_FDS=1, LISTEN_PID (set by `sh -c
 * 'LISTEN_PID=$$ … exec node …'`, so it is the daemon's pid) and
 * LISTEN_FDNAMES=tsblock; the daemon serves `--socket fd://tsblock`. The
 * socket therefore outlives a daemon restart: connections made while no
 * daemon runs wait in the socket's backlog for the next one.
 *
 * - `new ActivatedTsblock({repo, root, socket, backend, args, log})`
 * - `start({env, until})`: starts a daemon, resolves when its log says
 *   "serving" (or, with until: 'answering', as soon as it answers on the
 *   socket, before its store is open);
 *   `stop()`: SIGTERM, waits, true when it exited 0 without SIGKILL;
 *   `release()`: stop, close the socket fd and unlink the socket path.
 * - `cli(args)`: runs `node dist/cli.js` (ls, gc, …) with --config/--root.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, bindUnix, close, listen, socket } from '../../../ffi/socket.js';

/** TsblockOptions configure the daemon. */
export interface TsblockOptions {
  repo: string;
  root: string;
  socket: string;
  backend: 'blockfile' | 'devmapper';
  /** extra serve arguments, e.g. --base-size 1G. */
  args?: string[];
  log: string;
}

/** ActivatedTsblock is a socket-activated tsblock (restartable). */
export class ActivatedTsblock {
  private fd?: number;
  private proc?: ChildProcess;
  private exited?: Promise<number | null>;
  readonly configFile: string;
  readonly cliPath: string;

  constructor(readonly o: TsblockOptions) {
    this.cliPath = path.join(o.repo, 'dist', 'cli.js');
    // An empty config file: the machine's /etc/tsblock/config.toml never applies.
    this.configFile = path.join(path.dirname(o.log), 'tsblock-config.toml');
  }

  get pid(): number | undefined {
    return this.proc?.exitCode === null ? this.proc.pid : undefined;
  }

  /** env is a clean environment (no TSBLOCK_* of the caller's). */
  get env(): NodeJS.ProcessEnv {
    return { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: process.env.HOME ?? '/root' };
  }

  private hold(): number {
    if (this.fd !== undefined) return this.fd;
    fs.mkdirSync(path.dirname(this.o.socket), { recursive: true });
    // CLOEXEC: only the daemons get it (spawn's dup2 onto fd 3 clears the flag there).
    const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
    try {
      bindUnix(fd, this.o.socket);
      listen(fd, 128);
    } catch (err) {
      close(fd);
      throw err;
    }
    this.fd = fd;
    return fd;
  }

  /** start starts a daemon on the held socket and waits (60 s) for its "serving" (or "answering") log line; returns ms. */
  async start(opts: { env?: NodeJS.ProcessEnv; until?: 'serving' | 'answering' | 'handoff' } = {}): Promise<number> {
    const until = { serving: /"msg":"serving"/, answering: /"msg":"answering; opening the store"/, handoff: /"msg":"handoff: answering; asked the previous daemon to stop/ }[opts.until ?? 'serving'];
    const t0 = Date.now();
    const fd = this.hold();
    fs.writeFileSync(this.configFile, '');
    const from = fs.existsSync(this.o.log) ? fs.statSync(this.o.log).size : 0;
    const logFd = fs.openSync(this.o.log, 'a');
    const args = [
      this.cliPath, 'serve', '--config', this.configFile, '--root', this.o.root, '--socket', 'fd://tsblock',
      '--backend', this.o.backend, '--metrics-address', '', ...(this.o.args ?? []),
    ];
    const proc = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=tsblock exec "$0" "$@"', process.execPath, ...args], {
      stdio: ['ignore', logFd, logFd, fd],
      env: { ...this.env, ...opts.env },
    });
    fs.closeSync(logFd);
    this.proc = proc;
    this.exited = new Promise((r) => proc.once('exit', (code) => r(code)));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const text = readFrom(this.o.log, from);
      if (until.test(text)) return Date.now() - t0;
      if (proc.exitCode !== null) throw new Error(`tsblock exited (${proc.exitCode}): ${text.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`tsblock did not log ${until} in 60 s: ${text.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * handoff starts a successor with TSBLOCK_HANDOFF_FROM=<the running daemon>:
   * it answers on the held socket, then stops its predecessor and takes the
   * root over. Resolves at `until` (default "serving") with the ms it took and
   * the predecessor's exit (true when it exited 0 by itself).
   */
  async handoff(opts: { env?: NodeJS.ProcessEnv; until?: 'serving' | 'handoff' } = {}): Promise<{ ms: number; predecessorExited: Promise<boolean> }> {
    const old = this.proc;
    const oldExited = this.exited;
    if (!old || old.exitCode !== null || !oldExited) throw new Error('handoff: no running daemon');
    const ms = await this.start({ until: opts.until, env: { ...opts.env, TSBLOCK_HANDOFF_FROM: String(old.pid) } });
    return { ms, predecessorExited: oldExited.then((code) => code === 0) };
  }

  /** stop sends SIGTERM (SIGKILL after 30 s) and waits; true when it exited 0 by itself. */
  async stop(): Promise<boolean> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return proc ? proc.exitCode === 0 : true;
    proc.kill('SIGTERM');
    let killed = false;
    const t = setTimeout(() => {
      killed = true;
      proc.kill('SIGKILL');
    }, 30_000);
    const code = await this.exited;
    clearTimeout(t);
    return !killed && code === 0;
  }

  /** release stops the daemon and gives up the socket. */
  async release(): Promise<boolean> {
    const ok = await this.stop();
    if (this.fd !== undefined) {
      close(this.fd);
      this.fd = undefined;
    }
    fs.rmSync(this.o.socket, { force: true });
    return ok;
  }

  /** cli runs `tsblock VERB … --config … --root …` and returns stdout (throws on failure). */
  async cli(args: string[]): Promise<string> {
    const r = await execa(process.execPath, [this.cliPath, ...args, '--config', this.configFile, '--root', this.o.root, '--backend', this.o.backend], {
      env: this.env,
      reject: false,
      timeout: 120_000,
    });
    if (r.exitCode !== 0) throw new Error(`tsblock ${args.join(' ')}: exit ${r.exitCode}: ${`${r.stderr}\n${r.stdout}`.trim().slice(-1500)}`);
    return r.stdout;
  }

  /** snapshots is `tsblock ls --json`. */
  async snapshots(): Promise<{ key: string; kind: string; parent?: string }[]> {
    return JSON.parse(await this.cli(['ls', '--json'])) as { key: string; kind: string; parent?: string }[];
  }
}

/** readFrom returns a file's text from byte offset `from`. */
export function readFrom(file: string, from = 0): string {
  if (!fs.existsSync(file)) return '';
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const b = Buffer.alloc(Math.max(0, size - from));
    fs.readSync(fd, b, 0, b.length, from);
    return b.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}
