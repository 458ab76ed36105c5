// Restarting tsblock under Kubernetes' CRI: a real containerd 2.x
// (TSBLOCK_CRI_CONTAINERD, default install-tools.sh's 2.4) driven by crictl,
// tsblock the CRI image snapshotter (deploy/containerd/config-2.x.toml with
// its `snapshotter = "tsblock"` line on), served on a socket the test holds
// and passes by socket activation (test/e2e/lib/tsblock.ts: what
// tsblock.socket and scripts/launch.mjs do), a pod and a container running.
// tsblock is restarted
//   - by handoff (TSBLOCK_HANDOFF_FROM: what the launcher's restart does),
//   - by stop + start on the held socket (systemctl restart, a crash and Restart=),
//   - by a slow stop + start and a slow handoff (TSBLOCK_TEST_START_DELAY_MS:
//     the first call lands while the store is still closed),
//   - by SIGHUP to the daemon (systemctl reload: it spawns its successor),
// and each time the very first CRI call that needs the snapshotter (a pull
// of a new image, or crictl create + start of a new container) is made at
// once, with no retry and no wait, and must succeed; the running container
// keeps running and exec into it works. At the end everything is removed,
// containerd's GC must have emptied tsblock, containerd logged no error and
// tsblock no failed call, and nothing is left mounted, attached or running.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { ActivatedTsblock, readFrom } from '../e2e/lib/tsblock.js';
import { helloImage, manyImage, busyboxMissing, type BuiltImage } from '../e2e/lib/images.js';
import { registryMissing, startRegistry, type LocalRegistry } from '../e2e/lib/registry.js';
import { baseConfig } from './lib/base.js';
import { hostsDir, pushPause } from './lib/pause.js';
import { mergeToml, repoFile, withSocket } from './lib/snippets.js';
import { leaks, releaseAll, run, startContainerd, type Containerd } from './lib/stack.js';
import { REPO, cri2, crictl, missing, requireAll, rootMissing, type ContainerdTools } from './lib/tools.js';

const tools = cri2();
const cc = crictl();
const why = missing(
  rootMissing(),
  typeof tools === 'string' ? tools : undefined,
  typeof cc === 'string' ? cc : undefined,
  registryMissing(),
  busyboxMissing(),
);
const skip = why !== undefined && !requireAll;
const label = typeof tools === 'string' ? '' : ` ${tools.version}`;
/** SLOW_START_MS delays the store's opening past containerd's ~1 s handshake window and its 3 s longest backoff. */
const SLOW_START_MS = 3500;
const STEP = 300_000;

if (skip) {
  describe.skip(`CRI across tsblock restarts (skipped: ${why})`, () => {
    it('needs its tools', () => undefined);
  });
}
if (why !== undefined && requireAll) {
  describe('CRI across tsblock restarts: prerequisites (CI)', () => {
    it('has every tool it needs', () => {
      throw new Error(`cannot run: ${why}`);
    });
  });
}

interface Ctx {
  dir: string;
  reg: LocalRegistry;
  img: BuiltImage;
  ref: string;
  /** a second image, pulled only after a restart */
  many: BuiltImage;
  manyRef: string;
  pause: string;
  ts: ActivatedTsblock;
  cd: Containerd;
  crictl(args: string[], timeout?: number): Promise<string>;
}

function time(what: string, ms: number): void {
  console.log(`[cri-restart] containerd${label}: ${what}: ${ms} ms`);
}

