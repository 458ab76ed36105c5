// servers: start and stop the snapshotters under test as proxy servers, each
// on its own root and socket, and measure start-up (spawn → first answered
// RPC) and resident memory.

import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { SnapClient } from './client.mjs';
import { REPO, nowMs, rmrf, sleep, spawnLogged, treeRssMiB } from './util.mjs';

/**
 * refsnapshotterPath returns containerd's own snapshotters served as proxies
 * (test/go/ctrd2/cmd/refsnapshotter: overlayfs, native, blockfile from
 * containerd v2 as test/versions.env pins): $TSBLOCK_REFSNAPSHOTTER when set,
 * otherwise `go build` from test/go/ctrd2 into
 * ${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools}/refsnapshotter (every time:
 * about a second with a warm Go build cache, so never a stale binary).
 * undefined when Go is missing or the build fails (the reason on stderr).
 */
export function refsnapshotterPath() {
  if (process.env.TSBLOCK_REFSNAPSHOTTER) return existsSync(process.env.TSBLOCK_REFSNAPSHOTTER) ? process.env.TSBLOCK_REFSNAPSHOTTER : undefined;
  const go = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/go/bin'].map((d) => join(d, 'go')).find((p) => existsSync(p));
  if (!go) {
    console.error('refsnapshotter: go is not installed');
    return undefined;
  }
  const tools = process.env.TSBLOCK_TOOLS_DIR || '/var/cache/tsblock-tools';
  const bin = join(tools, 'refsnapshotter');
  try {
    mkdirSync(tools, { recursive: true });
    execFileSync(go, ['build', '-o', `${bin}.tmp`, './cmd/refsnapshotter'], {
      cwd: join(REPO, 'test', 'go', 'ctrd2'),
      env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    renameSync(`${bin}.tmp`, bin);
  } catch (err) {
    console.error(`refsnapshotter: go build in test/go/ctrd2 failed: ${err.message}`);
    return undefined;
  }
  return bin;
}

/**
 * targets lists what to benchmark. `dir` is the filesystem each root lives on.
 * Peers missing on this machine come back with `skip` set to the reason.
 */
export function targets({ ext4Dir, xfsDir }) {
  const ref = refsnapshotterPath();
  const t = [
    { id: 'tsblock-xfs', impl: 'tsblock', dir: xfsDir, skip: xfsDir ? undefined : 'no XFS scratch (mkfs.xfs or loop mount failed)' },
    { id: 'tsblock-ext4', impl: 'tsblock', dir: ext4Dir },
    { id: 'overlayfs', impl: 'ref', backend: 'overlayfs', dir: ext4Dir },
    // The same filesystem as tsblock-xfs (the loop-mounted XFS): apples to apples for fsync costs.
    { id: 'overlayfs-xfs', impl: 'ref', backend: 'overlayfs', dir: xfsDir, skip: xfsDir ? undefined : 'no XFS scratch' },
    { id: 'native', impl: 'ref', backend: 'native', dir: ext4Dir },
  ];
  // TSBLOCK_BENCH_BASE_CLI adds other builds (e.g. the last commit's dist/cli.js) on the same
  // XFS as tsblock-xfs, measured in the same interleaved turns: before/after in one run.
  // "PATH" adds tsblock-xfs-base; "NAME=PATH,…" adds tsblock-xfs-NAME per entry.
  const bases = (process.env.TSBLOCK_BENCH_BASE_CLI ?? '').split(',').filter(Boolean);
  bases.forEach((b, i) => {
    const [name, cli] = b.includes('=') ? b.split('=', 2) : ['base', b];
    t.splice(1 + i, 0, { id: `tsblock-xfs-${name}`, impl: 'tsblock', cli, dir: xfsDir, skip: xfsDir ? undefined : 'no XFS scratch' });
  });
  if (!ref) for (const x of t) if (x.impl === 'ref') x.skip ??= 'refsnapshotter could not be built (go build in test/go/ctrd2; or set TSBLOCK_REFSNAPSHOTTER)';
  if (!existsSync(join(REPO, 'dist', 'cli.js'))) for (const x of t) if (x.impl === 'tsblock' && !x.cli) x.skip = 'dist/cli.js missing: run npm run build';
  for (const x of t) x.ref = ref;
  return t;
}

function command(target, root, socket) {
  if (target.impl === 'tsblock') {
    // TSBLOCK_BENCH_CLI runs another build (e.g. a checkout of main) for before/after numbers.
    const cli = target.cli ?? process.env.TSBLOCK_BENCH_CLI ?? join(REPO, 'dist', 'cli.js');
    return ['node', [cli, 'serve', '--root', root, '--socket', socket, '--log-level', 'warn']];
  }
  return [target.ref, ['--backend', target.backend, '--root', root, '--socket', socket]];
}

function canConnect(socket) {
  return new Promise((resolve) => {
    const s = connect(socket);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** Server is one running snapshotter process. */
export class Server {
  constructor(target, workDir, logDir) {
    this.target = target;
    this.base = mkdtempSync(join(target.dir, `tsbench-${target.id}-`));
    this.root = join(this.base, 'root');
    this.socket = join(workDir, `${target.id}.sock`);
    this.log = join(logDir, `${target.id}.log`);
  }

  /** start launches the process and resolves with the start-up time in ms. */
  async start() {
    mkdirSync(this.root, { recursive: true });
    rmrf(this.socket);
    const [cmd, args] = command(this.target, this.root, this.socket);
    const t0 = nowMs();
    this.proc = spawnLogged(cmd, args, this.log);
    this.exited = new Promise((r) => this.proc.once('exit', (code, sig) => r({ code, sig })));
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`${this.target.id} exited during start-up (see ${this.log})`);
      if (existsSync(this.socket) && (await canConnect(this.socket))) break;
      if (nowMs() - t0 > 120000) throw new Error(`${this.target.id} did not listen within 120 s`);
      await sleep(2);
    }
    this.client?.close();
    this.client = new SnapClient(this.socket);
    await this.client.stat('tsbench-startup-probe').catch(() => {});
    return nowMs() - t0;
  }

  /** newClient opens another connection (for concurrency runs). */
  newClient() {
    return new SnapClient(this.socket);
  }

  rssMiB() {
    return treeRssMiB(this.proc.pid);
  }

  /** stop sends SIGTERM (SIGKILL after 20 s) and waits for the exit. */
  async stop() {
    this.client?.close();
    this.client = undefined;
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    try {
      process.kill(-this.proc.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
    const t = setTimeout(() => {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 20000);
    await this.exited;
    clearTimeout(t);
  }

  /** destroy stops the server and removes its root. */
  async destroy() {
    await this.stop();
    rmrf(this.base);
    rmrf(this.socket);
  }
}
