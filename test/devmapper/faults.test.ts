// Faults in the flows users run, on the devmapper backend, through a real
// containerd (1.6, Debian's; TSBLOCK_FAULTS_CONTAINERD for another) in the
// device-mapper VM (vm-tests/run.sh, vitest stage): the test/faults rig
// with backend devmapper, tsblock on its own small loop-backed thin-pool.
//
// 1. The thin-pool runs dry during a pull: a layer that does not fit the
//    pool's free data space. The pull fails with an error naming the cause
//    (tsblock's Commit answers RESOURCE_EXHAUSTED: the pool ran out of data
//    space while the layer was written, so it is not committed), what was
//    committed before is intact (tree sums), containerd and tsblock agree,
//    nothing leaks; once an image is removed and collected the same pull
//    succeeds and the big file is whole.
// 2. Corrupted thin devices: in a fresh two-layer image one byte flipped in
//    the top layer's ext4 superblock and one in the bottom layer's group
//    descriptor 0, on their thin devices. The container's Prepare (ctr run)
//    and a direct Prepare on the bottom layer fail with DATA_LOSS naming the
//    parent snapshot and the field (tsblock checks the ext4 checksums on the
//    new child device, which holds exactly its parent's blocks), no kernel
//    oops; `tsblock doctor` reports both devices; removing the image and
//    pulling again makes the same run work.
// The rig is torn down in the last test: no dm device, mount or loop left.
//
//   TSBLOCK_VM_STAGES=vitest TSBLOCK_VM_TESTS=test/devmapper/faults.test.ts \
//     vm-tests/run-in-vm.sh --timeout 1800 -- vm-tests/run.sh

