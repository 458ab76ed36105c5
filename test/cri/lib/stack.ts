/**
 * stack runs a private containerd (its own root, state, sockets and config;
 * no kubelet) with `tsblock serve` as a proxy snapshotter, and drives it
 * with ctr and crictl. Everything lives under one directory in /var/tmp;
 * `stop()` ends what it started (by pid), unmounts what is mounted below the
 * directory, detaches loop devices backed by files below it, and removes it.
 *
 * - `startTsblock(dir)`: `node dist/cli.js serve --root dir/tsblock --socket dir/tsblock.sock`.
 * - `startContainerd(tools, dir, config)`: writes dir/config.toml (TOML text) and
 *   waits for `ctr version`; `restart()` stops and starts it on the same config.
 * - `leaks(dir)`: mounts and loop devices still referring to dir (empty when clean).
 */

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { CLI, type ContainerdTools } from './tools.js';

const execFileP = promisify(execFile);

export interface Proc {
  proc: ChildProcess;
  log: string;
  stop(): Promise<void>;
}

function spawnLogged(cmd: string, args: string[], log: string, env?: NodeJS.ProcessEnv): Proc {
  const fd = fs.openSync(log, 'a');
  const proc = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: env ?? process.env });
  fs.closeSync(fd);
  const exited = new Promise<void>((r) => {
    if (proc.exitCode !== null) r();
    proc.once('exit', () => r());
  });
  return {
    proc,
    log,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

export async function run(cmd: string, args: string[], opts: { timeout?: number; input?: string } = {}): Promise<string> {
  try {
    const p = execFileP(cmd, args, { encoding: 'utf8', timeout: opts.timeout ?? 120_000, maxBuffer: 64 << 20 });
    if (opts.input !== undefined) {
      p.child.stdin?.end(opts.input);
    }
    const { stdout } = await p;
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${path.basename(cmd)} ${args.join(' ')} failed: ${(err.stderr || err.message).trim().slice(0, 2000)}`);
  }
}

async function waitFor(what: string, ms: number, probe: () => Promise<boolean>, logFile?: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      const tail = logFile && fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-3000) : '';
      throw new Error(`${what} did not come up in ${ms} ms\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Tsblock is a running `tsblock serve`. */
export interface Tsblock extends Proc {
  root: string;
  socket: string;
  /** `tsblock ls --json` against the root: the snapshots' keys. */
  keys(): Promise<string[]>;
}

export async function startTsblock(dir: string, opts: { metrics?: string } = {}): Promise<Tsblock> {
  const root = path.join(dir, 'tsblock');
  const socket = path.join(dir, 'tsblock.sock');
  const log = path.join(dir, 'tsblock.log');
  const p = spawnLogged(process.execPath, [CLI, 'serve', '--root', root, '--socket', socket, '--base-size', '512M', '--metrics-address', opts.metrics ?? ''], log);
  await waitFor('tsblock serve', 30_000, async () => fs.existsSync(socket) && p.proc.exitCode === null, log);
  const keys = async () => {
    const out = await run(process.execPath, [CLI, 'ls', '--root', root, '--socket', socket, '--json']);
    const j = JSON.parse(out) as unknown;
    const rows = (Array.isArray(j) ? j : ((j as { snapshots?: unknown[] }).snapshots ?? [])) as { key?: string; name?: string }[];
    return rows.map((r) => r.key ?? r.name ?? JSON.stringify(r));
  };
  return { ...p, root, socket, keys };
}

/** freePort is a TCP port on 127.0.0.1 nobody listens on (now). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Containerd is a running private containerd. */
export interface Containerd extends Proc {
  address: string;
  tools: ContainerdTools;
  configFile: string;
  ctr(args: string[], opts?: { timeout?: number }): Promise<string>;
  restart(): Promise<void>;
  /** the log lines at level error/fatal (and panics), less containerd's own known races (UNRELATED_RACES) */
  errorLines(): string[];
}

/**
 * UNRELATED_RACES are error lines containerd logs by a race of its own that no
 * snapshotter takes part in: the CRI metrics collector asks a task's shim for
 * stats while the task is being removed, and the shim's ttrpc connection is
 * already closed (seen in CI, 2.4.2, after `crictl rm`), or its task or cgroup is
 * already gone, and the error text then depends on how far the removal got. The
 * stats call goes to the shim alone (tasks service, getTasksMetrics), so any
 * error on that line is the race. They are printed, not counted.
 */
const UNRELATED_RACES: readonly RegExp[] = [/msg="collecting metrics for [0-9a-f]{64}"/];

export async function startContainerd(tools: ContainerdTools, dir: string, config: string): Promise<Containerd> {
  const configFile = path.join(dir, 'config.toml');
  fs.writeFileSync(configFile, config);
  const address = path.join(dir, 'containerd.sock');
  const log = path.join(dir, 'containerd.log');
  // the shim and runc are found on PATH: this containerd's own shim first
  const env = { ...process.env, PATH: `${tools.dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` };
  let p: Proc;
  const start = async () => {
    p = spawnLogged(tools.containerd, ['--config', configFile], log, env);
    await waitFor(`containerd ${tools.version}`, 30_000, async () => {
      if (p.proc.exitCode !== null) throw new Error('exited');
      await run(tools.ctr, ['--address', address, 'version'], { timeout: 5_000 });
      return true;
    }, log);
  };
  await start();
  const self: Containerd = {
    get proc() {
      return p.proc;
    },
    log,
    address,
    tools,
    configFile,
    stop: () => p.stop(),
    ctr: (args, opts) => run(tools.ctr, ['--address', address, ...args], opts),
    async restart() {
      await p.stop();
      await start();
    },
    errorLines() {
      const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
      const errors = text.split('\n').filter((l) => /level=(error|fatal|panic)|^panic:/.test(l));
      const races = errors.filter((l) => UNRELATED_RACES.some((r) => r.test(l)));
      for (const l of races) console.log(`[containerd] not counted (containerd's own race, no snapshotter in it): ${l}`);
      return errors.filter((l) => !races.includes(l));
    },
  };
  return self;
}

/** shimsOf lists the pids of containerd-shim processes started for this containerd's address. */
export function shimsOf(address: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let cmd: string[];
    try {
      cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!cmd[0] || !path.basename(cmd[0]).startsWith('containerd-shim')) continue;
    const i = cmd.indexOf('-address');
    if (i >= 0 && cmd[i + 1] === address) out.push(Number(d));
  }
  return out;
}

/** mountsUnder lists mount points below dir, deepest first. */
export function mountsUnder(dir: string): string[] {
  const lines = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const pts = lines
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\040/g, ' '))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(pts)].sort((a, b) => b.length - a.length);
}

