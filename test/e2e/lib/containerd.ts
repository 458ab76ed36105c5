/**
 * containerd runs a private containerd of any version (1.6 from Debian, 2.x
 * built under /var/cache/tsblock-tools) with its own root, state, sockets
 * and config under a work dir, and drives it with that version's ctr.
 *
 * - `containerdBins(dir)`: {bins} (paths, version, major) or {reason}.
 * - `runcMissing()`: why no runc is on the PATH containerd gets.
 * - `containerdConfig(opts)`: the config text: version 2 for 1.x, 3 for 2.x;
 *   CRI (and on 2.x NRI, which would take the host's /var/run/nri) off; proxy
 *   plugins; on 2.x the transfer service's unpack_config (with an optional
 *   differ) and the diff service's differ order.
 * - `new PrivateContainerd(work, bins, config)`: start()/stop() (restartable),
 *   ctr(args) (throws with stderr on a non-zero exit), log.
 *
 * Paths containerd does not let a private instance move (shim sockets under
 * /run/containerd/s, ctr fifos under /run/containerd/fifo, runc root
 * /run/containerd/runc/NS) are shared with any other containerd, by hashed
 * names, so they do not clash. ctr mounts a new container's rootfs itself
 * (to read /etc/passwd) under $TMPDIR: TMPDIR is the work dir's tmp/.
 */

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';

/** ContainerdBins are one containerd release's binaries. */
export interface ContainerdBins {
  dir: string;
  containerd: string;
  ctr: string;
  shim: string;
  version: string;
  major: number;
}

/** containerdBins finds containerd, ctr and containerd-shim-runc-v2 in dir. */
export function containerdBins(dir: string): { bins?: ContainerdBins; reason?: string } {
  const p = (n: string) => path.join(dir, n);
  for (const n of ['containerd', 'ctr', 'containerd-shim-runc-v2']) if (!fs.existsSync(p(n))) return { reason: `${p(n)} not found (TSBLOCK_E2E_CONTAINERD=${dir})` };
  let out: string;
  try {
    out = execFileSync(p('containerd'), ['--version'], { encoding: 'utf8', timeout: 20_000 });
  } catch (err) {
    return { reason: `${p('containerd')} --version failed: ${(err as Error).message}` };
  }
  const m = /\bv?(\d+)\.(\d+)\.(\d+)\S*/.exec(out.split(' ').slice(2).join(' ')) ?? /\bv?(\d+)\.(\d+)\.(\d+)\S*/.exec(out);
  if (!m) return { reason: `cannot read a version from "${out.trim()}"` };
  return { bins: { dir, containerd: p('containerd'), ctr: p('ctr'), shim: p('containerd-shim-runc-v2'), version: m[0], major: Number(m[1]) } };
}

/** SYSTEM_PATH is where runc and mount tools are looked up (after the containerd bin dir). */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** runcMissing explains why no runc can run containers. */
export function runcMissing(): string | undefined {
  for (const d of SYSTEM_PATH.split(':')) if (fs.existsSync(path.join(d, 'runc'))) return undefined;
  return 'runc not found (apt-get install runc)';
}

/** ProxyPlugin is one [proxy_plugins.NAME] entry. */
export interface ProxyPlugin {
  name: string;
  type: 'snapshot' | 'diff';
  address: string;
}

/** ConfigOptions shape the config. */
export interface ConfigOptions {
  major: number;
  root: string;
  state: string;
  address: string;
  proxies: ProxyPlugin[];
  /** 2.x: transfer-service unpack_config entries (platform linux/amd64). */
  unpack?: { snapshotter: string; differ?: string }[];
  /** 2.x: the diff service's differ order (client-side unpacks: ctr pull --local). */
  diffOrder?: string[];
}

/** containerdConfig renders the config file for that version. */
export function containerdConfig(o: ConfigOptions): string {
  const q = JSON.stringify;
  const v2 = o.major >= 2;
  const disabled = v2
    ? ['io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.images', 'io.containerd.cri.v1.runtime', 'io.containerd.nri.v1.nri', 'io.containerd.podsandbox.controller.v1.podsandbox']
    : ['io.containerd.grpc.v1.cri'];
  const lines = [
    `version = ${v2 ? 3 : 2}`,
    `root = ${q(o.root)}`,
    `state = ${q(o.state)}`,
    `disabled_plugins = [${disabled.map((d) => q(d)).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${q(o.address)}`,
    '[ttrpc]',
    `  address = ${q(`${o.address}.ttrpc`)}`,
    '[debug]',
    '  level = "debug"',
    '',
    '[proxy_plugins]',
  ];
  for (const p of o.proxies) lines.push(`  [proxy_plugins.${q(p.name)}]`, `    type = ${q(p.type)}`, `    address = ${q(p.address)}`);
  if (v2 && o.unpack?.length) {
    lines.push('');
    for (const u of o.unpack) {
      lines.push('[[plugins."io.containerd.transfer.v1.local".unpack_config]]', '  platform = "linux/amd64"', `  snapshotter = ${q(u.snapshotter)}`);
      if (u.differ) lines.push(`  differ = ${q(u.differ)}`);
    }
  }
  if (v2 && o.diffOrder?.length) lines.push('', '[plugins."io.containerd.service.v1.diff-service"]', `  default = [${o.diffOrder.map((d) => q(d)).join(', ')}]`);
  return lines.join('\n') + '\n';
}

