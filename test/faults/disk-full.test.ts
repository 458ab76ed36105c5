// Disk full during a pull, through a real containerd: tsblock's root is on a
// small loop-backed filesystem made here, a small ext4 (where tsblock keeps
// its images in its XFS store, a sparse file on that ext4) or a small XFS
// (images directly on it). A filler leaves less free than the next image's
// big layer needs, so the filesystem runs out while that layer is applied.
// The pull fails with an error naming the cause (gRPC RESOURCE_EXHAUSTED,
// as ctr prints it), the image pulled before is intact (tree sums), tsblock
// keeps serving, containerd and tsblock agree, no active snapshot or leak
// is left; once the filler is gone the same pull succeeds.
//
// Then the metadata file's filesystem full (no byte left): new snapshots are
// refused with RESOURCE_EXHAUSTED, metadata writes that fail say the
// metadata file's filesystem is full, and reads (Stat, Usage, Mounts, List,
// `tsblock ls`) keep working.
//
//   sudo npx vitest run test/faults/disk-full.test.ts
//   env: TSBLOCK_FAULTS_CONTAINERD=BIN_DIR

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildTar, diffIdOf } from '../fixtures/layers/build.js';
import { chainIdsOf, helloImage, type BuiltImage } from '../e2e/lib/images.js';
import { LayerSums } from './lib/content.js';
import { figures } from './lib/figures.js';
import { faultDescribe, named, Rig, SN, STEP } from './lib/rig.js';
import { makeSmallFs, type SmallFs } from './lib/smallfs.js';

const MiB = 1024 ** 2;
/** FULL is how tsblock names a full filesystem in its messages. */
const FULL = /not enough free space|is full|ran below its reserve|ran out of space|no space left/i;
const BIG = 200 * MiB;

/** bigImage is the hello image plus one uncompressed layer holding BIG random bytes at /big. */
async function bigImage(hello: BuiltImage, ref: string): Promise<BuiltImage> {
  const t = await buildTar([{ name: 'big', type: 'file', content: randomBytes(BIG), mode: 0o644 }]);
  const layer = { blob: t, mediaType: 'application/vnd.oci.image.layer.v1.tar', diffId: diffIdOf(t) };
  const layers = [...hello.layers, layer];
  const diffIds = layers.map((l) => l.diffId);
  const chainIds = chainIdsOf(diffIds);
  return { ref, layers, diffIds, chainIds, chainId: chainIds[chainIds.length - 1]! };
}

