// util: timing, statistics, process helpers and a peer-neutral mount helper
// for the benchmark. Every peer is mounted by the same code (tsblock's own
// FFI mount verbs from dist/), so a difference in mount time is the
// snapshotter's, not the harness's.

import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, readFileSync, openSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** REPO is the package root (test/bench/lib/../../..). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** nowMs is a monotonic clock in milliseconds with sub-ms digits. */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** timed runs fn and returns [ms, value]. */
export async function timed(fn) {
  const t0 = nowMs();
  const v = await fn();
  return [nowMs() - t0, v];
}

/** quantile of a numeric sample (nearest-rank on a sorted copy). */
export function quantile(xs, q) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}

/** summary is {n, p50, p99, mean} of a sample in ms, rounded to µs. */
export function summary(xs) {
  const r = (x) => Math.round(x * 1000) / 1000;
  const mean = xs.reduce((a, b) => a + b, 0) / (xs.length || 1);
  return { n: xs.length, p50: r(quantile(xs, 0.5)), p99: r(quantile(xs, 0.99)), mean: r(mean) };
}

/** median of a sample. */
export const median = (xs) => quantile(xs, 0.5);

/** sh runs a command (argument array, no shell) and returns stdout; throws with stderr on failure. */
export function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** which returns the path of an executable or undefined. */
export function which(name) {
  try {
    return sh('sh', ['-c', `command -v "$1"`, 'which', name]).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** sleep resolves after ms. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** rssMiB reads a process's resident set size from /proc. */
export function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
}

/** treeRssMiB sums RSS over pid and its descendants (a shell wrapper must not hide the daemon). */
export function treeRssMiB(pid) {
  let total = 0;
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    try {
      total += rssMiB(p);
      const kids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim();
      if (kids) stack.push(...kids.split(/\s+/).map(Number));
    } catch {
      /* gone */
    }
  }
  return Math.round(total * 10) / 10;
}

/** spawnLogged starts a long-running process with its output appended to a log file. */
export function spawnLogged(cmd, args, logFile, opts = {}) {
  mkdirSync(dirname(logFile), { recursive: true });
  const fd = openSync(logFile, 'a');
  return spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true, ...opts });
}

let sysMount;
/** loadSys imports tsblock's built mount verbs (needs `npm run build`). */
export async function loadSys() {
  sysMount ??= await import(join(REPO, 'dist', 'src', 'sys', 'mount.js'));
  return sysMount;
}

/**
 * mountAll mounts a snapshot's mounts (one mount in practice) on target.
 * Long overlay lowerdir lists are made relative to their common prefix and
 * mounted from there (the one-page limit of mount data; containerd does the
 * same), so a 200-layer overlay mounts at all.
 */
export async function mountAll(mounts, target) {
  const sys = await loadSys();
  mkdirSync(target, { recursive: true });
  const handles = [];
  for (const m of mounts) {
    const opts = m.options ?? [];
    if (m.type === 'overlay' && opts.join(',').length > 3000) {
      const lower = opts.find((o) => o.startsWith('lowerdir=')).slice('lowerdir='.length).split(':');
      let prefix = dirname(lower[0]);
      while (!lower.every((l) => l.startsWith(prefix + '/'))) prefix = dirname(prefix);
      const rel = opts.map((o) => {
        if (o.startsWith('lowerdir=')) return 'lowerdir=' + lower.map((l) => relative(prefix, l)).join(':');
        if (o.startsWith('upperdir=') || o.startsWith('workdir=')) {
          const [k, v] = o.split('=');
          return `${k}=${relative(prefix, v)}`;
        }
        return o;
      });
      const cwd = process.cwd();
      process.chdir(prefix);
      try {
        handles.push(sys.mountOne({ ...m, options: rel }, target));
      } finally {
        process.chdir(cwd);
      }
    } else {
      handles.push(sys.mountOne({ type: m.type, source: m.source, options: opts }, target));
    }
  }
  return handles;
}

/** unmountAll releases what mountAll mounted. */
export async function unmountAll(handles) {
  const sys = await loadSys();
  for (const h of [...handles].reverse()) sys.releaseMount(h);
}

/** rmrf removes a path, ignoring absence. */
export const rmrf = (p) => rmSync(p, { recursive: true, force: true });