/** CtrResult is a finished ctr call. */
export interface CtrResult {
  stdout: string;
  stderr: string;
  ms: number;
}

/** PrivateContainerd is one containerd under a work dir (restartable). */
export class PrivateContainerd {
  readonly root: string;
  readonly state: string;
  readonly address: string;
  readonly configFile: string;
  readonly log: string;
  readonly tmp: string;
  private proc?: ChildProcess;
  private exited?: Promise<void>;

  constructor(
    readonly work: string,
    readonly bins: ContainerdBins,
    readonly namespace = 'e2e',
  ) {
    this.root = path.join(work, 'containerd', 'root');
    this.state = path.join(work, 'containerd', 'state');
    this.address = path.join(work, 'containerd.sock');
    this.configFile = path.join(work, 'containerd', 'config.toml');
    this.log = path.join(work, 'containerd', 'containerd.log');
    this.tmp = path.join(work, 'tmp');
  }

  /** env is what containerd and ctr run with: this release's bin dir first (its shim), then runc's. */
  get env(): NodeJS.ProcessEnv {
    return { PATH: `${this.bins.dir}:${SYSTEM_PATH}`, TMPDIR: this.tmp, HOME: process.env.HOME ?? '/root' };
  }

  get pid(): number | undefined {
    return this.proc?.exitCode === null ? this.proc.pid : undefined;
  }

  writeConfig(text: string): void {
    fs.mkdirSync(path.dirname(this.configFile), { recursive: true });
    fs.mkdirSync(this.tmp, { recursive: true });
    fs.writeFileSync(this.configFile, text);
  }

  /** start starts containerd and waits until `ctr version` answers (30 s). */
  async start(): Promise<number> {
    const t0 = Date.now();
    const fd = fs.openSync(this.log, 'a');
    const proc = spawn(this.bins.containerd, ['--config', this.configFile], { stdio: ['ignore', fd, fd], env: this.env });
    fs.closeSync(fd);
    this.proc = proc;
    this.exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`containerd exited (${proc.exitCode}): ${fs.readFileSync(this.log, 'utf8').slice(-2000)}`);
      if (fs.existsSync(this.address)) {
        const r = await execa(this.bins.ctr, ['--address', this.address, 'version'], { env: this.env, reject: false, timeout: 5000 });
        if (r.exitCode === 0) return Date.now() - t0;
      }
      if (Date.now() > deadline) throw new Error(`containerd did not answer in 30 s: ${fs.readFileSync(this.log, 'utf8').slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** stop sends SIGTERM (SIGKILL after 20 s) and waits; true when SIGTERM sufficed. */
  async stop(): Promise<boolean> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return true;
    proc.kill('SIGTERM');
    let killed = false;
    const t = setTimeout(() => {
      killed = true;
      proc.kill('SIGKILL');
    }, 20_000);
    await this.exited;
    clearTimeout(t);
    return !killed;
  }

  /** ctr runs this release's ctr against this containerd; throws on a non-zero exit. */
  async ctr(args: string[], timeoutMs = 600_000): Promise<CtrResult> {
    const t0 = Date.now();
    const r = await execa(this.bins.ctr, ['--address', this.address, '--namespace', this.namespace, ...args], {
      env: this.env,
      reject: false,
      timeout: timeoutMs,
      stdin: 'ignore',
    });
    const ms = Date.now() - t0;
    if (r.exitCode !== 0) {
      throw new Error(`ctr ${args.join(' ')}: exit ${r.exitCode ?? r.signal}${r.timedOut ? ' (timed out)' : ''} after ${ms} ms: ${`${r.stderr}\n${r.stdout}`.trim().slice(-1500)}`);
    }
    return { stdout: r.stdout, stderr: r.stderr, ms };
  }
}
