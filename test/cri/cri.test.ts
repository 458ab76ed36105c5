// Kubernetes' CRI through a real containerd 2.x (TSBLOCK_CRI_CONTAINERD, default
// install-tools.sh's 2.4) and crictl, with `tsblock serve` as its proxy
// snapshotter; no kubelet. Images come from a local docker-registry.
//
// (A) tsblock is the CRI image snapshotter (deploy/containerd/config-2.x.toml
//     with its `# snapshotter = "tsblock"` line uncommented).
// (B) tsblock is only the snapshotter of the runtime handler `runc-tsblock`
//     (docs/containerd.md's snippet cri-2.x-runc-handler); the default handler
//     stays on overlayfs, and one image is used by both.
// Each mode: pull, pod sandbox (host network) + container, exec, logs, stop,
// remove container, pod and images, then containerd's GC must have removed
// every snapshot from tsblock; containerd's log has no error about tsblock;
// nothing is left mounted, attached or running.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { helloImage, busyboxMissing, type BuiltImage } from '../e2e/lib/images.js';
import { registryMissing, startRegistry, type LocalRegistry } from '../e2e/lib/registry.js';
import { baseConfig } from './lib/base.js';
import { hostsDir, pushPause } from './lib/pause.js';
import { mergeToml, repoFile, snippet, withSocket } from './lib/snippets.js';
import { leaks, releaseAll, run, startContainerd, startTsblock, type Containerd, type Tsblock } from './lib/stack.js';
import { cri2, crictl, missing, requireAll, rootMissing, type ContainerdTools } from './lib/tools.js';

const tools = cri2();
const cc = crictl();
const why = missing(
  rootMissing(),
  typeof tools === 'string' ? tools : undefined,
  typeof cc === 'string' ? cc : undefined,
  registryMissing(),
  busyboxMissing(),
);

interface Ctx {
  dir: string;
  reg: LocalRegistry;
  img: BuiltImage;
  ref: string;
  pause: string;
  ts: Tsblock;
  cd: Containerd;
  crictl(args: string[], timeout?: number): Promise<string>;
}

/** setup fills ctx step by step, so that teardown(ctx) releases whatever a failed setup started */
async function setup(t: ContainerdTools, mode: 'A' | 'B' | 'C', ctx: Ctx): Promise<Ctx> {
  const dir = fs.mkdtempSync(path.join('/var/tmp', `tsblock-cri-${mode}-`));
  ctx.dir = dir;
  for (const d of ['cni-bin', 'cni-conf', 'pods', 'registry']) fs.mkdirSync(path.join(dir, d));
  ctx.reg = await startRegistry(path.join(dir, 'registry'));
  ctx.img = await helloImage({ ref: 'docker.io/library/cri-hello:latest' });
  ctx.ref = await ctx.reg.push(ctx.img);
  ctx.pause = await pushPause(ctx.reg.host);
  const hosts = hostsDir(path.join(dir, 'hosts'), ctx.reg.host);
  ctx.ts = await startTsblock(dir);
  let deploy = withSocket(repoFile('deploy/containerd/config-2.x.toml'), ctx.ts.socket);
  const parts = [baseConfig(dir, ctx.pause, hosts)];
  if (mode === 'A') {
    // the deploy file's own switch for "tsblock for every pod"
    const line = '  # snapshotter = "tsblock"';
    if (!deploy.includes(line)) throw new Error(`deploy/containerd/config-2.x.toml lost its line ${line.trim()}`);
    deploy = deploy.replace(line, '  snapshotter = "tsblock"');
    parts.push(deploy);
  } else if (mode === 'B') {
    parts.push(deploy, withSocket(snippet('docs/containerd.md', 'cri-2.x-runc-handler'), ctx.ts.socket));
  } else {
    // the 1.x proxy snippet (no unpack_config) and tsblock as the CRI snapshotter
    parts.push(withSocket(snippet('docs/containerd.md', '1.x-config'), ctx.ts.socket).replace(/^version = 2$/m, ''), snippet('docs/containerd.md', 'cri-2.x-default'));
  }
  const config = mergeToml(...parts);
  ctx.cd = await startContainerd(t, dir, config);
  const bin = (cc as { bin: string }).bin;
  const ep = `unix://${ctx.cd.address}`;
  // its own config file: crictl otherwise warns about a missing /etc/crictl.yaml on every call
  const cfg = path.join(dir, 'crictl.yaml');
  fs.writeFileSync(cfg, `runtime-endpoint: ${ep}\nimage-endpoint: ${ep}\ntimeout: 60\n`);
  ctx.crictl = (args, timeout) => run(bin, ['--config', cfg, ...args], { timeout: timeout ?? 120_000 });
  return ctx;
}