import { createHash, randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { poolStatus } from '../../src/sys/dm-thin.js';
import { buildTar, diffIdOf } from '../fixtures/layers/build.js';
import { chainIdsOf, helloImage, type BuiltImage } from '../e2e/lib/images.js';
import { expectIntact, LayerSums } from '../faults/lib/content.js';
import { flip, oopsed, where } from '../faults/lib/damage.js';
import { figures } from '../faults/lib/figures.js';
import { faultDescribe, named, Rig, SN, STEP } from '../faults/lib/rig.js';

const MiB = 1024 ** 2;
/** The pool: 64 MiB of data (the smallest) under 64 MiB devices; the filler's and the big layer's data do not fit together. */
const POOL = ['--data-size', '64M', '--base-size', '64M'];
const POOL_MIB = 64;
const FILLER = 24 * MiB;
const BIG = 40 * MiB;
const DRY = /ran out of data space|ran below its reserve|no space left|not enough free space/i;

/** withFile is `base` plus one uncompressed layer holding `bytes` random bytes at /<name>. */
async function withFile(base: BuiltImage, ref: string, name: string, bytes: number): Promise<BuiltImage> {
  const t = await buildTar([{ name, type: 'file', content: randomBytes(bytes), mode: 0o644 }]);
  const layers = [...base.layers, { blob: t, mediaType: 'application/vnd.oci.image.layer.v1.tar', diffId: diffIdOf(t) }];
  const diffIds = layers.map((l) => l.diffId);
  const chainIds = chainIdsOf(diffIds);
  return { ref, layers, diffIds, chainIds, chainId: chainIds[chainIds.length - 1]! };
}

faultDescribe(
  'faults on devmapper: the thin-pool running dry during a pull, a corrupted thin device',
  (bins) => {
    const rig = new Rig('dm', bins, { backend: 'devmapper', serveArgs: POOL });
    const sums = new LayerSums();
    let hello: BuiltImage;
    let filler: BuiltImage;
    let big: BuiltImage;
    let two: BuiltImage;
    const ref = { hello: '', filler: '', big: '', two: '' };
    const seen: Record<string, string> = {};
    const ms: Record<string, number> = {};
    const taintedBefore = oopsed();
    let down = false;

    beforeAll(async () => {
      hello = await helloImage({ ref: 'docker.io/library/faults-dm-hello:latest' });
      filler = await withFile(hello, 'docker.io/library/faults-dm-filler:latest', 'filler', FILLER);
      big = await withFile(hello, 'docker.io/library/faults-dm-big:latest', 'big', BIG);
      two = await withFile(hello, 'docker.io/library/faults-dm-two:latest', 'small', 4096);
      await rig.up();
      ref.hello = await rig.registry!.push(hello);
      ref.filler = await rig.registry!.push(filler);
      ref.big = await rig.registry!.push(big);
      ref.two = await rig.registry!.push(two);
    }, STEP);

    afterAll(async () => {
      figures('devmapper', { containerd: bins.version, errors: seen, ms, layerChecks: sums.layers, bytesChecked: sums.bytes });
      if (!down) await rig.down();
    }, STEP);

    const pool = () => poolStatus(rig.pool);
    const usedMiB = () => {
      const p = pool();
      return Math.round((p.usedDataBlocks * 128 * 512) / MiB);
    };

    it('pulls two images into the pool and takes their tree sums', async () => {
      for (const r of [ref.hello, ref.filler]) {
        const p = await rig.pull(r);
        expect(p.ok, p.out).toBe(true);
      }
      expect(await sums.check(rig)).toEqual([]);
      expect(sums.first.size).toBe(filler.chainIds.length);
      console.log(`pool: ${usedMiB()} MiB of ${POOL_MIB} used before the big pull`);
    }, STEP);

    it(`a pull whose ${BIG / MiB} MiB layer does not fit fails: tsblock answers RESOURCE_EXHAUSTED naming the pool, ctr prints it`, async () => {
      const from = rig.logSize();
      const r = await rig.pull(ref.big);
      ms.dryPull = r.ms;
      seen.pull = r.out.split('\n').filter((l) => DRY.test(l)).slice(-1)[0]?.slice(-400) ?? r.out.slice(-400);
      console.log(`pool dry (${r.ms} ms), ctr said: ${seen.pull}; pool ${pool().mode}`);
      expect(r.ok, 'the pull cannot succeed').toBe(false);
      expect(r.out).toMatch(DRY);
      expect(await rig.waitLog(/"op":"Commit".*"code":"RESOURCE_EXHAUSTED"/, 1, from, 10_000), 'tsblock logged Commit RESOURCE_EXHAUSTED').toBe(true);
      expect(named(await rig.snaps(), big.chainId), 'the big layer was not committed').toBeUndefined();
      expect(oopsed(), 'no kernel oops').toBe(taintedBefore);
    }, STEP);

    it('nothing committed before is damaged; after GC no active snapshot is left, containerd and tsblock agree, nothing leaks', async () => {
      await rig.waitServing();
      await rig.gc();
      expect((await rig.snaps()).filter((s) => s.kind === 'active').map((s) => s.key)).toEqual([]);
      await expectIntact(rig, filler.chainIds, sums, 'after the dry pull');
    }, STEP);

    it('once the filler image is removed and collected the same pull succeeds and the big file is whole', async () => {
      await rig.ctr(['images', 'rm', '--sync', ref.filler]);
      await rig.gc();
      for (let i = 0; i < 600 && pool().mode !== 'rw'; i++) await new Promise((r) => setTimeout(r, 100));
      expect(pool().mode).toBe('rw');
      sums.first.delete(filler.chainId);
      const r = await rig.pull(ref.big);
      ms.pullAfterFree = r.ms;
      expect(r.ok, r.out).toBe(true);
      console.log(`pool: ${usedMiB()} MiB of ${POOL_MIB} used after the big pull`);
      const want = createHash('sha256').update(big.layers[big.layers.length - 1]!.blob.subarray(512, 512 + BIG)).digest('hex');
      const run = await rig.ctr(['run', '--rm', '--snapshotter', SN, ref.big, 'faults-dm-big', '/bin/sha256sum', '/big']);
      expect(run.stdout.split(/\s+/)[0]).toBe(want);
      await rig.gc();
      await expectIntact(rig, big.chainIds, sums, 'after the second big pull');
      await rig.removeImages();
      await rig.gc();
      sums.first.clear();
    }, STEP);

    /** doctor runs `tsblock doctor --json` (exit 1 when a check fails) and returns its images check. */
    const doctor = async () => {
      const t = rig.tsb;
      const r = await execa(process.execPath, [t.cliPath, 'doctor', '--json', '--config', t.configFile, '--root', t.o.root, '--backend', 'devmapper', '--containerd-config', rig.cd.configFile], { env: t.env, reject: false, timeout: 120_000 });
      const checks = (JSON.parse(r.stdout) as { checks: { check: string; status: string; detail: string }[] }).checks;
      const c = checks.find((x) => x.check.endsWith(' images'));
      expect(c, `doctor has an images check: ${r.stdout.slice(0, 500)}`).toBeDefined();
      return c!;
    };

    it("flipped bytes on two layers' thin devices (the top one's superblock, the bottom one's group descriptor): the container's Prepare and a direct Prepare fail with DATA_LOSS naming each, doctor reports both, a re-pull fixes it", async () => {
      // A fresh image: neither layer has had a second child, so no warm
      // spare (made from an undamaged layer before the flip) is taken.
      const p = await rig.pull(ref.two);
      expect(p.ok, p.out).toBe(true);
      expect(await sums.check(rig)).toEqual([]);
      const list = await rig.snaps();
      const top = named(list, two.chainIds[1]!)!;
      const bottom = named(list, two.chainIds[0]!)!;
      await rig.withStorage(top, (dev) => flip(dev, where(dev, 'superblock')), { writable: true });
      await rig.withStorage(bottom, (dev) => flip(dev, where(dev, 'group descriptor')), { writable: true });
      const from = rig.logSize();

      // The container's Prepare on the top layer.
      const id = 'faults-dm-damaged';
      let t0 = Date.now();
      const run = await rig.ctr(['run', '--rm', '--snapshotter', SN, ref.two, id, '/bin/cat', '/etc/hello']).then(
        (r) => `ran: ${r.stdout}`,
        (e: Error) => e.message,
      );
      ms.runDamaged = Date.now() - t0;
      seen.superblock = run.split('\n').filter((l) => /damaged/.test(l)).slice(-1)[0]?.slice(-500) ?? run.slice(-500);
      console.log(`superblock (${ms.runDamaged} ms): ${seen.superblock}`);
      expect(run, 'the container did not run on a damaged layer').not.toMatch(/^ran: /);
      expect(run).toMatch(new RegExp(`parent snapshot \\S*${two.chainIds[1]}: the thin device of parent snapshot id \\d+ \\(\\S+\\) is damaged: superblock: checksum`));
      await rig.removeContainer(id);

      // A direct Prepare on the bottom layer.
      t0 = Date.now();
      const prep = await rig.ctr(['snapshots', '--snapshotter', SN, 'prepare', 'faults-dm-direct', two.chainIds[0]!]).then(() => 'prepared', (e: Error) => e.message);
      ms.prepareDamaged = Date.now() - t0;
      seen['group descriptor'] = prep.slice(-500);
      console.log(`group descriptor (${ms.prepareDamaged} ms): ${seen['group descriptor']}`);
      expect(prep).toMatch(new RegExp(`parent snapshot \\S*${two.chainIds[0]}: the thin device of parent snapshot id \\d+ \\(\\S+\\) is damaged: group descriptor 0: checksum`));
      expect(await rig.waitLog(/"op":"Prepare".*"code":"DATA_LOSS"/, 2, from, 10_000), 'tsblock logged 2 Prepare DATA_LOSS').toBe(true);
      expect(oopsed(), 'no kernel oops').toBe(taintedBefore);

      const d = await doctor();
      seen.doctor = d.detail.slice(0, 600);
      console.log(`doctor: ${d.status}: ${d.detail}`);
      expect(d.status, `doctor: ${d.detail}`).toBe('fail');
      expect(d.detail).toMatch(/^2 of \d+ device\(s\) damaged/);
      expect(d.detail).toContain(`${two.chainIds[1]} (`);
      expect(d.detail).toContain(`${two.chainIds[0]} (`);
      expect(d.detail).toMatch(/superblock: checksum/);
      expect(d.detail).toMatch(/group descriptor 0: checksum/);

      // The damaged layers go with their image; a new pull and the same run work.
      await rig.removeImages();
      await rig.gc();
      expect((await rig.snaps()).map((s) => `${s.kind} ${s.key}`)).toEqual([]);
      sums.first.clear();
      const again = await rig.pull(ref.two);
      expect(again.ok, again.out).toBe(true);
      const r = await rig.ctr(['run', '--rm', '--snapshotter', SN, ref.two, id, '/bin/cat', '/etc/hello']);
      expect(r.stdout.trim()).toBe('hello from the image layer');
      await rig.gc();
      expect((await rig.snaps()).filter((s) => s.kind === 'active')).toEqual([]);
      const ok = await doctor();
      expect(ok.status, ok.detail).toBe('ok');
      await expectIntact(rig, two.chainIds, sums, 'after the re-pull');
    }, STEP);

    it('teardown leaves no dm device, mount or loop device of the rig', async () => {
      down = true;
      const left = await rig.down();
      expect(left, 'left after containerd and tsblock stopped').toEqual([]);
      expect(await rig.dmLeaks()).toEqual([]);
    }, STEP);
  },
  { backend: 'devmapper' },
);
