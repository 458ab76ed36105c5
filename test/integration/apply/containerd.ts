// containerd starts a private containerd 1.6 (own root, state, sockets,
// config; CRI off) with tsblock as a proxy snapshotter, for the tests that
// compare tsblock's applier with containerd's and check that containerd
// reuses chains `tsblock import` seeded. Also used by test/bench/apply.mjs's
// logic (mirrored there in plain JS).

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { writeLayoutArchive, type OciLayerBlob } from '../../fixtures/layers/oci.js';
import { listTree } from './tree.js';

/** containerdMissing explains why containerd-based tests cannot run (undefined when they can). */
export function containerdMissing(): string | undefined {
  for (const bin of ['/usr/bin/containerd', '/usr/bin/ctr', '/usr/sbin/runc']) if (!fs.existsSync(bin)) return `${bin} is not installed`;
  if (process.getuid?.() !== 0) return 'needs root';
  return undefined;
}

/** Containerd is a running private containerd. */
export interface Containerd {
  address: string;
  root: string;
  ctr(args: string[], timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** startContainerd writes a config under work and starts containerd with the given proxy snapshotters. */
export async function startContainerd(work: string, proxies: Record<string, string>): Promise<Containerd> {
  const root = path.join(work, 'containerd', 'root');
  const state = path.join(work, 'containerd', 'state');
  const address = path.join(work, 'containerd.sock');
  const lines = [
    'version = 2',
    `root = "${root}"`,
    `state = "${state}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${address}"`,
    '[ttrpc]',
    `  address = "${address}.ttrpc"`,
    // Fewer background GC runs (explicit `--sync` removals still collect):
    // snapshots `ctr snapshots view` makes carry no lease.
    '[plugins."io.containerd.gc.v1.scheduler"]',
    '  mutation_threshold = 1000000',
    '  deletion_threshold = 0',
    '[proxy_plugins]',
    ...Object.entries(proxies).flatMap(([name, sock]) => [`  [proxy_plugins.${name}]`, '    type = "snapshot"', `    address = "${sock}"`]),
  ];
  fs.mkdirSync(path.join(work, 'containerd'), { recursive: true });
  const cfg = path.join(work, 'containerd', 'config.toml');
  fs.writeFileSync(cfg, lines.join('\n') + '\n');
  const log = fs.openSync(path.join(work, 'containerd', 'containerd.log'), 'a');
  const proc: ChildProcess = spawn('/usr/bin/containerd', ['--config', cfg], { stdio: ['ignore', log, log], detached: false });
  fs.closeSync(log);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const ctr = async (args: string[], timeoutMs = 300_000): Promise<string> => {
    const r = await execa('/usr/bin/ctr', ['--address', address, '--namespace', 'tsblocktest', ...args], { timeout: timeoutMs, env: { TMPDIR: work } });
    return r.stdout;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`containerd exited: ${fs.readFileSync(path.join(work, 'containerd', 'containerd.log'), 'utf8').slice(-2000)}`);
    if (fs.existsSync(address)) {
      try {
        await ctr(['version'], 5000);
        break;
      } catch {
        // not ready yet
      }
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error('containerd did not come up in 30 s');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    address,
    root,
    ctr,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** goBinary finds the Go toolchain (PATH, then /usr/local/go as install-deps.sh installs it). */
function goBinary(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/go/bin']) {
    if (fs.existsSync(path.join(dir, 'go'))) return path.join(dir, 'go');
  }
  return undefined;
}

/**
 * buildPullUnpack builds test/go/ctrd1/cmd/pullunpack (containerd 1.7's Go
 * client pull + unpacker, the version test/versions.env pins) with `go build`
 * from its module into ${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools}/pullunpack.
 * It always runs go build (the Go build cache makes a rebuild about a second)
 * so the binary is never stale. Returns a reason instead of a binary when Go is
 * missing or the build fails; the caller decides whether that skips or fails
 * (it fails under CI).
 */
export async function buildPullUnpack(): Promise<{ bin?: string; reason?: string }> {
  const go = goBinary();
  if (!go) return { reason: 'go is not installed (scripts/install-deps.sh --test installs it)' };
  const mod = fileURLToPath(new URL('../../go/ctrd1', import.meta.url));
  const tools = process.env.TSBLOCK_TOOLS_DIR || '/var/cache/tsblock-tools';
  const bin = path.join(tools, 'pullunpack');
  try {
    fs.mkdirSync(tools, { recursive: true });
    await execa(go, ['build', '-o', `${bin}.tmp`, './cmd/pullunpack'], { cwd: mod, env: { CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' }, timeout: 600_000 });
    fs.renameSync(`${bin}.tmp`, bin);
  } catch (err) {
    fs.rmSync(`${bin}.tmp`, { force: true });
    return { reason: `building pullunpack (go build in ${mod}) failed: ${(err as Error).message.slice(0, 600)}` };
  }
  return { bin };
}

/**
 * containerdTree applies `layers` with containerd's own applier (`ctr images
 * import --snapshotter native`, Go archive/tar.go) and lists the tree of the
 * top chain ID `top` the way the tests list tsblock's (listTree with mtimes),
 * then removes the image again. The reference for "tsblock applies a layer
 * exactly as containerd does".
 */
export async function containerdTree(cd: Containerd, work: string, layers: OciLayerBlob[], ref: string, top: string): Promise<string[]> {
  const archive = path.join(work, `${ref.replace(/[^a-z0-9]+/gi, '_')}.tar`);
  await writeLayoutArchive(archive, ref, layers);
  await cd.ctr(['images', 'import', '--snapshotter', 'native', archive]);
  try {
    // ctr's views carry no lease: containerd's GC may collect one at any
    // moment, so list it right away and retry if it vanished meanwhile.
    for (let attempt = 0; ; attempt++) {
      const key = `cmp-view-${attempt}`;
      try {
        await cd.ctr(['snapshots', '--snapshotter', 'native', 'view', key, top]);
        const out = await cd.ctr(['snapshots', '--snapshotter', 'native', 'mounts', '/unused', key]);
        const src = out.trim().split(/\s+/)[3]!; // "mount -t bind <source> <target> -o ro,rbind"
        const tree = listTree(src, { mtimes: true, skip: [] });
        await cd.ctr(['snapshots', '--snapshotter', 'native', 'rm', key]).catch(() => '');
        return tree;
      } catch (err) {
        if (attempt >= 4) throw err;
      }
    }
  } finally {
    await cd.ctr(['images', 'rm', '--sync', ref]).catch(() => '');
    fs.rmSync(archive, { force: true });
  }
}
