/**
 * rig is the fault tests' world: a local docker-registry on 127.0.0.1, a
 * socket-activated tsblock (blockfile) whose environment can arm fault
 * points, and a private containerd (1.6 from Debian or 2.x from
 * /var/cache/tsblock-tools) that uses it as its proxy snapshotter (and, on
 * 2.x, its differ), all under one work dir (test/e2e/lib does the work).
 *
 * - `faultPrereqs()`: {bins} or {reason} (root, loop devices, dist/, the
 *   containerd in $TSBLOCK_FAULTS_CONTAINERD, runc, registry, busybox).
 * - `faultDescribe(title, body)`: describe() that skips with the reason, or
 *   fails under CI (CI=true / TSBLOCK_REQUIRE_ALL=1) when something is missing.
 * - `new Rig(name, bins, {root?, serveArgs?})`: `up()`, `down()`; `pull(ref)`
 *   ({ok, out}), `ctr(args)`, `snaps()`, `restartTsblock(env)`,
 *   `waitServing()`, `gc()`, `checkAgree()`, `leaks()`.
 *
 * `root` puts tsblock's root (and containerd's) on a filesystem the test
 * made, e.g. a small loop-backed ext4 or XFS for the disk-full cases.
 * `backend: 'devmapper'` (where device-mapper exists: the VM) runs tsblock
 * on its own loop-backed thin-pool under the work dir (serveArgs size it);
 * `withStorage(snap, fn)` then hands fn a device node for a committed
 * snapshot (activated read-only, or writable for the corruption cases,
 * under a name of the test's own, with dmsetup: test tooling) and removes
 * it again; `dmLeaks()` lists the pool's devices left after `down()`.
 */

import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';
import { execa } from 'execa';
import Database from 'better-sqlite3';
import { defaultOwnedPoolName } from '../../../src/backends/devmapper/config.js';
import { dmAvailable } from '../../../src/sys/dm.js';
import { hasLoop, isRoot, requireAll } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { containerdBins, containerdConfig, PrivateContainerd, runcMissing, type ContainerdBins } from '../../e2e/lib/containerd.js';
import { busyboxMissing } from '../../e2e/lib/images.js';
import { registryMissing, startRegistry, type LocalRegistry } from '../../e2e/lib/registry.js';
import { ActivatedTsblock, readFrom } from '../../e2e/lib/tsblock.js';

export const REPO = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/$/, '');
export const BIN_DIR = process.env.TSBLOCK_FAULTS_CONTAINERD || '/usr/bin';
export const TMPBASE = process.env.TSBLOCK_FAULTS_TMPDIR || '/var/tmp';
/** LONG is the long form (TSBLOCK_FAULTS_LONG=1): every kill point at every layer, a containerd kill after every layer. */
export const LONG = process.env.TSBLOCK_FAULTS_LONG === '1';
export const SN = 'tsblock';
export const DIFFER = 'tsblock-diff';
export const STEP = LONG ? 3_600_000 : 900_000;
/** ANCHOR names the rig's own committed snapshot (a gc.root), the readiness probe's target. */
export const ANCHOR = 'faults-anchor';

/** faultPrereqs says what is missing for the fault tests, or gives the containerd to use. */
export function faultPrereqs(backend: 'blockfile' | 'devmapper' = 'blockfile'): { bins?: ContainerdBins; reason?: string } {
  if (!isRoot) return { reason: 'needs root (containerd, runc, mounts)' };
  if (!hasLoop) return { reason: 'needs loop devices (/dev/loop-control)' };
  if (backend === 'devmapper' && !dmAvailable()) return { reason: 'needs device-mapper (run in the VM: vm-tests/run-in-vm.sh)' };
  if (backend === 'devmapper' && !fs.existsSync('/usr/sbin/dmsetup') && !fs.existsSync('/sbin/dmsetup')) return { reason: 'needs dmsetup (apt-get install dmsetup)' };
  if (!fs.existsSync(path.join(REPO, 'dist', 'cli.js'))) return { reason: 'dist/cli.js not built (npm run build)' };
  const b = containerdBins(BIN_DIR);
  if (!b.bins) return b;
  const why = runcMissing() ?? registryMissing() ?? busyboxMissing();
  return why ? { reason: why } : b;
}

