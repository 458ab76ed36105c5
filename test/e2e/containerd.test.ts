// End to end through a real containerd + ctr + runc: a private containerd
// (own root, state, sockets, config) of the release in
// $TSBLOCK_E2E_CONTAINERD (a bin dir with containerd, ctr and
// containerd-shim-runc-v2; default /usr/bin = Debian's 1.6), tsblock served
// on a socket the test holds and passes by socket activation (so it
// outlives a tsblock restart, as with tsblock.socket), images pulled from a
// real local registry (Debian's docker-registry) and imported from an OCI
// archive, containers run with runc. On 2.x tsblock is also containerd's
// differ (a `type = "diff"` proxy plugin on the same socket, picked by the
// transfer service's unpack_config `differ` and by the diff service's
// order for client-side unpacks), and its log must show it applied every
// layer.
//
//   sudo test/e2e/run.sh [--containerd BIN_DIR] [--backend B] [--layers N]   (ends "N passed, M failed, K skipped")
//   sudo npx vitest run test/e2e
//   env: TSBLOCK_E2E_CONTAINERD=/var/cache/tsblock-tools/containerd-v2.4.2/bin
//        TSBLOCK_E2E_BACKEND=blockfile|devmapper (devmapper: --data-size 2G --base-size 256M; VM only)
//        TSBLOCK_E2E_LAYERS=130  TSBLOCK_E2E_TMPDIR=/var/tmp  TSBLOCK_E2E_KEEP=1 (keep the work dir)
// Missing tools skip with the reason; under CI=true or TSBLOCK_REQUIRE_ALL=1 they fail.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { hasLoop, isRoot } from '../helpers/env.js';
import { leaksUnder } from '../helpers/leaks.js';
import { containerdBins, containerdConfig, PrivateContainerd, runcMissing, type ContainerdBins } from './lib/containerd.js';
import { busyboxMissing, helloImage, manyImage, writeImageArchive, type BuiltImage } from './lib/images.js';
import { registryMissing, startRegistry, type LocalRegistry } from './lib/registry.js';
import { ActivatedTsblock, readFrom } from './lib/tsblock.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const BIN_DIR = process.env.TSBLOCK_E2E_CONTAINERD || '/usr/bin';
const BACKEND = process.env.TSBLOCK_E2E_BACKEND || 'blockfile';
const LAYERS = Number(process.env.TSBLOCK_E2E_LAYERS || 130);
const TMPBASE = process.env.TSBLOCK_E2E_TMPDIR || '/var/tmp';
const REQUIRE_ALL = process.env.CI === 'true' || process.env.TSBLOCK_REQUIRE_ALL === '1';
const SN = 'tsblock';
const DIFFER = 'tsblock-diff';
const STEP = 900_000;
/** SLOW_START_MS is the slow restart's store-opening delay: past containerd's 1 s handshake window and its 3 s longest backoff. */
const SLOW_START_MS = 3500;

function prerequisites(): { bins?: ContainerdBins; reason?: string } {
  if (BACKEND !== 'blockfile' && BACKEND !== 'devmapper') return { reason: `TSBLOCK_E2E_BACKEND=${BACKEND}: not blockfile or devmapper` };
  if (!Number.isInteger(LAYERS) || LAYERS < 10) return { reason: `TSBLOCK_E2E_LAYERS=${process.env.TSBLOCK_E2E_LAYERS}: needs an integer >= 10` };
  if (!isRoot) return { reason: 'needs root (containerd, runc, mounts)' };
  if (!hasLoop) return { reason: 'needs loop devices (/dev/loop-control)' };
  if (BACKEND === 'devmapper' && !fs.existsSync('/dev/mapper/control')) {
    return { reason: 'devmapper backend needs device-mapper (/dev/mapper/control); it runs in the qemu VM (vm-tests/run-in-vm.sh)' };
  }
  if (!fs.existsSync(path.join(REPO, 'dist', 'cli.js'))) return { reason: 'dist/cli.js not built (npm run build)' };
  const b = containerdBins(BIN_DIR);
  if (!b.bins) return b;
  const why = runcMissing() ?? registryMissing() ?? busyboxMissing();
  return why ? { reason: why } : b;
}

const pre = prerequisites();

