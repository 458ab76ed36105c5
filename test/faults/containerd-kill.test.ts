// containerd SIGKILLed in the middle of a pull and of a `ctr run`, through
// the real thing: containerd dies right after tsblock answered the k-th
// layer's Prepare (or, for a run, the container's Prepare, or once its task
// runs), then starts again. What it left in tsblock (extraction snapshots,
// a container's active snapshot) must go through containerd's own garbage
// collection, which calls tsblock's Remove and Cleanup: once the
// containers are removed and the dead client's lease is gone (ctr's leases
// expire after 24 h; the test deletes them, as their expiry would), no
// active snapshot is left. Then the same pull or run succeeds, containerd
// and tsblock agree on every snapshot, nothing is mounted or attached, and
// every committed layer's tree is the one first seen.
//
//   sudo npx vitest run test/faults/containerd-kill.test.ts
//   env: TSBLOCK_FAULTS_CONTAINERD=BIN_DIR, TSBLOCK_FAULTS_LONG=1 (a kill after every layer's Prepare)

import { afterAll, beforeAll, expect, it } from 'vitest';
import { manyImage, type BuiltImage } from '../e2e/lib/images.js';
import { expectIntact, LayerSums } from './lib/content.js';
import { figures } from './lib/figures.js';
import { faultDescribe, LONG, named, Rig, SN, STEP } from './lib/rig.js';

const LAYERS = 10;

faultDescribe('containerd SIGKILLed in the middle of a pull and of a ctr run', (bins) => {
  const rig = new Rig('cdkill', bins);
  const sums = new LayerSums();
  let img: BuiltImage;
  let ref = '';
  let tried = 0;
  let survived = 0;
  let heldByLease = 0;
  let leftovers = 0;
  let missed = 0;
  const pullKills = LONG ? Array.from({ length: LAYERS }, (_, i) => i + 1) : [2, 6];

  beforeAll(async () => {
    img = await manyImage({ layers: LAYERS, ref: 'docker.io/library/faults-cdkill:latest' });
    await rig.up();
    ref = await rig.registry!.push(img);
  }, STEP);

  afterAll(async () => {
    figures('containerd-kill', { containerd: bins.version, tried, survived, missed, leftovers, heldByLease, layerChecks: sums.layers, bytesChecked: sums.bytes });
    await rig.down();
  }, STEP);

  /** restart brings containerd back and lets its GC take what the dead one left. */
  const restartAndCollect = async (what: string, containers: string[]) => {
    await rig.cd.start();
    await rig.waitServing();
    for (const c of containers) await rig.removeContainer(c);
    leftovers += (await rig.snaps()).filter((s) => s.kind === 'active').length;
    // The dead client's lease holds what it made (ctr's leases expire after
    // 24 h); nothing else holds one now, so each lease left is that one, and
    // is deleted as its expiry would.
    const leases = await rig.leases();
    if (leases.length > 0) heldByLease++;
    for (const l of leases) await rig.ctr(['leases', 'rm', '--sync', l]);
    await rig.gc();
    expect((await rig.snaps()).filter((s) => s.kind === 'active').map((s) => s.key), `${what}: active snapshots after GC`).toEqual([]);
    expect(await rig.disagreement(), `${what}: containerd vs tsblock`).toEqual([]);
  };

  const checkAll = (what: string) => expectIntact(rig, img.chainIds, sums, what);

  it(`a clean pull of the ${LAYERS}-layer image gives the reference tree of every layer`, async () => {
    const r = await rig.pull(ref);
    expect(r.ok, r.out).toBe(true);
    await checkAll('reference');
    expect(sums.first.size).toBe(LAYERS);
  }, STEP);

  it(`killed after layer ${pullKills.join(', ')}'s Prepare: GC through tsblock removes the leftovers, the same pull then succeeds`, async () => {
    for (const k of pullKills) {
      tried++;
      await rig.removeImages();
      await rig.gc();
      expect((await rig.snaps()).map((s) => s.key)).toEqual([]);
      const from = rig.logSize();
      const pull = rig.pull(ref);
      const seen = await rig.waitLog(/"op":"Prepare".*"code":"OK".*extract-/, k, from);
      expect(seen, `layer ${k}'s Prepare reached tsblock`).toBe(true);
      await rig.killContainerd();
      const first = await pull;
      // A kill that lands after the pull's last step (a tiny top layer on an
      // idle host) tests nothing: counted, and at most one in four may miss.
      if (first.ok) missed++;
      await restartAndCollect(`pull, layer ${k}`, []);
      const again = await rig.pull(ref);
      expect(again.ok, `kill at layer ${k}: the second pull: ${again.out}`).toBe(true);
      await checkAll(`pull, layer ${k}`);
      survived++;
    }
    expect(missed, 'kills that landed after the pull had finished').toBeLessThanOrEqual(Math.floor(pullKills.length / 4));
  }, STEP);

  it('killed right after a ctr run Prepared the container, and again once its task runs: GC removes its snapshot, the same run then succeeds', async () => {
    for (const when of ['prepare', 'running'] as const) {
      tried++;
      const id = `faults-run-${when}`;
      const from = rig.logSize();
      const run = rig.ctr(['run', '--snapshotter', SN, ...(when === 'running' ? ['-d'] : []), ref, id, '/bin/sleep', '600']).then(
        () => true,
        () => false,
      );
      expect(await rig.waitLog(new RegExp(`"op":"Prepare".*"code":"OK".*/${id}"`), 1, from), `${id}'s Prepare reached tsblock`).toBe(true);
      if (when === 'running') {
        expect(await run, 'ctr run -d started the task').toBe(true);
        expect((await rig.ctr(['tasks', 'ls'])).stdout).toMatch(new RegExp(`^${id}\\s+\\d+\\s+RUNNING`, 'm'));
      }
      await rig.killContainerd();
      if (when === 'prepare') await run;
      await restartAndCollect(`run (${when})`, [id]);
      expect(named(await rig.snaps(), id), `${id}'s snapshot`).toBeUndefined();
      const r = await rig.ctr(['run', '--rm', '--snapshotter', SN, ref, id, '/bin/list-data', '/data']);
      expect(`${r.stdout.replace(/\r\n/g, '\n')}\n`, `${id} retried`).toBe(img.expected);
      await rig.gc();
      expect((await rig.snaps()).filter((s) => s.kind === 'active').map((s) => s.key)).toEqual([]);
      await checkAll(`run (${when})`);
      survived++;
    }
  }, STEP);

  it('afterwards containerd and tsblock stop cleanly and tsblock gc finds nothing to reclaim', async () => {
    await rig.removeImages();
    await rig.gc();
    expect(await rig.snaps()).toEqual([]);
    expect(await rig.cd.stop()).toBe(true);
    expect(await rig.tsb.stop(), 'tsblock exits 0 on SIGTERM').toBe(true);
    const gc = JSON.parse(await rig.tsb.cli(['gc', '--json'])) as { findings: unknown[] };
    expect(gc.findings).toEqual([]);
    expect(rig.leaks()).toEqual([]);
  }, STEP);
});