/** faultDescribe runs body(bins) in a describe, or skips (fails under CI) with the reason. */
export function faultDescribe(title: string, body: (bins: ContainerdBins) => void, opts: { backend?: 'blockfile' | 'devmapper' } = {}): void {
  const pre = faultPrereqs(opts.backend);
  if (pre.reason && requireAll) {
    describe(title, () => it('has what it needs (CI: a missing tool is a failure)', () => { throw new Error(pre.reason); }));
  } else if (pre.reason) {
    describe.skip(`${title} (skipped: ${pre.reason})`, () => it('runs', () => {}));
  } else {
    describe(`${title} (containerd ${pre.bins!.version})`, () => body(pre.bins!));
  }
}

/** FaultTsblock is an ActivatedTsblock whose next start can carry extra environment (fault points). */
export class FaultTsblock extends ActivatedTsblock {
  extraEnv: NodeJS.ProcessEnv = {};
  override get env(): NodeJS.ProcessEnv {
    return { ...super.env, ...this.extraEnv };
  }
  /** dead tells whether the daemon has exited or was killed (or was never started). */
  get dead(): boolean {
    const proc = (this as unknown as { proc?: ChildProcess }).proc;
    return !proc || proc.exitCode !== null || proc.signalCode !== null;
  }
}

/** Snap is one `tsblock ls --json` row. */
export interface Snap {
  key: string;
  kind: string;
  parent?: string;
  storage?: string;
}

/** RigOptions shape one rig. */
export interface RigOptions {
  /** tsblockParent is the directory tsblock's root is made in (default: the work dir), e.g. a small filesystem. */
  tsblockParent?: string;
  serveArgs?: string[];
  /** backend is tsblock's backend (default blockfile; devmapper needs device-mapper: the VM). */
  backend?: 'blockfile' | 'devmapper';
}

/** Rig is registry + tsblock + containerd under one work dir. */
export class Rig {
  readonly work: string;
  readonly v2: boolean;
  readonly cd: PrivateContainerd;
  readonly tsb: FaultTsblock;
  readonly backend: 'blockfile' | 'devmapper';
  /** pool is the owned thin-pool's name (devmapper). */
  readonly pool: string;
  registry?: LocalRegistry;

  constructor(name: string, readonly bins: ContainerdBins, readonly opts: RigOptions = {}) {
    fs.mkdirSync(TMPBASE, { recursive: true });
    this.work = fs.mkdtempSync(path.join(TMPBASE, `faults-${name}.`));
    this.v2 = bins.major >= 2;
    // A namespace of its own: runc's state (/run/containerd/runc/<namespace>/<id>) is
    // shared by every containerd on the host, so two runs side by side (test.sh runs
    // 1.6 and 2.4 at once) or an e2e run must not share container ids.
    this.cd = new PrivateContainerd(this.work, bins, `faults${bins.major}-${process.pid}`);
    this.backend = opts.backend ?? 'blockfile';
    const serveArgs = opts.serveArgs ?? [];
    const args = [...(serveArgs.includes('--base-size') ? [] : ['--base-size', this.backend === 'devmapper' ? '256M' : '1G']), ...serveArgs];
    if (this.v2) args.push('--content-dir', path.join(this.cd.root, 'io.containerd.content.v1.content'));
    const root = path.join(opts.tsblockParent ?? this.work, `tsblock-root-${path.basename(this.work)}`);
    this.pool = defaultOwnedPoolName(root);
    this.tsb = new FaultTsblock({
      repo: REPO,
      root,
      socket: path.join(this.work, 'tsblock.sock'),
      backend: this.backend,
      args,
      log: path.join(this.work, 'tsblock.log'),
    });
  }

