// A corrupted image file, through containerd: one byte flipped in a
// committed layer's ext4 metadata — its superblock, a group descriptor, or
// the inode table block holding its root directory. It is detected when it
// matters, with a clear error and no kernel oops or silent bad mount:
// superblock and group descriptor damage at Prepare of a child (a
// container's snapshot; tsblock checks the parent's ext4 checksums before
// it clones it: DATA_LOSS naming the image and what is wrong), inode table
// damage at the container's start (the kernel's inode checksum refuses the
// mount). `tsblock doctor` reports the damaged image (with --fsck for the
// inode table). Removing the image and pulling again makes the same run
// succeed; containerd and tsblock agree, nothing leaks.
//
//   sudo npx vitest run test/faults/corrupt.test.ts
//   env: TSBLOCK_FAULTS_CONTAINERD=BIN_DIR

import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { helloImage, type BuiltImage } from '../e2e/lib/images.js';
import { LayerSums } from './lib/content.js';
import { figures } from './lib/figures.js';
import { flip, oopsed, where } from './lib/damage.js';
import { faultDescribe, named, Rig, SN, STEP } from './lib/rig.js';

faultDescribe('a corrupted image file', (bins) => {
  const rig = new Rig('corrupt', bins);
  const sums = new LayerSums();
  let img: BuiltImage;
  let ref = '';
  const taintedBefore = oopsed();
  const seen: Record<string, string> = {};
  let tried = 0;
  let detected = 0;

  beforeAll(async () => {
    img = await helloImage({ ref: 'docker.io/library/faults-corrupt:latest' });
    await rig.up();
    ref = await rig.registry!.push(img);
  }, STEP);

  afterAll(async () => {
    figures('corrupt', { containerd: bins.version, tried, detected, errors: seen, layerChecks: sums.layers, bytesChecked: sums.bytes });
    await rig.down();
  }, STEP);

  /** doctor runs `tsblock doctor --json` (exit 1 when a check fails) and returns its images check. */
  const doctor = async (fsck: boolean) => {
    const t = rig.tsb;
    const r = await execa(process.execPath, [t.cliPath, 'doctor', '--json', ...(fsck ? ['--fsck'] : []), '--config', t.configFile, '--root', t.o.root, '--backend', 'blockfile', '--containerd-config', rig.cd.configFile], { env: t.env, reject: false, timeout: 120_000 });
    const checks = (JSON.parse(r.stdout) as { checks: { check: string; status: string; detail: string }[] }).checks;
    const c = checks.find((x) => x.check.endsWith(' images'));
    expect(c, `doctor has an images check: ${r.stdout.slice(0, 500)}`).toBeDefined();
    return c!;
  };

  for (const what of ['superblock', 'group descriptor', 'inode table'] as const) {
    it(`a flipped byte in the image's ${what}: the container start fails clearly, doctor reports it, a re-pull fixes it`, async () => {
      tried++;
      const p = await rig.pull(ref);
      expect(p.ok, p.out).toBe(true);
      expect(await sums.check(rig)).toEqual([]);
      const layer = named(await rig.snaps(), img.chainId)!;
      expect((await doctor(true)).status, 'doctor before the damage').toBe('ok');
      flip(layer.storage!, where(layer.storage!, what));

      const id = `faults-corrupt-${what.replace(' ', '-')}`;
      const run = await rig.ctr(['run', '--rm', '--snapshotter', SN, ref, id, '/bin/cat', '/etc/hello']).then(
        (r) => `ran: ${r.stdout}`,
        (e: Error) => e.message,
      );
      seen[what] = run.split('\n').filter((l) => /damaged|bad message|corrupt|checksum|structure needs|invalid/i.test(l)).slice(-1)[0]?.slice(-400) ?? run.slice(-400);
      console.log(`${what}: ${seen[what]}`);
      expect(run, 'the container did not run on a damaged image').not.toMatch(/^ran: /);
      if (what === 'inode table') {
        // The kernel's inode checksum (metadata_csum) refuses the root inode at mount.
        expect(run).toMatch(/bad message|structure needs cleaning|EBADMSG|EFSCORRUPTED/i);
      } else {
        expect(run).toMatch(new RegExp(`is damaged: ${what}( \\d+)?: checksum`));
      }
      detected++;
      expect(oopsed(), 'no kernel oops').toBe(taintedBefore);
      await rig.removeContainer(id);
      const d = await doctor(true);
      expect(d.status, `doctor: ${d.detail}`).toBe('fail');
      expect(d.detail).toContain(img.chainId);
      if (what !== 'inode table') expect((await doctor(false)).status, 'doctor without --fsck').toBe('fail');

      // The damaged layer goes with its image; a new pull and the same run work.
      await rig.removeImages();
      await rig.gc();
      expect((await rig.snaps()).map((s) => `${s.kind} ${s.key}`)).toEqual([]);
      sums.first.clear();
      const again = await rig.pull(ref);
      expect(again.ok, again.out).toBe(true);
      const r = await rig.ctr(['run', '--rm', '--snapshotter', SN, ref, id, '/bin/cat', '/etc/hello']);
      expect(r.stdout.trim()).toBe('hello from the image layer');
      await rig.gc();
      expect((await rig.snaps()).filter((s) => s.kind === 'active')).toEqual([]);
      expect((await doctor(true)).status).toBe('ok');
      expect(await sums.check(rig)).toEqual([]);
      expect(await rig.disagreement()).toEqual([]);
      expect(rig.leaks()).toEqual([]);
      await rig.removeImages();
      await rig.gc();
    }, STEP);
  }
});