/** alive is whether pid is a live (not zombie) process. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe.runIf(why === undefined).sequential(`CRI across tsblock restarts (handoff, stop + start, slow start, SIGHUP), containerd${label}`, () => {
  const ctx = {} as Ctx;
  let podId = '';
  let podFile = '';
  let longId = '';
  let longPid = 0;
  /** the SIGHUP successor (not our child: its parent is the daemon it replaced) */
  let successor = 0;
  const started: string[] = [];
  let t0 = 0;

  beforeAll(async () => {
    t0 = Date.now();
    const dir = fs.mkdtempSync(path.join('/var/tmp', 'tsblock-cri-restart-'));
    ctx.dir = dir;
    for (const d of ['cni-bin', 'cni-conf', 'pods', 'registry']) fs.mkdirSync(path.join(dir, d));
    ctx.reg = await startRegistry(path.join(dir, 'registry'));
    ctx.img = await helloImage({ ref: 'docker.io/library/cri-restart-hello:latest' });
    ctx.ref = await ctx.reg.push(ctx.img);
    ctx.many = await manyImage({ layers: 10, ref: 'docker.io/library/cri-restart-many:latest' });
    ctx.manyRef = await ctx.reg.push(ctx.many);
    ctx.pause = await pushPause(ctx.reg.host);
    const hosts = hostsDir(path.join(dir, 'hosts'), ctx.reg.host);
    ctx.ts = new ActivatedTsblock({ repo: REPO, root: path.join(dir, 'tsblock'), socket: path.join(dir, 'tsblock.sock'), backend: 'blockfile', args: ['--base-size', '512M'], log: path.join(dir, 'tsblock.log') });
    await ctx.ts.start();
    const line = '  # snapshotter = "tsblock"';
    const deploy = withSocket(repoFile('deploy/containerd/config-2.x.toml'), ctx.ts.o.socket);
    if (!deploy.includes(line)) throw new Error(`deploy/containerd/config-2.x.toml lost its line ${line.trim()}`);
    ctx.cd = await startContainerd(tools as ContainerdTools, dir, mergeToml(baseConfig(dir, ctx.pause, hosts), deploy.replace(line, '  snapshotter = "tsblock"')));
    const bin = (cc as { bin: string }).bin;
    const cfg = path.join(dir, 'crictl.yaml');
    fs.writeFileSync(cfg, `runtime-endpoint: unix://${ctx.cd.address}\nimage-endpoint: unix://${ctx.cd.address}\ntimeout: 60\n`);
    ctx.crictl = (args, timeout) => run(bin, ['--config', cfg, ...args], { timeout: timeout ?? 120_000 });
  }, STEP);

  afterAll(async () => {
    if (!ctx.dir) return;
    if (ctx.crictl) {
      for (const p of (await ctx.crictl(['pods', '-q']).catch(() => '')).split('\n').filter(Boolean)) {
        await ctx.crictl(['stopp', p]).catch(() => undefined);
        await ctx.crictl(['rmp', '-f', p]).catch(() => undefined);
      }
    }
    const address = ctx.cd?.address;
    await ctx.cd?.stop();
    await stopSuccessor();
    await ctx.ts?.release();
    await releaseAll(ctx.dir, address);
    await ctx.reg?.stop();
    if (leaks(ctx.dir).length === 0) fs.rmSync(ctx.dir, { recursive: true, force: true });
    else console.error(`[cri-restart] left ${ctx.dir} in place: ${leaks(ctx.dir).join(', ')}`);
    console.log(`[cri-restart] containerd${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }, STEP);

  /** stopSuccessor stops the SIGHUP successor by its pid (SIGTERM, SIGKILL after 30 s); true when it went by SIGTERM. */
  async function stopSuccessor(): Promise<boolean> {
    if (successor === 0 || !alive(successor)) return true;
    process.kill(successor, 'SIGTERM');
    const deadline = Date.now() + 30_000;
    while (alive(successor) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!alive(successor)) return true;
    process.kill(successor, 'SIGKILL');
    return false;
  }

  function containerConfig(name: string, command: string[]): string {
    const file = path.join(ctx.dir, `${name}-ctr.json`);
    fs.writeFileSync(file, JSON.stringify({ metadata: { name }, image: { image: ctx.ref }, command, log_path: `${name}.log`, linux: {} }));
    return file;
  }

  async function inspect(id: string): Promise<{ state: string; pid: number }> {
    const j = JSON.parse(await ctx.crictl(['inspect', id])) as { status: { state: string }; info?: { pid?: number } };
    return { state: j.status.state, pid: j.info?.pid ?? 0 };
  }

  /** newContainer is the first call after a restart: crictl create (a Prepare in tsblock) with no retry, then start; returns create's ms. */
  async function newContainer(name: string): Promise<number> {
    const c0 = Date.now();
    const id = (await ctx.crictl(['create', podId, containerConfig(name, ['/bin/sleep', 'inf']), podFile])).trim();
    const ms = Date.now() - c0;
    started.push(id);
    await ctx.crictl(['start', id]);
    expect((await inspect(id)).state).toBe('CONTAINER_RUNNING');
    expect((await ctx.crictl(['exec', '-s', id, 'cat', '/etc/hello'])).trimEnd()).toBe('hello from the image layer');
    return ms;
  }

  /** stillRunning: the container started before every restart runs on, same process, and exec into it works. */
  async function stillRunning(): Promise<void> {
    const s = await inspect(longId);
    expect(s.state).toBe('CONTAINER_RUNNING');
    expect(s.pid).toBe(longPid);
    expect(alive(longPid), `container process ${longPid}`).toBe(true);
    expect((await ctx.crictl(['exec', '-s', longId, 'sh', '-c', 'cat /etc/hello; echo again > /tmp/x && cat /tmp/x'])).trimEnd()).toBe('hello from the image layer\nagain');
  }

  it('runs a pod and a container on tsblock', async () => {
    await ctx.crictl(['pull', ctx.ref]);
    const logDir = path.join(ctx.dir, 'pods', 'cri-restart');
    fs.mkdirSync(logDir, { recursive: true });
    podFile = path.join(ctx.dir, 'cri-restart-pod.json');
    fs.writeFileSync(podFile, JSON.stringify({ metadata: { name: 'cri-restart', namespace: 'cri-test', uid: 'uid-cri-restart', attempt: 0 }, log_directory: logDir, linux: { security_context: { namespace_options: { network: 2 } } } }));
    podId = (await ctx.crictl(['runp', podFile])).trim();
    longId = (await ctx.crictl(['create', podId, containerConfig('c-long', ['/bin/sleep', 'inf']), podFile])).trim();
    await ctx.crictl(['start', longId]);
    const s = await inspect(longId);
    expect(s.state).toBe('CONTAINER_RUNNING');
    longPid = s.pid;
    expect(longPid).toBeGreaterThan(0);
    // its root is a tsblock image: ext4 on a loop device backed by a file under tsblock's root
    const root = (await ctx.crictl(['exec', '-s', longId, 'cat', '/proc/mounts'])).split('\n').find((l) => l.split(' ')[1] === '/') ?? '';
    const [src, , type] = root.split(' ');
    expect(type).toBe('ext4');
    expect(fs.readFileSync(`/sys/block/${path.basename(src ?? '')}/loop/backing_file`, 'utf8').startsWith(`${ctx.ts.o.root}/`)).toBe(true);
  }, STEP);

  it('handoff (the launcher\'s restart): the first CRI call after it, a pull of a new image unpacked into tsblock, succeeds', async () => {
    const h = await ctx.ts.handoff();
    time('handoff until the new daemon serves', h.ms);
    expect(await h.predecessorExited, "the old daemon exits 0 on its successor's SIGTERM").toBe(true);
    const c0 = Date.now();
    await ctx.crictl(['pull', ctx.manyRef]);
    time('first call after the handoff: crictl pull of a 10-layer image', Date.now() - c0);
    expect((await ctx.ts.snapshots()).some((s) => s.key.endsWith(ctx.many.chainId))).toBe(true);
    await stillRunning();
  }, STEP);

  it('stop + start on the held socket: the first CRI call after it, crictl create + start of a new container, succeeds', async () => {
    const r0 = Date.now();
    expect(await ctx.ts.stop(), 'tsblock exits 0 on SIGTERM').toBe(true);
    await ctx.ts.start();
    time('stop + start until serving', Date.now() - r0);
    time('first call after the stop + start: crictl create', await newContainer('c-after-restart'));
    await stillRunning();
  }, STEP);

  it(`a slow stop + start (store opening delayed ${SLOW_START_MS} ms): the first CRI call, made as soon as tsblock answers, waits for the store and succeeds`, async () => {
    const from = fs.statSync(ctx.ts.o.log).size;
    expect(await ctx.ts.stop(), 'tsblock exits 0 on SIGTERM').toBe(true);
    await ctx.ts.start({ env: { TSBLOCK_TEST_START_DELAY_MS: String(SLOW_START_MS) }, until: 'answering' });
    expect(readFrom(ctx.ts.o.log, from), 'the store is not open yet').not.toMatch(/"msg":"serving"/);
    time('first call during the slow start: crictl create (waits for the store)', await newContainer('c-after-slow-restart'));
    expect(readFrom(ctx.ts.o.log, from)).toMatch(/"msg":"serving"/);
    await stillRunning();
  }, STEP);

  it(`a slow handoff (store opening delayed ${SLOW_START_MS} ms): the first CRI call, made once the old daemon is gone and before the new store is open, waits and succeeds`, async () => {
    const from = fs.statSync(ctx.ts.o.log).size;
    const h = await ctx.ts.handoff({ env: { TSBLOCK_TEST_START_DELAY_MS: String(SLOW_START_MS) }, until: 'handoff' });
    expect(await h.predecessorExited, 'the old daemon exits 0').toBe(true);
    expect(readFrom(ctx.ts.o.log, from), 'the new store is not open yet').not.toMatch(/"msg":"serving"/);
    time('first call during the slow handoff: crictl create (waits for the store)', await newContainer('c-after-slow-handoff'));
    expect(readFrom(ctx.ts.o.log, from)).toMatch(/"msg":"serving"/);
    await stillRunning();
  }, STEP);

  it('SIGHUP (systemctl reload): the daemon hands over to the successor it spawns, and the first CRI call after it succeeds', async () => {
    const old = ctx.ts.pid;
    expect(old).toBeGreaterThan(0);
    const from = fs.statSync(ctx.ts.o.log).size;
    const r0 = Date.now();
    process.kill(old!, 'SIGHUP');
    const deadline = Date.now() + 60_000;
    let text = '';
    for (;;) {
      text = readFrom(ctx.ts.o.log, from);
      const m = /"successor":(\d+),[^\n]*"msg":"SIGHUP: handing over to a new daemon"/.exec(text);
      if (m) successor = Number(m[1]);
      // the successor serves (only it logs "serving" after the SIGHUP) and its predecessor is gone
      if (successor > 0 && ctx.ts.pid === undefined && /"msg":"serving"/.test(text)) break;
      if (Date.now() > deadline) throw new Error(`no handoff in 60 s:\n${text.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    time('SIGHUP until the successor serves and the old daemon exited', Date.now() - r0);
    expect(alive(successor)).toBe(true);
    time('first call after the SIGHUP handoff: crictl create', await newContainer('c-after-sighup'));
    await stillRunning();
  }, STEP);

  it('removes everything: containers, pod, images; containerd GC empties tsblock', async () => {
    for (const id of [longId, ...started]) await ctx.crictl(['stop', '-t', '2', id]);
    for (const id of [longId, ...started]) await ctx.crictl(['rm', id]);
    await ctx.crictl(['stopp', podId]);
    await ctx.crictl(['rmp', podId]);
    expect((await ctx.crictl(['pods', '-q'])).trim()).toBe('');
    await ctx.crictl(['rmi', ctx.ref, ctx.manyRef, ctx.pause]);
    const deadline = Date.now() + 30_000;
    let snaps = await ctx.ts.snapshots();
    while (snaps.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      snaps = await ctx.ts.snapshots();
    }
    expect(snaps).toEqual([]);
  }, STEP);

  it('no failed call: tsblock logged none, containerd logged no error', () => {
    expect(readFrom(ctx.ts.o.log)).not.toMatch(/"msg":"(rpc|diff rpc) failed"/);
    const lines = ctx.cd.errorLines();
    expect(lines, lines.join(' | ')).toEqual([]);
  });

  it('stops clean: nothing left mounted, attached or running', async () => {
    const address = ctx.cd.address;
    await ctx.cd.stop();
    expect(await stopSuccessor(), 'the SIGHUP successor exits on SIGTERM').toBe(true);
    await ctx.ts.release();
    expect(leaks(ctx.dir, address)).toEqual([]);
  }, STEP);
});