  /**
   * withStorage runs fn on a path holding a committed snapshot's ext4: its
   * image file (blockfile), or its thin device (devmapper) activated under
   * <pool>-test-<id> with dmsetup (read-only unless writable) and removed
   * after fn; a device tsblock has active is used as it is.
   */
  async withStorage<T>(s: Snap, fn: (dev: string) => Promise<T> | T, opts: { writable?: boolean } = {}): Promise<T> {
    if (this.backend === 'blockfile') return fn(s.storage!);
    if (fs.existsSync(s.storage!)) return fn(s.storage!);
    const id = Number(/-snap-(\d+)$/.exec(s.storage!)?.[1]);
    const db = new Database(path.join(this.tsb.o.root, 'metadata.db'), { readonly: true, fileMustExist: true });
    let row: { thin: number; size: number } | undefined;
    try {
      row = db.prepare('SELECT thin_id AS thin, size FROM dm_devices WHERE snapshot_id = ?').get(id) as typeof row;
    } finally {
      db.close();
    }
    if (!row) throw new Error(`no thin device row for ${s.key} (${s.storage})`);
    const name = `${this.pool}-test-${id}`;
    await execa('dmsetup', ['create', name, ...(opts.writable ? [] : ['--readonly']), '--table', `0 ${row.size / 512} thin /dev/mapper/${this.pool} ${row.thin}`]);
    try {
      // No udev here: dmsetup makes the node itself (mknodes is a no-op when it did).
      await execa('dmsetup', ['mknodes', name], { reject: false });
      return await fn(`/dev/mapper/${name}`);
    } finally {
      await execa('dmsetup', ['remove', '--retry', name], { reject: false });
    }
  }

  /** dmLeaks lists the rig pool's dm devices (none is left after down()). */
  async dmLeaks(): Promise<string[]> {
    if (this.backend !== 'devmapper') return [];
    const r = await execa('dmsetup', ['ls'], { reject: false });
    return r.stdout.split('\n').map((l) => l.split(/\s+/)[0]!).filter((n) => n === this.pool || n.startsWith(`${this.pool}-`)).map((n) => `dm ${n}`);
  }

  /** up starts the registry, tsblock and containerd. */
  async up(): Promise<void> {
    this.registry = await startRegistry(path.join(this.work, 'registry'));
    await this.tsb.start();
    this.cd.writeConfig(
      containerdConfig({
        major: this.bins.major,
        root: this.cd.root,
        state: this.cd.state,
        address: this.cd.address,
        proxies: [{ name: SN, type: 'snapshot', address: this.tsb.o.socket }, ...(this.v2 ? [{ name: DIFFER, type: 'diff' as const, address: this.tsb.o.socket }] : [])],
        unpack: this.v2 ? [{ snapshotter: SN, differ: DIFFER }] : undefined,
        diffOrder: this.v2 ? [DIFFER, 'walking'] : undefined,
      }),
    );
    await this.cd.start();
    // The anchor: a committed snapshot kept from GC (gc.root) that the
    // readiness probe stats through containerd into tsblock.
    await this.ctr(['snapshots', '--snapshotter', SN, 'prepare', `${ANCHOR}-a`, '']);
    await this.ctr(['snapshots', '--snapshotter', SN, 'commit', ANCHOR, `${ANCHOR}-a`]);
    await this.ctr(['snapshots', '--snapshotter', SN, 'label', ANCHOR, 'containerd.io/gc.root=anchor']);
  }

  ctr(args: string[], timeoutMs?: number) {
    return this.cd.ctr(args, timeoutMs);
  }

  /** pull runs `ctr images pull` and reports the outcome (ctr's stderr: its error) instead of throwing. */
  async pull(ref: string): Promise<{ ok: boolean; out: string; ms: number }> {
    const t0 = Date.now();
    const r = await execa(this.bins.ctr, ['--address', this.cd.address, '--namespace', this.cd.namespace, 'images', 'pull', '--plain-http', '--snapshotter', SN, ref], {
      env: this.cd.env,
      reject: false,
      timeout: 600_000,
      stdin: 'ignore',
    });
    return { ok: r.exitCode === 0, out: r.exitCode === 0 ? r.stdout : r.stderr.trim().slice(-2000) || `exit ${r.exitCode ?? r.signal}`, ms: Date.now() - t0 };
  }