if (pre.reason && REQUIRE_ALL) {
  describe('e2e through containerd', () => {
    it('has what it needs (CI: a missing tool is a failure)', () => {
      throw new Error(pre.reason);
    });
  });
} else if (pre.reason) {
  describe.skip(`e2e through containerd (skipped: ${pre.reason})`, () => {
    it('runs', () => {});
  });
} else {
  e2e(pre.bins!);
}

interface Snap {
  key: string;
  kind: string;
  parent?: string;
}

function e2e(bins: ContainerdBins): void {
  const v2 = bins.major >= 2;
  const label = `containerd ${bins.version}, ${BACKEND}, ${LAYERS} layers`;
  fs.mkdirSync(TMPBASE, { recursive: true });
  const W = fs.mkdtempSync(path.join(TMPBASE, 'tsblock-e2e.'));
  const socket = path.join(W, 'tsblock.sock');
  const serveArgs = BACKEND === 'devmapper' ? ['--data-size', '2G', '--base-size', '256M'] : ['--base-size', '1G'];
  const cd = new PrivateContainerd(W, bins);
  // As tsblock's Diff service, it reads layer blobs from this containerd's content store.
  if (v2) serveArgs.push('--content-dir', path.join(cd.root, 'io.containerd.content.v1.content'));
  const tsb = new ActivatedTsblock({ repo: REPO, root: path.join(W, 'tsblock-root'), socket, backend: BACKEND as 'blockfile', args: serveArgs, log: path.join(W, 'tsblock.log') });
  const dmBefore = dmDevices();
  const times: [string, number][] = [];
  const time = (what: string, ms: number) => times.push([what, ms]);
  let registry: LocalRegistry | undefined;
  let hello: BuiltImage;
  let many: BuiltImage;
  let helloRef = '';
  let manyRef = '';
  let helloArchive = '';
  let applies = 0; // layers containerd unpacked (2.x: each must be a tsblock Apply)
  let tsbLogFrom = 0;
  let stopped = false;

  const ctr = (args: string[], timeoutMs?: number) => cd.ctr(args, timeoutMs);
  const snaps = () => tsb.snapshots() as Promise<Snap[]>;
  const named = (list: Snap[], name: string) => list.find((s) => s.key === name || s.key.endsWith(`/${name}`));
  const committed = async (chain: string) => {
    const s = named(await snaps(), chain);
    expect(s, `${chain} in tsblock ls`).toBeDefined();
    expect(s!.kind).toBe('committed');
  };
  const removeImages = async () => {
    for (const img of (await ctr(['images', 'ls', '-q'])).stdout.split('\n').filter(Boolean)) await ctr(['images', 'rm', '--sync', img]);
  };
  const removeContainer = async (id: string) => {
    await ctr(['tasks', 'kill', '-s', 'SIGKILL', id]).catch(() => undefined);
    for (let i = 0; i < 100; i++) {
      const t = (await ctr(['tasks', 'ls'])).stdout.split('\n').find((l) => l.split(/\s+/)[0] === id);
      if (!t || /STOPPED/.test(t)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await ctr(['tasks', 'rm', '-f', id]).catch(() => undefined);
    await ctr(['containers', 'rm', id]).catch(() => undefined);
  };

  afterAll(async () => {
    // Whatever happened above: stop everything this file started and release what is left.
    try {
      if (cd.pid) for (const c of (await ctr(['containers', 'ls', '-q']).catch(() => ({ stdout: '' }))).stdout.split('\n').filter(Boolean)) await removeContainer(c);
    } catch {
      // containerd gone
    }
    await cd.stop();
    await tsb.release();
    await registry?.stop();
    const left = leaksUnder(W);
    for (const l of left.filter((x) => x.startsWith('mount ')).reverse()) await tryRun('umount', ['-l', l.slice(6)]);
    for (const l of left.filter((x) => x.startsWith('loop '))) await tryRun('losetup', ['-d', l.split(' ')[1]!]);
    for (const d of dmDevices()) if (!dmBefore.has(d)) await tryRun('dmsetup', ['remove', '--force', d]);
    console.log(`e2e timings (${label}):\n${times.map(([w, ms]) => `  ${(ms / 1000).toFixed(1).padStart(6)} s  ${w}`).join('\n')}`);
    if (process.env.TSBLOCK_E2E_KEEP === '1' || !stopped) console.log(`e2e work dir kept: ${W}`);
    else fs.rmSync(W, { recursive: true, force: true });
  }, 300_000);

  describe(`e2e through ${label}`, () => {
    it(`builds the hello and the ${LAYERS}-layer images and pushes them to a local docker-registry`, async () => {
      let t0 = Date.now();
      hello = await helloImage();
      many = await manyImage({ layers: LAYERS });
      helloArchive = path.join(W, 'hello.tar');
      await writeImageArchive({ ...hello, ref: 'docker.io/library/e2e-hello-import:latest' }, helloArchive);
      time('build images', Date.now() - t0);
      t0 = Date.now();
      registry = await startRegistry(path.join(W, 'registry'));
      helloRef = await registry.push(hello);
      manyRef = await registry.push(many);
      time('registry start + push', Date.now() - t0);
      expect(many.layers.map((l) => l.mediaType.split('.').pop())).toEqual(expect.arrayContaining(['tar', 'tar+gzip', 'tar+zstd']));
    }, STEP);

    it('starts tsblock on a listening socket passed to it by socket activation (LISTEN_FDS/LISTEN_PID)', async () => {
      time('tsblock start', await tsb.start());
      expect(readFrom(tsb.o.log)).toMatch(/"socket":"fd:\/\/tsblock".*"msg":"serving"/);
    }, STEP);

    it(`starts a private containerd ${bins.version} with tsblock as its proxy snapshotter${v2 ? ' and differ' : ''}`, async () => {
      cd.writeConfig(
        containerdConfig({
          major: bins.major,
          root: cd.root,
          state: cd.state,
          address: cd.address,
          proxies: [{ name: SN, type: 'snapshot', address: socket }, ...(v2 ? [{ name: DIFFER, type: 'diff' as const, address: socket }] : [])],
          unpack: v2 ? [{ snapshotter: SN, differ: DIFFER }] : undefined,
          diffOrder: v2 ? [DIFFER, 'walking'] : undefined,
        }),
      );
      time('containerd start', await cd.start());
    }, STEP);

    it(`ctr plugins ls shows the tsblock snapshotter${v2 ? ' and the tsblock-diff differ' : ''} loaded (ok)`, async () => {
      const out = (await ctr(['plugins', 'ls'])).stdout;
      expect(out).toMatch(new RegExp(`^io\\.containerd\\.snapshotter\\.v1\\s+${SN}\\s+\\S+\\s+ok\\s*$`, 'm'));
      if (v2) expect(out).toMatch(new RegExp(`^io\\.containerd\\.differ\\.v1\\s+${DIFFER}\\s+\\S+\\s+ok\\s*$`, 'm'));
    }, STEP);

    it(`ctr images pull --plain-http --snapshotter tsblock unpacks the hello image from the registry into tsblock${v2 ? ' (transfer service)' : ''}`, async () => {
      const r = await ctr(['images', 'pull', '--plain-http', '--snapshotter', SN, helloRef]);
      time(`pull hello${v2 ? ' (transfer service)' : ''}`, r.ms);
      applies += 1;
      await committed(hello.chainId);
    }, STEP);

    if (v2) {
      it('ctr images pull --local (the client-side unpacker) unpacks it into tsblock again after the image was removed', async () => {
        await removeImages();
        expect(named(await snaps(), hello.chainId), 'GC removed the chain').toBeUndefined();
        const r = await ctr(['images', 'pull', '--local', '--plain-http', '--snapshotter', SN, helloRef]);
        time('pull hello (--local)', r.ms);
        applies += 1;
        await committed(hello.chainId);
      }, STEP);
    }

    it('ctr images import --snapshotter tsblock unpacks the hello image archive into tsblock', async () => {
      await removeImages();
      expect(named(await snaps(), hello.chainId), 'GC removed the chain').toBeUndefined();
      const r = await ctr(['images', 'import', '--snapshotter', SN, helloArchive]);
      time('import hello', r.ms);
      applies += 1;
      await committed(hello.chainId);
      expect((await ctr(['images', 'ls', '-q'])).stdout).toMatch(/e2e-hello-import:latest/);
    }, STEP);

    it('ctr run --rm prints /etc/hello, writes to its rootfs, and its root is ext4 on a block device', async () => {
      const script = 'cat /etc/hello; echo written > /tmp/w && cat /tmp/w; awk \'$2 == "/" {print "root:", $1, $3}\' /proc/mounts | tail -1';
      const r = await ctr(['run', '--rm', '--snapshotter', SN, 'docker.io/library/e2e-hello-import:latest', 'e2e-hello', '/bin/sh', '-c', script]);
      time('ctr run --rm hello', r.ms);
      const lines = r.stdout.trim().split(/\r?\n/);
      expect(lines).toContain('hello from the image layer');
      expect(lines).toContain('written');
      const root = lines.find((l) => l.startsWith('root: '));
      expect(root, r.stdout).toMatch(BACKEND === 'devmapper' ? /^root: \/dev\/mapper\/\S+ ext4$/ : /^root: \/dev\/loop\d+ ext4$/);
      console.log(`hello container: ${root}`);
    }, STEP);

    it("ctr run --rm removed the container's snapshot from tsblock", async () => {
      // containerd drops it from its metadata at once; the backend snapshot
      // goes in containerd's next garbage collection, which --rm schedules
      // but does not wait for (seen to take > 380 ms on a loaded 2.3).
      const t0 = Date.now();
      let list = await snaps();
      while (Date.now() - t0 < 15_000 && list.some((s) => s.kind === 'active' || named([s], 'e2e-hello'))) {
        await new Promise((r) => setTimeout(r, 200));
        list = await snaps();
      }
      time("--rm's snapshot gone from tsblock", Date.now() - t0);
      expect(list.filter((s) => s.kind === 'active').map((s) => s.key)).toEqual([]);
      expect(named(list, 'e2e-hello')).toBeUndefined();
      await expect(ctr(['snapshots', '--snapshotter', SN, 'info', 'e2e-hello'])).rejects.toThrow(/not found/);
    }, STEP);

    it(`ctr images pull unpacks the ${LAYERS}-layer image (gzip, zstd and plain layers) into tsblock`, async () => {
      const r = await ctr(['images', 'pull', '--plain-http', '--snapshotter', SN, manyRef]);
      time(`pull ${LAYERS}-layer image`, r.ms);
      applies += LAYERS;
      await committed(many.chainId);
      const list = await snaps();
      for (const c of many.chainIds) expect(named(list, c)?.kind, c).toBe('committed');
    }, STEP);

    it(`the ${LAYERS}-layer image's /data seen from inside a container equals the listing computed from its layers`, async () => {
      const r = await ctr(['run', '--rm', '--snapshotter', SN, manyRef, 'e2e-many', '/bin/list-data', '/data']);
      time(`ctr run --rm ${LAYERS}-layer listing`, r.ms);
      // execa drops the output's last newline; the listing ends with one.
      const got = `${r.stdout.replace(/\r\n/g, '\n')}\n`;
      if (got !== many.expected) {
        const d = lineDiff(many.expected!, got);
        console.log(`/data differs from the expected listing (- expected, + container):\n${d}`);
        fs.writeFileSync(path.join(W, 'many.expected'), many.expected!);
        fs.writeFileSync(path.join(W, 'many.got'), got);
      }
      expect(got).toBe(many.expected);
    }, STEP);

    it('a running container keeps running across a containerd restart, and ctr tasks exec works afterwards', async () => {
      await ctr(['run', '-d', '--snapshotter', SN, 'docker.io/library/e2e-hello-import:latest', 'e2e-long', '/bin/sleep', '100000']);
      const pid = taskPid((await ctr(['tasks', 'ls'])).stdout, 'e2e-long');
      expect(pid).toBeGreaterThan(0);
      const t0 = Date.now();
      expect(await cd.stop(), 'containerd exits on SIGTERM').toBe(true);
      await cd.start();
      time('containerd restart', Date.now() - t0);
      expect(alive(pid), `container process ${pid}`).toBe(true);
      const ls = (await ctr(['tasks', 'ls'])).stdout;
      expect(ls).toMatch(new RegExp(`^e2e-long\\s+${pid}\\s+RUNNING`, 'm'));
      const r = await ctr(['tasks', 'exec', '--exec-id', 'after-containerd', 'e2e-long', '/bin/cat', '/etc/hello']);
      expect(r.stdout.trim()).toBe('hello from the image layer');
    }, STEP);

    // containerd's proxy client reconnects by itself when a daemon goes away
    // (1.6 at once, 2.x at its next call) and gives the connection ~1 s to
    // see the HTTP/2 handshake (no MinConnectTimeout), else it fails calls
    // until its backoff (up to 3 s) runs out. tsblock answers before it opens
    // its store; a handoff (the successor answers before the old daemon
    // stops) also takes Node's own start out of that second. No call below is
    // retried and none waits (docs/reliability.md).
    const firstCall = async () => {
      const r = await ctr(['snapshots', '--snapshotter', SN, 'info', hello.chainId]);
      expect(r.stdout).toMatch(/"Kind": "Committed"/);
      return r.ms;
    };

    it('tsblock hands over to a new daemon on its socket-activated socket with a container running, and the first ctr call after it succeeds', async () => {
      const pid = taskPid((await ctr(['tasks', 'ls'])).stdout, 'e2e-long');
      tsbLogFrom = fs.statSync(tsb.o.log).size;
      const h = await tsb.handoff();
      time('tsblock handoff (until the new daemon serves)', h.ms);
      expect(await h.predecessorExited, 'the old daemon exits 0 on the successor\'s SIGTERM').toBe(true);
      await firstCall();
      expect(alive(pid), 'the container survives the handoff').toBe(true);
    }, STEP);

    it(`a slow handoff (store opening delayed ${SLOW_START_MS} ms): the first ctr call, made once the old daemon is gone and before the new one's store is open, waits and succeeds`, async () => {
      const pid = taskPid((await ctr(['tasks', 'ls'])).stdout, 'e2e-long');
      const from = fs.statSync(tsb.o.log).size;
      const h = await tsb.handoff({ env: { TSBLOCK_TEST_START_DELAY_MS: String(SLOW_START_MS) }, until: 'handoff' });
      expect(await h.predecessorExited, 'the old daemon exits 0').toBe(true);
      time('tsblock slow handoff (until the old daemon exited)', h.ms);
      expect(readFrom(tsb.o.log, from), 'the new store is not open yet').not.toMatch(/"msg":"serving"/);
      time('first ctr call during the slow start (waits for the store)', await firstCall());
      expect(readFrom(tsb.o.log, from)).toMatch(/"msg":"serving"/);
      expect(alive(pid), 'the container survives the handoff').toBe(true);
    }, STEP);

    if (v2) {
      // 2.x reconnects at the next call, so a stop + start (systemctl restart,
      // a crash and systemd's restart) needs only the early answer. 1.6
      // reconnects at once: there the restart must answer within ~1 s of the
      // old daemon's exit, which Node's start alone can exceed on a loaded host
      // (docs/reliability.md); 1.6 restarts by handoff above.
      it('tsblock restarts (stop + start) on its socket-activated socket with a container running, and the first ctr call after it succeeds', async () => {
        const pid = taskPid((await ctr(['tasks', 'ls'])).stdout, 'e2e-long');
        const t0 = Date.now();
        expect(await tsb.stop(), 'tsblock exits 0 on SIGTERM').toBe(true);
        await tsb.start();
        time('tsblock restart (stop + start until serving)', Date.now() - t0);
        await firstCall();
        expect(alive(pid), 'the container survives the tsblock restart').toBe(true);
      }, STEP);

      it(`a slow tsblock restart (stop + start, store opening delayed ${SLOW_START_MS} ms): the first ctr call, made as soon as tsblock answers and before its store is open, waits and succeeds`, async () => {
        const pid = taskPid((await ctr(['tasks', 'ls'])).stdout, 'e2e-long');
        const from = fs.statSync(tsb.o.log).size;
        const t0 = Date.now();
        expect(await tsb.stop(), 'tsblock exits 0 on SIGTERM').toBe(true);
        await tsb.start({ env: { TSBLOCK_TEST_START_DELAY_MS: String(SLOW_START_MS) }, until: 'answering' });
        time('tsblock slow restart (stop + start until answering)', Date.now() - t0);
        expect(readFrom(tsb.o.log, from), 'the store is not open yet').not.toMatch(/"msg":"serving"/);
        time('first ctr call during the slow start (waits for the store)', await firstCall());
        expect(readFrom(tsb.o.log, from)).toMatch(/"msg":"serving"/);
        expect(alive(pid), 'the container survives the tsblock restart').toBe(true);
      }, STEP);
    }

    it('after the tsblock restart the first new container runs, and exec into the running one works', async () => {
      const r = await ctr(['run', '--rm', '--snapshotter', SN, 'docker.io/library/e2e-hello-import:latest', 'e2e-after-restart', '/bin/cat', '/etc/hello']);
      expect(r.stdout.trim()).toBe('hello from the image layer');
      const e = await ctr(['tasks', 'exec', '--exec-id', 'after-tsblock', 'e2e-long', '/bin/sh', '-c', 'cat /etc/hello; echo again > /tmp/x && cat /tmp/x']);
      expect(e.stdout.trim().split('\n')).toEqual(['hello from the image layer', 'again']);
      expect(named(await snaps(), 'e2e-long')?.kind).toBe('active');
      // the restarted daemon logged no failed request
      expect(readFrom(tsb.o.log, tsbLogFrom)).not.toMatch(/"msg":"(rpc|diff rpc) failed"/);
    }, STEP);

    it('ctr images rm --sync, once the containers are gone, garbage-collects every tsblock snapshot', async () => {
      await removeContainer('e2e-long');
      const t0 = Date.now();
      await removeImages();
      time('images rm --sync (GC)', Date.now() - t0);
      expect((await snaps()).map((s) => `${s.kind} ${s.key}`)).toEqual([]);
    }, STEP);

    if (v2) {
      it(`tsblock's Diff service applied every layer containerd unpacked (${'1+1+1+' + LAYERS} Apply calls in its log, none failed)`, () => {
        const log = readFrom(tsb.o.log).split('\n');
        const ok = log.filter((l) => /"op":"Apply"/.test(l) && /"code":"OK"/.test(l)).length;
        const failed = log.filter((l) => /"op":"Apply"/.test(l) && !/"code":"OK"/.test(l));
        expect(failed).toEqual([]);
        expect(ok).toBe(applies);
      }, STEP);
    }

    it("containerd's log has no error about tsblock or the snapshotter", () => {
      // The work dir's own name (tsblock-e2e.*) is no mention of tsblock: a shim's
      // ttrpc "broken pipe" under it (containerd.sock.ttrpc) is not about the snapshotter.
      const errs = readFrom(cd.log)
        .split('\n')
        .filter((l) => /level=error/.test(l) && /tsblock|snapshot|proxy|differ|unpack|mount/i.test(l.split(W).join('<work dir>')));
      if (errs.length) console.log(`containerd errors:\n${errs.join('\n')}`);
      expect(errs).toEqual([]);
    }, STEP);

    it('containerd and tsblock exit cleanly on SIGTERM', async () => {
      expect(await cd.stop(), 'containerd').toBe(true);
      expect(await tsb.release(), 'tsblock (exit 0, no SIGKILL)').toBe(true);
      stopped = true;
    }, STEP);

    it("tsblock's store is consistent afterwards: tsblock gc finds nothing to reclaim and ls is empty", async () => {
      const gc = JSON.parse(await tsb.cli(['gc', '--json'])) as { findings: unknown[]; daemonRunning: boolean };
      expect(gc.daemonRunning).toBe(false);
      expect(gc.findings, JSON.stringify(gc)).toEqual([]);
      expect(await snaps()).toEqual([]);
    }, STEP);

    it('nothing is left mounted, attached to a loop device or mapped (dm) from the work dir', () => {
      expect(leaksUnder(W)).toEqual([]);
      expect([...dmDevices()].filter((d) => !dmBefore.has(d))).toEqual([]);
    }, STEP);
  });
}

function taskPid(ls: string, id: string): number {
  const l = ls.split('\n').find((x) => x.split(/\s+/)[0] === id);
  return l ? Number(l.split(/\s+/)[1]) : 0;
}

/** alive: the process exists and is not a zombie (PID 1 here reaps slowly). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** dmDevices names the device-mapper devices that exist now. */
function dmDevices(): Set<string> {
  const out = new Set<string>();
  if (!fs.existsSync('/sys/block')) return out;
  for (const b of fs.readdirSync('/sys/block')) {
    if (!b.startsWith('dm-')) continue;
    try {
      out.add(fs.readFileSync(`/sys/block/${b}/dm/name`, 'utf8').trim());
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function tryRun(cmd: string, args: string[]): Promise<void> {
  const { execa } = await import('execa');
  await execa(cmd, args, { reject: false });
}

/** lineDiff is a small unified-style diff of two listings (set difference keeps it short). */
function lineDiff(want: string, got: string): string {
  const a = want.split('\n');
  const b = got.split('\n');
  const sa = new Set(a);
  const sb = new Set(b);
  return [...a.filter((l) => !sb.has(l)).map((l) => `- ${l}`), ...b.filter((l) => !sa.has(l)).map((l) => `+ ${l}`)].join('\n');
}