/** loopsUnder lists loop devices whose backing file is below dir. */
export function loopsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const d of fs.readdirSync('/sys/block')) {
    if (!d.startsWith('loop')) continue;
    try {
      const back = fs.readFileSync(`/sys/block/${d}/loop/backing_file`, 'utf8').trim();
      if (back.startsWith(`${dir}/`)) out.push(`/dev/${d}`);
    } catch {
      // not attached
    }
  }
  return out;
}

/**
 * leaks is what still refers to dir: mounts, loop devices, shims. storeOf
 * names the root of a tsblock that is still running: its store (the XFS file
 * <root>/store.xfs on a loop device, mounted on <root>/store, made on ext4
 * hosts) is that daemon's storage, not a leak; nothing else is excused, and
 * after tsblock stops its store counts like anything else.
 */
export function leaks(dir: string, address?: string, opts: { storeOf?: string } = {}): string[] {
  const store = opts.storeOf ? path.join(opts.storeOf, 'store') : undefined;
  const storeFile = store ? `${store}.xfs` : undefined;
  const backing = (l: string) => {
    try {
      return fs.readFileSync(`/sys/block/${path.basename(l)}/loop/backing_file`, 'utf8').trim();
    } catch {
      return '';
    }
  };
  return [
    ...mountsUnder(dir)
      .filter((m) => m !== store)
      .map((m) => `mount ${m}`),
    ...loopsUnder(dir)
      .filter((l) => !storeFile || backing(l) !== storeFile)
      .map((l) => `loop ${l}`),
    ...(address ? shimsOf(address).map((p) => `shim pid ${p}`) : []),
  ];
}

/** releaseAll ends shims, unmounts and detaches whatever a failed run left below dir. */
export async function releaseAll(dir: string, address?: string): Promise<void> {
  if (address) {
    for (const pid of shimsOf(address)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  for (const m of mountsUnder(dir)) {
    await run('umount', [m]).catch(() => run('umount', ['-l', m]).catch(() => undefined));
  }
  for (const l of loopsUnder(dir)) await run('losetup', ['-d', l]).catch(() => undefined);
}