  /** snaps is `tsblock ls --json` without the rig's anchor. */
  async snaps(): Promise<Snap[]> {
    return (await this.allSnaps()).filter((s) => !s.key.endsWith(`/${ANCHOR}`));
  }

  allSnaps(): Promise<Snap[]> {
    return this.tsb.snapshots() as Promise<Snap[]>;
  }

  /**
   * restartTsblock starts a new daemon (after stopping a live one) with `env`
   * added (fault points), then waits until containerd reaches it.
   */
  async restartTsblock(env: NodeJS.ProcessEnv = {}): Promise<void> {
    await this.tsb.stop();
    this.tsb.extraEnv = env;
    await this.tsb.start();
    await this.waitServing();
  }

  /**
   * waitServing waits (30 s) until containerd's proxy reaches tsblock: a
   * Stat of the anchor answers (`ctr snapshots ls` would not do: containerd
   * answers it from its own metadata). A readiness wait, not a check: how
   * soon containerd's proxy client reconnects after a restart (its backoff)
   * is the subject of the restart tests (test/e2e), not of these.
   */
  async waitServing(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await this.ctr(['snapshots', '--snapshotter', SN, 'info', ANCHOR], 10_000);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /**
   * gc makes containerd collect garbage now, tsblock included. containerd
   * collects a snapshotter only when something was removed from it since the
   * last collection, and a collection that failed (tsblock was down) does not
   * keep that mark: so a throwaway view is made and removed first, as the
   * next image or container removal would do, then a lease deleted with
   * --sync runs the collector and waits for it.
   */
  async gc(): Promise<void> {
    const id = `faults-gc-${Date.now()}`;
    // A view: the low-space guard refuses new active snapshots, not views.
    await this.ctr(['snapshots', '--snapshotter', SN, 'view', id, ANCHOR]);
    // A collection already under way may take the (unreferenced) view first: the same kick.
    await this.ctr(['snapshots', '--snapshotter', SN, 'rm', id]).catch((err: Error) => {
      if (!/not found/.test(err.message)) throw err;
    });
    await this.ctr(['leases', 'create', '--id', id]);
    await this.ctr(['leases', 'rm', '--sync', id]);
  }

  /** removeImages drops every image and collects (every snapshot goes). */
  async removeImages(): Promise<void> {
    for (const img of (await this.ctr(['images', 'ls', '-q'])).stdout.split('\n').filter(Boolean)) await this.ctr(['images', 'rm', '--sync', img]);
  }

  /** removeContainer kills, deletes the task and the container (missing ones are fine). */
  async removeContainer(id: string): Promise<void> {
    await this.ctr(['tasks', 'kill', '-s', 'SIGKILL', id]).catch(() => undefined);
    for (let i = 0; i < 100; i++) {
      const t = (await this.ctr(['tasks', 'ls']).catch(() => ({ stdout: '' }))).stdout.split('\n').find((l) => l.split(/\s+/)[0] === id);
      if (!t || /STOPPED/.test(t)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.ctr(['tasks', 'rm', '-f', id]).catch(() => undefined);
    await this.ctr(['containers', 'rm', id]).catch(() => undefined);
  }

  /** ctrSnaps is containerd's view: `ctr snapshots ls` (name, parent, kind). */
  async ctrSnaps(): Promise<{ key: string; parent: string; kind: string }[]> {
    const out = (await this.ctr(['snapshots', '--snapshotter', SN, 'ls'])).stdout.split('\n').slice(1).filter((l) => l.trim());
    return out.map((l) => {
      const f = l.trim().split(/\s+/);
      return f.length >= 3 ? { key: f[0]!, parent: f[1]!, kind: f[2]!.toLowerCase() } : { key: f[0]!, parent: '', kind: (f[1] ?? '').toLowerCase() };
    });
  }

  /**
   * disagreement lists differences between containerd's snapshots and
   * tsblock's (tsblock keys are "<ns>/<n>/<name>"), by name, parent and
   * kind; empty when they agree on every snapshot.
   */
  async disagreement(): Promise<string[]> {
    const short = (k: string | undefined) => (k ? k.replace(/^[^/]+\/\d+\//, '') : '-');
    const mine = new Set((await this.allSnaps()).map((s) => `${short(s.key)} ${short(s.parent)} ${s.kind}`));
    const theirs = new Set((await this.ctrSnaps()).map((s) => `${s.key} ${s.parent || '-'} ${s.kind}`));
    return [...[...mine].filter((x) => !theirs.has(x)).map((x) => `tsblock only: ${x}`), ...[...theirs].filter((x) => !mine.has(x)).map((x) => `containerd only: ${x}`)];
  }

  /** killContainerd SIGKILLs containerd and waits until it is gone (its shims live on). */
  async killContainerd(): Promise<void> {
    const pid = this.cd.pid;
    if (pid === undefined) return;
    process.kill(pid, 'SIGKILL');
    const proc = (this.cd as unknown as { proc?: ChildProcess }).proc;
    for (let i = 0; i < 200 && proc && proc.exitCode === null && proc.signalCode === null; i++) await new Promise((r) => setTimeout(r, 25));
  }

  /**
   * waitLog resolves when tsblock's log has `count` lines matching re since
   * byte offset `from` (polled every 10 ms; false after timeoutMs).
   */
  async waitLog(re: RegExp, count: number, from: number, timeoutMs = 120_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const n = readFrom(this.tsb.o.log, from).split('\n').filter((l) => re.test(l)).length;
      if (n >= count) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }

  /** logSize is the tsblock log's length now (an offset for waitLog). */
  logSize(): number {
    return fs.existsSync(this.tsb.o.log) ? fs.statSync(this.tsb.o.log).size : 0;
  }

  /** leases lists containerd's leases (ids). */
  async leases(): Promise<string[]> {
    return (await this.ctr(['leases', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
  }

  /** leaks are mounts and loop devices under the work dir, the store (or thin-pool files) of the running daemon aside. */
  leaks(): string[] {
    const dirs = [this.work, ...(this.opts.tsblockParent ? [this.tsb.o.root] : [])];
    const poolFiles = `${path.join(this.tsb.o.root, 'devmapper')}/`;
    return dirs.flatMap((d) => leaksUnder(d, { allowStores: true })).filter((l) => !(this.backend === 'devmapper' && l.startsWith('loop ') && l.includes(` -> ${poolFiles}`)));
  }

  /** down stops everything, releases what is left, removes the work dir unless TSBLOCK_FAULTS_KEEP=1. */
  async down(keep = false): Promise<string[]> {
    try {
      if (this.cd.pid) for (const c of (await this.ctr(['containers', 'ls', '-q']).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean)) await this.removeContainer(c);
    } catch {
      // containerd gone
    }
    await this.cd.stop();
    await this.tsb.release();
    await this.registry?.stop();
    const dirs = [this.work, ...(this.opts.tsblockParent ? [this.tsb.o.root] : [])];
    const left = [...dirs.flatMap((d) => leaksUnder(d)), ...(await this.dmLeaks())];
    for (const l of left.filter((x) => x.startsWith('mount ')).reverse()) await execa('umount', ['-l', l.slice(6)], { reject: false });
    // The pool last (its thin devices first): names longer than the pool's sort first.
    for (const l of left.filter((x) => x.startsWith('dm ')).sort((a, b) => b.length - a.length)) await execa('dmsetup', ['remove', '--retry', l.slice(3)], { reject: false });
    for (const l of dirs.flatMap((d) => leaksUnder(d)).filter((x) => x.startsWith('loop '))) await execa('losetup', ['-d', l.split(' ')[1]!], { reject: false });
    if (keep || process.env.TSBLOCK_FAULTS_KEEP === '1') console.log(`faults work dir kept: ${this.work}`);
    else {
      fs.rmSync(this.work, { recursive: true, force: true });
      if (this.opts.tsblockParent) fs.rmSync(this.tsb.o.root, { recursive: true, force: true });
    }
    return left;
  }
}

/** named finds a snapshot by containerd name among tsblock keys. */
export function named(list: Snap[], name: string): Snap | undefined {
  return list.find((s) => s.key === name || s.key.endsWith(`/${name}`));
}