async function teardown(ctx: Partial<Ctx> | undefined): Promise<void> {
  if (!ctx?.dir) return;
  if (ctx.crictl) {
    // pods (and their containers) first, whatever state a failed test left
    const pods = (await ctx.crictl(['pods', '-q']).catch(() => '')).split('\n').filter(Boolean);
    for (const p of pods) {
      await ctx.crictl(['stopp', p]).catch(() => undefined);
      await ctx.crictl(['rmp', '-f', p]).catch(() => undefined);
    }
  }
  const address = ctx.cd?.address;
  await ctx.cd?.stop();
  // tsblock first: releasing under a running tsblock would pull its store away
  await ctx.ts?.stop();
  await releaseAll(ctx.dir, address);
  await ctx.reg?.stop();
  if (leaks(ctx.dir).length === 0) fs.rmSync(ctx.dir, { recursive: true, force: true });
  else console.error(`[cri] left ${ctx.dir} in place: ${leaks(ctx.dir).join(', ')}`);
}

function podConfig(ctx: Ctx, name: string, annotations: Record<string, string> = {}): string {
  const logDir = path.join(ctx.dir, 'pods', name);
  fs.mkdirSync(logDir, { recursive: true });
  const file = path.join(ctx.dir, `${name}-pod.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      metadata: { name, namespace: 'cri-test', uid: `uid-${name}`, attempt: 0 },
      log_directory: logDir,
      annotations,
      // host network: no CNI needed
      linux: { security_context: { namespace_options: { network: 2 } } },
    }),
  );
  return file;
}

/** the probe Pod's container command in docs/kubernetes.md (its flow-style YAML sequence is JSON) */
function docsProbeCommand(): string[] {
  const m = /command:\s*(\[[^\]]*\])/.exec(snippet('docs/kubernetes.md', 'k8s-probe-pod'));
  if (!m) throw new Error('docs/kubernetes.md k8s-probe-pod: no command: [...]');
  return JSON.parse(m[1]!) as string[];
}

function containerConfig(ctx: Ctx, name: string, marker: string, command?: string[]): string {
  const file = path.join(ctx.dir, `${name}-ctr.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      metadata: { name },
      image: { image: ctx.ref },
      command: command ?? ['/bin/sh', '-c', `echo ${marker}; grep ' / ' /proc/mounts; exec sleep inf`],
      log_path: `${name}.log`,
      linux: {},
    }),
  );
  return file;
}

/** rootOf returns the container's root mount as seen inside it: [source, type]. */
async function rootOf(ctx: Ctx, cid: string): Promise<[string, string]> {
  const out = await ctx.crictl(['exec', '-s', cid, 'cat', '/proc/mounts']);
  const line = out.split('\n').find((l) => l.split(' ')[1] === '/');
  if (!line) throw new Error(`no / in the container's /proc/mounts:\n${out}`);
  const [src, , type] = line.split(' ');
  return [src!, type!];
}

/** backingFile of /dev/loopN (host side). */
function backingFile(dev: string): string {
  return fs.readFileSync(`/sys/block/${path.basename(dev)}/loop/backing_file`, 'utf8').trim();
}

async function state(ctx: Ctx, kind: 'inspect' | 'inspectp', id: string): Promise<string> {
  const j = JSON.parse(await ctx.crictl([kind, id])) as { status: { state: string } };
  return j.status.state;
}

async function waitNoSnapshots(ts: Tsblock, ms = 30_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  let keys = await ts.keys();
  while (keys.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    keys = await ts.keys();
  }
  return keys;
}

function tsblockErrors(cd: Containerd): string[] {
  return cd.errorLines().filter((l) => /tsblock/i.test(l));
}

