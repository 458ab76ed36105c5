/**
 * tools finds the binaries the CRI and docs tests drive and says why a test
 * cannot run when one is missing.
 *
 * - containerd 2.x: `TSBLOCK_CRI_CONTAINERD` (a bin dir with containerd, ctr,
 *   containerd-shim-runc-v2), else `scripts/install-tools.sh --print containerd-2.4`.
 * - crictl: `TSBLOCK_CRICTL` (the binary), else `install-tools.sh --print crictl`.
 * - containerd 1.6: Debian's /usr/bin (`install-tools.sh --print containerd-1.6`).
 *
 * `requireAll` is true under CI (CI=true or TSBLOCK_REQUIRE_ALL=1): a missing
 * tool is then a failure, not a skip (see `skipOrFail`).
 */

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '../../..');
export const CLI = path.join(REPO, 'dist/cli.js');
export const INSTALL_TOOLS = path.join(REPO, 'scripts/install-tools.sh');

export const requireAll = process.env.CI === 'true' || process.env.TSBLOCK_REQUIRE_ALL === '1';

/** printDir runs `install-tools.sh --print name`: the bin dir, or undefined. */
export function printDir(name: string): string | undefined {
  try {
    return execFileSync(INSTALL_TOOLS, ['--print', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** ContainerdTools is one containerd's bin dir and version ("2.4.2"). */
export interface ContainerdTools {
  dir: string;
  containerd: string;
  ctr: string;
  version: string;
}

/** containerdAt reads the version of the containerd in dir (undefined when unusable). */
export function containerdAt(dir: string): ContainerdTools | undefined {
  const containerd = path.join(dir, 'containerd');
  const ctr = path.join(dir, 'ctr');
  if (!fs.existsSync(containerd) || !fs.existsSync(ctr)) return undefined;
  try {
    const out = execFileSync(containerd, ['--version'], { encoding: 'utf8' });
    // "containerd github.com/containerd/containerd/v2 2.4.2+unknown" / "… 1.6.20~ds1 …"
    const m = / v?(\d+\.\d+\.\d+)/.exec(out);
    if (!m) return undefined;
    return { dir, containerd, ctr, version: m[1]! };
  } catch {
    return undefined;
  }
}

/** cri2 is the containerd 2.x under test, or the reason there is none. */
export function cri2(): ContainerdTools | string {
  const env = process.env.TSBLOCK_CRI_CONTAINERD;
  const dir = env || printDir('containerd-2.4');
  if (!dir) return 'no containerd 2.x: set TSBLOCK_CRI_CONTAINERD or run scripts/install-tools.sh --only containerd-2.4';
  const t = containerdAt(dir);
  if (!t) return `${dir} holds no usable containerd + ctr`;
  if (!t.version.startsWith('2.')) return `${dir}/containerd is ${t.version}, not 2.x`;
  return t;
}

/** crictl is the crictl binary, or the reason there is none. */
export function crictl(): { bin: string } | string {
  const env = process.env.TSBLOCK_CRICTL;
  if (env) return fs.existsSync(env) ? { bin: env } : `TSBLOCK_CRICTL=${env} does not exist`;
  const dir = printDir('crictl');
  if (!dir) return 'no crictl: run scripts/install-tools.sh --only crictl';
  return { bin: path.join(dir, 'crictl') };
}

/** every containerd version the config tests check: 1.6 (Debian) and the 2.x ones installed. */
export function allContainerds(): { name: string; tools: ContainerdTools | string }[] {
  const out: { name: string; tools: ContainerdTools | string }[] = [];
  const d16 = printDir('containerd-1.6');
  out.push({ name: 'containerd-1.6', tools: (d16 && containerdAt(d16)) || 'Debian containerd 1.6 not installed (scripts/install-deps.sh --test)' });
  for (const n of ['containerd-2.3', 'containerd-2.4']) {
    const d = printDir(n);
    out.push({ name: n, tools: (d && containerdAt(d)) || `${n} not installed (scripts/install-tools.sh --only ${n})` });
  }
  const env = process.env.TSBLOCK_CRI_CONTAINERD;
  if (env) {
    const t = containerdAt(env);
    if (t && !out.some((o) => typeof o.tools !== 'string' && o.tools.dir === t.dir)) out.push({ name: `TSBLOCK_CRI_CONTAINERD (${t.version})`, tools: t });
  }
  return out;
}

/** rootMissing is why root-only tests cannot run here. */
export function rootMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (containerd, mounts, loop devices)';
  if (!fs.existsSync('/dev/loop-control')) return 'needs loop devices (/dev/loop-control)';
  if (!fs.existsSync(CLI)) return `${CLI} missing (npm run build)`;
  return undefined;
}

/**
 * skipOrFail returns the reasons joined, or undefined when nothing is missing.
 * Under CI a reason is a failure: the caller's describe runs a test that fails
 * with it instead of skipping.
 */
export function missing(...reasons: (string | undefined)[]): string | undefined {
  const r = reasons.filter((x): x is string => !!x);
  return r.length ? r.join('; ') : undefined;
}