for (const [kind, sizeMiB] of [['ext4', 1700], ['xfs', 1200]] as const) {
  faultDescribe(`disk full during a pull: tsblock's root on a small ${kind}${kind === 'ext4' ? ' (images in the XFS store)' : ''}`, (bins) => {
    let fsys: SmallFs;
    let rig: Rig;
    const sums = new LayerSums();
    let hello: BuiltImage;
    let big: BuiltImage;
    let helloRef = '';
    let bigRef = '';
    const seen: Record<string, string> = {};
    // ctr prints the message only: containerd 1.6's errdefs has no
    // ResourceExhausted (it appends ": unknown"), and 2.x's transfer service
    // passes the text on. The message names the cause.

    beforeAll(async () => {
      fsys = makeSmallFs(kind, sizeMiB, `${kind}`);
      rig = new Rig(`full-${kind}`, bins, { tsblockParent: fsys.dir });
      hello = await helloImage({ ref: 'docker.io/library/faults-full-hello:latest' });
      big = await bigImage(hello, 'docker.io/library/faults-full-big:latest');
      await rig.up();
      helloRef = await rig.registry!.push(hello);
      bigRef = await rig.registry!.push(big);
    }, STEP);

    afterAll(async () => {
      figures(`disk-full-${kind}`, { containerd: bins.version, errors: seen, layerChecks: sums.layers, bytesChecked: sums.bytes });
      await rig?.down();
      fsys?.release();
    }, STEP);

    it('pulls the first image and takes its tree sums', async () => {
      const r = await rig.pull(helloRef);
      expect(r.ok, r.out).toBe(true);
      expect(await sums.check(rig)).toEqual([]);
      expect(sums.first.size).toBe(1);
    }, STEP);

    it(`a pull whose ${BIG / MiB} MiB layer meets ENOSPC fails, tsblock answering RESOURCE_EXHAUSTED with the cause that ctr prints`, async () => {
      const from = rig.logSize();
      fsys.fill(120 * MiB);
      console.log(`${kind}: ${Math.round(fsys.free() / MiB)} MiB free before the pull`);
      const r = await rig.pull(bigRef);
      seen.pull = r.out.split('\n').filter((l) => /ResourceExhausted|space/i.test(l)).slice(-1)[0] ?? r.out.slice(-300);
      console.log(`${kind} full, ctr said: ${seen.pull}`);
      expect(r.ok, 'the pull cannot succeed').toBe(false);
      // containerd 1.6 applies layers itself: when ext4 in the image turns
      // read-only under it (its journal's writes met ENOSPC underneath)
      // before the apply ends, its applier fails with EROFS and never asks
      // tsblock to Commit, so no tsblock message can name the cause. The
      // layer is still not committed (checked below). Seen under load only.
      if (bins.major < 2 && !FULL.test(r.out) && /read-only file system/.test(r.out)) {
        seen.cause = "containerd 1.6's applier: read-only file system (tsblock not asked)";
        return;
      }
      expect(r.out).toMatch(FULL);
      // The gRPC code, in tsblock's log of the failed request (Commit, or on 2.x possibly Apply).
      expect(await rig.waitLog(/"op":"(Commit|Apply)".*"code":"RESOURCE_EXHAUSTED"|"rpc":"Apply".*"code":"RESOURCE_EXHAUSTED"/, 1, from, 10_000), 'tsblock logged RESOURCE_EXHAUSTED').toBe(true);
    }, STEP);

    it('nothing committed before is damaged, nothing leaks; once the filler is gone GC leaves no active snapshot and containerd and tsblock agree', async () => {
      await rig.waitServing();
      expect(named(await rig.snaps(), big.chainId), 'the big layer was not committed').toBeUndefined();
      expect(await sums.check(rig), 'the first image').toEqual([]);
      // containerd's own clean-up of the failed layer (a Remove) is a metadata
      // write too: on a full root it waits for space, then for the next GC.
      fsys.unfill();
      await rig.gc();
      expect((await rig.snaps()).filter((s) => s.kind === 'active').map((s) => s.key)).toEqual([]);
      expect(await rig.disagreement()).toEqual([]);
      expect(rig.leaks()).toEqual([]);
    }, STEP);

    it('the same pull then succeeds and the big file is whole', async () => {
      const r = await rig.pull(bigRef);
      expect(r.ok, r.out).toBe(true);
      expect(named(await rig.snaps(), big.chainId)?.kind).toBe('committed');
      const want = (await import('node:crypto')).createHash('sha256').update(big.layers[1]!.blob.subarray(512, 512 + BIG)).digest('hex');
      const run = await rig.ctr(['run', '--rm', '--snapshotter', SN, bigRef, `faults-big-${kind}`, '/bin/sha256sum', '/big']);
      expect(run.stdout.split(/\s+/)[0]).toBe(want);
      expect(await sums.check(rig)).toEqual([]);
    }, STEP);

    it("the metadata file's filesystem full: new snapshots refused (RESOURCE_EXHAUSTED), reads keep working", async () => {
      const from = rig.logSize();
      await rig.ctr(['snapshots', '--snapshotter', SN, 'prepare', 'faults-active', big.chainId]);
      await rig.removeImages().catch(() => undefined);
      fsys.fill(0);
      // New work: an active snapshot (the space guard and, below it, SQLite).
      const p = await rig.ctr(['snapshots', '--snapshotter', SN, 'prepare', 'faults-refused', '']).then(() => '', (e: Error) => e.message);
      seen.prepare = p.slice(-300);
      expect(p, 'Prepare on a full root').toMatch(FULL);
      expect(await rig.waitLog(/"op":"Prepare".*"code":"RESOURCE_EXHAUSTED".*faults-refused/, 1, from, 10_000), 'tsblock logged Prepare RESOURCE_EXHAUSTED').toBe(true);
      // Metadata writes until one fails (the WAL may have room at first): each failure must say why.
      let writeErr = '';
      for (let i = 0; i < 200 && !writeErr; i++) {
        writeErr = await rig
          .ctr(['snapshots', '--snapshotter', SN, 'label', 'faults-active', `containerd.io/snapshot/faults-${i}=${'x'.repeat(3000)}`])
          .then(() => '', (e: Error) => e.message);
      }
      seen.update = writeErr.slice(-300);
      if (writeErr) expect(writeErr).toMatch(/metadata file .* is full|not enough free space/);
      if (writeErr) expect(await rig.waitLog(/"op":"Update".*"code":"RESOURCE_EXHAUSTED"/, 1, from, 10_000), 'tsblock logged Update RESOURCE_EXHAUSTED').toBe(true);
      // Reads.
      expect((await rig.ctr(['snapshots', '--snapshotter', SN, 'info', 'faults-active'])).stdout).toMatch(/"Kind": "Active"/);
      expect((await rig.ctr(['snapshots', '--snapshotter', SN, 'usage', 'faults-active'])).stdout).toMatch(/faults-active/);
      expect((await rig.ctr(['snapshots', '--snapshotter', SN, 'mounts', '/tmp', 'faults-active'])).stdout).toMatch(/mount -t ext4/);
      expect((await rig.allSnaps()).map((s) => s.key.replace(/^[^/]+\/\d+\//, ''))).toContain('faults-active');
      console.log(`${kind} metadata full: prepare → ${seen.prepare}; label → ${seen.update || '(all fitted)'}`);
      fsys.unfill();
      await rig.ctr(['snapshots', '--snapshotter', SN, 'rm', 'faults-active']);
      const r = await rig.pull(helloRef);
      expect(r.ok, r.out).toBe(true);
      await rig.gc();
      expect((await rig.snaps()).filter((s) => s.kind === 'active')).toEqual([]);
      expect(await rig.disagreement()).toEqual([]);
      expect(rig.leaks()).toEqual([]);
    }, STEP);
  });
}