const skip = why !== undefined && !requireAll;
const label = typeof tools === 'string' ? '' : ` ${tools.version}`;

if (skip) {
  describe.skip(`CRI through containerd 2.x (skipped: ${why})`, () => {
    it('needs its tools', () => undefined);
  });
}
if (why !== undefined && requireAll) {
  describe('CRI through containerd 2.x: prerequisites (CI)', () => {
    it('has every tool it needs', () => {
      throw new Error(`cannot run: ${why}`);
    });
  });
}

describe.runIf(why === undefined).sequential(`CRI (A) tsblock as the CRI image snapshotter, containerd${label}`, () => {
  const ctx = {} as Ctx;
  let t0 = 0;
  let podId = '';
  let cid = '';
  beforeAll(async () => {
    t0 = Date.now();
    await setup(tools as ContainerdTools, 'A', ctx);
  });
  afterAll(async () => {
    await teardown(ctx);
    console.log(`[cri] mode A on containerd${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  it('containerd loads the tsblock proxy plugin and the CRI plugin', async () => {
    const out = await ctx.cd.ctr(['plugins', 'ls']);
    expect(out).toMatch(/io\.containerd\.snapshotter\.v1\s+tsblock\s+\S+\s+ok/);
    expect(out).toMatch(/io\.containerd\.grpc\.v1\s+cri\s+-\s+ok/);
    const info = JSON.parse(await ctx.crictl(['info'])) as { status: { conditions: { type: string; status: boolean }[] } };
    expect(info.status.conditions.find((c) => c.type === 'RuntimeReady')?.status).toBe(true);
  });

  it('pulls an image into tsblock', async () => {
    await ctx.crictl(['pull', ctx.ref]);
    expect(await ctx.crictl(['images', '-q', ctx.ref])).toMatch(/sha256:/);
    // unpacked at pull time: the image's chain is committed in tsblock
    const snaps = await ctx.cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'tsblock', 'ls']);
    expect(snaps).toContain(ctx.img.chainId);
    expect((await ctx.ts.keys()).some((k) => k.endsWith(ctx.img.chainId))).toBe(true);
  });

  it('runs a pod sandbox (host network)', async () => {
    podId = (await ctx.crictl(['runp', podConfig(ctx, 'cri-a')])).trim();
    expect(podId).toMatch(/^[0-9a-f]{64}$/);
    expect(await state(ctx, 'inspectp', podId)).toBe('SANDBOX_READY');
  });

  it('creates and starts a container in it', async () => {
    cid = (await ctx.crictl(['create', podId, containerConfig(ctx, 'c-a', 'hello-from-cri-a'), podConfig(ctx, 'cri-a')])).trim();
    await ctx.crictl(['start', cid]);
    expect(await state(ctx, 'inspect', cid)).toBe('CONTAINER_RUNNING');
  });

  it('exec: the container root is ext4 on a loop device over a tsblock image', async () => {
    const [src, type] = await rootOf(ctx, cid);
    expect(type).toBe('ext4');
    expect(src).toMatch(/^\/dev\/loop\d+$/);
    expect(backingFile(src).startsWith(`${ctx.ts.root}/`)).toBe(true);
    // tsblock ls shows the container's snapshot in containerd's k8s.io namespace
    expect((await ctx.ts.keys()).filter((k) => k.startsWith('k8s.io/')).length).toBeGreaterThan(0);
    // (crictl exec -s appends blank lines of its own)
    expect((await ctx.crictl(['exec', '-s', cid, 'sh', '-c', 'echo written > /tmp/x && cat /tmp/x /etc/hello'])).trimEnd()).toBe('written\nhello from the image layer');
  });

  it('logs', async () => {
    const out = await ctx.crictl(['logs', cid]);
    expect(out).toContain('hello-from-cri-a');
    expect(out).toMatch(/^\/dev\/loop\d+ \/ ext4 /m);
  });

  it('stops the container', async () => {
    await ctx.crictl(['stop', '-t', '2', cid]);
    expect(await state(ctx, 'inspect', cid)).toBe('CONTAINER_EXITED');
  });

  it('removes the container and the pod', async () => {
    await ctx.crictl(['rm', cid]);
    await ctx.crictl(['stopp', podId]);
    await ctx.crictl(['rmp', podId]);
    expect((await ctx.crictl(['pods', '-q'])).trim()).toBe('');
    // only committed image layers are left in tsblock
    const active = (await ctx.cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'tsblock', 'ls'])).split('\n').filter((l) => /\bActive\b/.test(l));
    expect(active).toEqual([]);
  });

  it('removes the images, and containerd GC removes every snapshot from tsblock', async () => {
    await ctx.crictl(['rmi', ctx.ref, ctx.pause]);
    expect((await ctx.crictl(['images', '-q'])).trim()).toBe('');
    expect(await waitNoSnapshots(ctx.ts)).toEqual([]);
  });

  it("containerd's log has no error lines about tsblock", () => {
    const lines = tsblockErrors(ctx.cd);
    expect(lines, lines.join(' | ')).toEqual([]);
  });

  it("containerd's log has no error lines at all (the whole CRI flow ran clean)", () => {
    const lines = ctx.cd.errorLines();
    expect(lines, lines.join(' | ')).toEqual([]);
  });

  it('stops clean: nothing left mounted, attached or running', async () => {
    const address = ctx.cd.address;
    await ctx.cd.stop();
    await ctx.ts.stop();
    expect(leaks(ctx.dir, address)).toEqual([]);
  });
});

describe.runIf(why === undefined).sequential(`CRI (C) without unpack_config for tsblock, containerd${label}`, () => {
  const ctx = {} as Ctx;
  beforeAll(async () => {
    await setup(tools as ContainerdTools, 'C', ctx);
  });
  afterAll(() => teardown(ctx));

  it('a CRI pull into tsblock fails with "no unpack platforms defined" (why the deploy file lists tsblock)', async () => {
    await expect(ctx.crictl(['pull', ctx.ref])).rejects.toThrow(/no unpack platforms defined/);
    expect(await ctx.ts.keys()).toEqual([]);
  });
});

describe.runIf(why === undefined).sequential(`CRI (B) tsblock as one runtime handler's snapshotter, overlayfs by default, containerd${label}`, () => {
  const ctx = {} as Ctx;
  let t0 = 0;
  const pod = { def: '', ts: '' };
  const ctr = { def: '', ts: '' };
  const HANDLER = 'runc-tsblock';
  beforeAll(async () => {
    t0 = Date.now();
    await setup(tools as ContainerdTools, 'B', ctx);
  });
  afterAll(async () => {
    await teardown(ctx);
    console.log(`[cri] mode B on containerd${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  it('containerd loads tsblock and the runc-tsblock handler', async () => {
    expect(await ctx.cd.ctr(['plugins', 'ls'])).toMatch(/io\.containerd\.snapshotter\.v1\s+tsblock\s+\S+\s+ok/);
    const info = JSON.parse(await ctx.crictl(['info'])) as { config: { containerd: { runtimes: Record<string, { snapshotter?: string }> } } };
    expect(info.config.containerd.runtimes[HANDLER]?.snapshotter).toBe('tsblock');
  });

  it('pulls the image for the default handler into overlayfs only', async () => {
    await ctx.crictl(['pull', ctx.ref]);
    expect(await ctx.cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'overlayfs', 'ls'])).toContain(ctx.img.chainId);
    expect(await ctx.ts.keys()).toEqual([]);
  });

  it('pulls the same image for the runc-tsblock handler into tsblock (layers were kept: discard_unpacked_layers = false)', async () => {
    const podFile = podConfig(ctx, 'cri-b-ts', { 'io.containerd.cri.runtime-handler': HANDLER });
    await ctx.crictl(['pull', '--pod-config', podFile, ctx.ref]);
    expect(await ctx.cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'tsblock', 'ls'])).toContain(ctx.img.chainId);
  });

  it('runs a pod sandbox on each handler (host network)', async () => {
    pod.def = (await ctx.crictl(['runp', podConfig(ctx, 'cri-b-def')])).trim();
    pod.ts = (await ctx.crictl(['runp', '--runtime', HANDLER, podConfig(ctx, 'cri-b-ts', { 'io.containerd.cri.runtime-handler': HANDLER })])).trim();
    expect(await state(ctx, 'inspectp', pod.def)).toBe('SANDBOX_READY');
    expect(await state(ctx, 'inspectp', pod.ts)).toBe('SANDBOX_READY');
  });

  it('creates and starts a container of the same image in each', async () => {
    ctr.def = (await ctx.crictl(['create', pod.def, containerConfig(ctx, 'c-def', 'hello-from-default'), podConfig(ctx, 'cri-b-def')])).trim();
    // the tsblock one runs docs/kubernetes.md's probe command
    ctr.ts = (await ctx.crictl(['create', pod.ts, containerConfig(ctx, 'c-ts', '', docsProbeCommand()), podConfig(ctx, 'cri-b-ts', { 'io.containerd.cri.runtime-handler': HANDLER })])).trim();
    await ctx.crictl(['start', ctr.def]);
    await ctx.crictl(['start', ctr.ts]);
    expect(await state(ctx, 'inspect', ctr.def)).toBe('CONTAINER_RUNNING');
    expect(await state(ctx, 'inspect', ctr.ts)).toBe('CONTAINER_RUNNING');
  });

  it("exec: the runc-tsblock container's root is ext4 on a tsblock loop device, the default one's is overlay", async () => {
    const [src, type] = await rootOf(ctx, ctr.ts);
    expect(type).toBe('ext4');
    expect(src).toMatch(/^\/dev\/loop\d+$/);
    expect(backingFile(src).startsWith(`${ctx.ts.root}/`)).toBe(true);
    const [, dtype] = await rootOf(ctx, ctr.def);
    expect(dtype).toBe('overlay');
    for (const c of [ctr.def, ctr.ts]) expect((await ctx.crictl(['exec', '-s', c, 'cat', '/etc/hello'])).trimEnd()).toBe('hello from the image layer');
  });

  it('logs', async () => {
    // what docs/kubernetes.md says the probe shows with a runc handler on tsblock
    expect(await ctx.crictl(['logs', ctr.ts])).toMatch(/^\/dev\/loop\d+ \/ ext4 /);
    expect(await ctx.crictl(['logs', ctr.def])).toMatch(/hello-from-default\noverlay \/ overlay /);
  });

  it('stops the containers', async () => {
    for (const c of [ctr.def, ctr.ts]) await ctx.crictl(['stop', '-t', '2', c]);
    expect(await state(ctx, 'inspect', ctr.ts)).toBe('CONTAINER_EXITED');
    expect(await state(ctx, 'inspect', ctr.def)).toBe('CONTAINER_EXITED');
  });

  it('removes the containers and the pods', async () => {
    for (const c of [ctr.def, ctr.ts]) await ctx.crictl(['rm', c]);
    for (const p of [pod.def, pod.ts]) {
      await ctx.crictl(['stopp', p]);
      await ctx.crictl(['rmp', p]);
    }
    expect((await ctx.crictl(['pods', '-q'])).trim()).toBe('');
  });

  it('removes the images, and containerd GC removes every snapshot from tsblock (and overlayfs)', async () => {
    await ctx.crictl(['rmi', ctx.ref, ctx.pause]);
    expect(await waitNoSnapshots(ctx.ts)).toEqual([]);
    expect((await ctx.cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'overlayfs', 'ls'])).trim().split('\n').slice(1)).toEqual([]);
  });

  it("containerd's log has no error lines about tsblock", () => {
    const lines = tsblockErrors(ctx.cd);
    expect(lines, lines.join(' | ')).toEqual([]);
  });

  it("containerd's log has no error lines at all (the whole CRI flow ran clean)", () => {
    const lines = ctx.cd.errorLines();
    expect(lines, lines.join(' | ')).toEqual([]);
  });

  it('containerd logged that the runtime-handler annotation is deprecated (docs/containerd.md says so)', () => {
    expect(fs.readFileSync(ctx.cd.log, 'utf8')).toMatch(/Using deprecated annotation .*io\.containerd\.cri\.runtime-handler/);
  });

  it('stops clean: nothing left mounted, attached or running', async () => {
    const address = ctx.cd.address;
    await ctx.cd.stop();
    await ctx.ts.stop();
    expect(leaks(ctx.dir, address)).toEqual([]);
  });
});

