// tsblock SIGKILLed in the middle of a pull, through a real containerd: a
// fault point (src/base/faults.ts) armed in the daemon kills it at an exact
// step of one layer's Prepare, clone, Commit, flush (and on 2.x, where
// tsblock is containerd's differ, of its Apply) of a multi-layer image pulled
// from the local registry. Then, as systemd would, a new daemon starts on the
// same socket. The pull either completed or failed with a clear error; the
// same pull then succeeds; and containerd and tsblock agree on every
// snapshot, no active snapshot is left once containerd's GC ran, nothing is
// mounted or attached, every committed layer's tree is the one first seen,
// and a container of the image sees exactly the /data its layers make.
//
//   sudo npx vitest run test/faults/tsblock-kill.test.ts
//   env: TSBLOCK_FAULTS_CONTAINERD=BIN_DIR (default /usr/bin: 1.6)
//        TSBLOCK_FAULTS_LONG=1 (every point at every layer), TSBLOCK_FAULTS_KILLS=N (short form's count),
//        TSBLOCK_FAULTS_ONLY=REGEX (only the matching specs, e.g. '^apply:')
// apply:entry@k counts tar entries from the pull's start: k = 29·layer stays
// within the image's ~300 entries (most are layer 0's busybox applets).

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { manyImage, type BuiltImage } from '../e2e/lib/images.js';
import { expectIntact, LayerSums } from './lib/content.js';
import { figures } from './lib/figures.js';
import { faultDescribe, LONG, named, Rig, SN, STEP } from './lib/rig.js';

const LAYERS = 10;

faultDescribe('tsblock SIGKILLed in the middle of a pull', (bins) => {
  const rig = new Rig('tsbkill', bins);
  const sums = new LayerSums();
  let img: BuiltImage;
  let ref = '';
  const errors = new Map<string, number>();
  let tried = 0;
  let survived = 0;

  // The steps a layer goes through in tsblock; 2.x adds tsblock's own Apply.
  const points = [
    'core:create:after-insert',
    'blockfile:create:after-clone',
    'core:create:after-ready',
    'core:commit:after-backend',
    'core:commit:after-tx',
    'core:flush:after-backend',
    ...(rig.v2 ? ['apply:after-mount', 'apply:entry', 'apply:after-apply', 'apply:after-unmount'] : []),
  ];
  // Long: every point at every layer. Short: a spread of points and layers.
  const specs: string[] = [];
  if (LONG) for (const p of points) for (let n = 1; n <= LAYERS; n++) specs.push(`${p}@${p === 'apply:entry' ? n * 29 : n}`);
  else {
    const k = Number(process.env.TSBLOCK_FAULTS_KILLS || 4);
    for (let j = 0; j < k; j++) {
      const p = points[(j * 7 + (rig.v2 ? 7 : 0)) % points.length]!;
      const n = 1 + ((j * 3 + 1) % LAYERS);
      specs.push(`${p}@${p === 'apply:entry' ? n * 29 : n}`);
    }
  }
  // TSBLOCK_FAULTS_ONLY=REGEX keeps the matching specs (to re-run part of a campaign).
  const only = process.env.TSBLOCK_FAULTS_ONLY ? new RegExp(process.env.TSBLOCK_FAULTS_ONLY) : undefined;
  if (only) specs.splice(0, specs.length, ...specs.filter((x) => only.test(x)));

  beforeAll(async () => {
    img = await manyImage({ layers: LAYERS, ref: 'docker.io/library/faults-kill:latest' });
    await rig.up();
    ref = await rig.registry!.push(img);
  }, STEP);

  afterAll(async () => {
    figures('tsblock-kill', { containerd: bins.version, tried, survived, layerChecks: sums.layers, bytesChecked: sums.bytes, errors: Object.fromEntries(errors) });
    await rig.down();
  }, STEP);

  const checkAll = async (what: string) => {
    await rig.gc();
    const list = await rig.snaps();
    expect(list.filter((s) => s.kind === 'active').map((s) => s.key), `${what}: active snapshots left`).toEqual([]);
    expect(named(list, img.chainId)?.kind, `${what}: the image's top layer`).toBe('committed');
    await expectIntact(rig, img.chainIds, sums, what);
  };

  it(`a clean pull of the ${LAYERS}-layer image gives the reference tree of every layer`, async () => {
    const r = await rig.pull(ref);
    expect(r.ok, r.out).toBe(true);
    await checkAll('reference');
    expect(sums.first.size).toBe(LAYERS);
  }, STEP);

  it(`killed at ${specs.length} points (${specs.slice(0, 4).join(', ')}${specs.length > 4 ? ', …' : ''}): the pull completes or fails clearly, the retry succeeds, nothing is lost or leaked`, async () => {
    const trace = path.join(rig.work, 'fault-trace');
    for (const spec of specs) {
      tried++;
      await rig.removeImages();
      expect((await rig.snaps()).map((s) => s.key), 'GC removed every snapshot').toEqual([]);
      fs.rmSync(trace, { force: true });
      await rig.restartTsblock({ TSBLOCK_FAULT_POINTS: spec, TSBLOCK_FAULT_TRACE: trace });
      const first = await rig.pull(ref);
      // Give a daemon that died at the last step time to be seen dead.
      for (let i = 0; i < 50 && !(rig.tsb.dead && fs.existsSync(trace)); i++) await new Promise((r) => setTimeout(r, 100));
      const died = fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8').trim() : '';
      expect(died, `${spec}: the armed point was reached`).toBe(spec.split('@')[0]);
      expect(rig.tsb.dead, `${spec}: the daemon died`).toBe(true);
      if (!first.ok) {
        // containerd's words for a snapshotter that went away mid-call.
        const m = /(Unavailable|error reading from server: EOF|connection error|connection (reset|refused|closed)|transport is closing|Canceled)/i.exec(first.out);
        expect(m, `${spec}: the error names the cause: ${first.out}`).not.toBeNull();
        errors.set(m![1]!, (errors.get(m![1]!) ?? 0) + 1);
      }
      await rig.restartTsblock();
      const second = await rig.pull(ref);
      expect(second.ok, `${spec}: the second pull: ${second.out}`).toBe(true);
      await checkAll(spec);
      survived++;
    }
  }, STEP);

  it("a container of the image sees exactly the /data its layers make, and the store is consistent after a clean stop", async () => {
    const r = await rig.ctr(['run', '--rm', '--snapshotter', SN, ref, 'faults-kill-list', '/bin/list-data', '/data']);
    expect(`${r.stdout.replace(/\r\n/g, '\n')}\n`).toBe(img.expected);
    await rig.removeImages();
    expect(await rig.snaps()).toEqual([]);
    await rig.cd.stop();
    expect(await rig.tsb.stop(), 'tsblock exits 0 on SIGTERM').toBe(true);
    const gc = JSON.parse(await rig.tsb.cli(['gc', '--json'])) as { findings: unknown[] };
    expect(gc.findings).toEqual([]);
    expect(rig.leaks()).toEqual([]);
  }, STEP);
});
