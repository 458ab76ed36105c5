// A container's rootfs filled to its size, through containerd and runc: a
// container whose snapshot has the default size (--base-size, 256 MiB here)
// and one given containerd.io/snapshot/max-size (ctr run
// --snapshotter-label) write until their own filesystem is full. Each
// writer gets ENOSPC ("No space left on device") at its own size, not
// before and not at the other's; a neighbour container keeps writing and
// reading, the host keeps writing next to tsblock's root, and tsblock keeps
// answering. Afterwards the committed image is intact, the containers'
// snapshots go at their removal, nothing is left mounted or attached, and
// the same run succeeds again.
//
//   sudo npx vitest run test/faults/rootfs-full.test.ts
//   env: TSBLOCK_FAULTS_CONTAINERD=BIN_DIR

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { helloImage, type BuiltImage } from '../e2e/lib/images.js';
import { LayerSums } from './lib/content.js';
import { figures } from './lib/figures.js';
import { faultDescribe, Rig, SN, STEP } from './lib/rig.js';

const MiB = 1024 ** 2;
const BASE = 256 * MiB;
const MAX = 512 * MiB;

faultDescribe("a container's rootfs filled to its size", (bins) => {
  const rig = new Rig('rootfull', bins, { serveArgs: ['--base-size', `${BASE / MiB}M`] });
  const sums = new LayerSums();
  let img: BuiltImage;
  let ref = '';
  const filled: Record<string, number> = {};

  beforeAll(async () => {
    img = await helloImage({ ref: 'docker.io/library/faults-rootfull:latest' });
    await rig.up();
    ref = await rig.registry!.push(img);
    const r = await rig.pull(ref);
    expect(r.ok, r.out).toBe(true);
    expect(await sums.check(rig)).toEqual([]);
  }, STEP);

  afterAll(async () => {
    figures('rootfs-full', { containerd: bins.version, filledBytes: filled, layerChecks: sums.layers, bytesChecked: sums.bytes });
    await rig.down();
  }, STEP);

  /** fill runs a container that writes zeros to /fill until ENOSPC and reports what dd said and the file's size. */
  const fill = async (id: string, labels: string[]) => {
    const script = 'dd if=/dev/zero of=/fill bs=1M 2>&1; echo "rc=$?"; echo "size=$(stat -c %s /fill)"; echo "after" > /after 2>&1 || echo "write-after=failed"';
    const r = await rig.ctr(['run', '--rm', '--snapshotter', SN, ...labels.flatMap((l) => ['--snapshotter-label', l]), ref, id, '/bin/sh', '-c', script]);
    const size = Number(/size=(\d+)/.exec(r.stdout)?.[1] ?? -1);
    filled[id] = size;
    return { out: r.stdout, size };
  };

  it('a neighbour container runs while the others fill their rootfs', async () => {
    await rig.ctr(['run', '-d', '--snapshotter', SN, ref, 'faults-neighbour', '/bin/sleep', '100000']);
    const e = await rig.ctr(['tasks', 'exec', '--exec-id', 'w0', 'faults-neighbour', '/bin/sh', '-c', 'echo before > /tmp/n && cat /tmp/n']);
    expect(e.stdout.trim()).toBe('before');
  }, STEP);

  it(`the default size (${BASE / MiB} MiB): dd gets ENOSPC near that size, inside the container only`, async () => {
    const { out, size } = await fill('faults-fill-default', []);
    expect(out).toMatch(/No space left on device/);
    expect(out).toMatch(/rc=1/);
    expect(size).toBeGreaterThan(BASE * 0.7);
    expect(size).toBeLessThanOrEqual(BASE);
  }, STEP);

  it(`containerd.io/snapshot/max-size=${MAX}: the filesystem is that large and dd gets ENOSPC near it`, async () => {
    const { out, size } = await fill('faults-fill-max', [`containerd.io/snapshot/max-size=${MAX}`]);
    expect(out).toMatch(/No space left on device/);
    expect(size).toBeGreaterThan(Math.max(BASE, MAX * 0.7));
    expect(size).toBeLessThanOrEqual(MAX);
  }, STEP);

  it('the neighbour still writes and reads, the host writes next to the root, tsblock answers', async () => {
    const e = await rig.ctr(['tasks', 'exec', '--exec-id', 'w1', 'faults-neighbour', '/bin/sh', '-c', 'dd if=/dev/zero of=/tmp/more bs=1M count=16 2>/dev/null && echo ok && cat /tmp/n /etc/hello']);
    expect(e.stdout.trim().split('\n')).toEqual(['ok', 'before', 'hello from the image layer']);
    const hostFile = path.join(rig.work, 'host-write');
    fs.writeFileSync(hostFile, Buffer.alloc(8 * MiB, 1));
    expect(fs.statSync(hostFile).size).toBe(8 * MiB);
    fs.rmSync(hostFile);
    await rig.waitServing();
    expect(await sums.check(rig), 'the committed image').toEqual([]);
  }, STEP);

  it('the full containers left nothing: their snapshots went with them, the run succeeds again, no leak', async () => {
    await rig.removeContainer('faults-neighbour');
    await rig.gc();
    expect((await rig.snaps()).filter((s) => s.kind === 'active').map((s) => s.key)).toEqual([]);
    const r = await rig.ctr(['run', '--rm', '--snapshotter', SN, ref, 'faults-fill-default', '/bin/cat', '/etc/hello']);
    expect(r.stdout.trim()).toBe('hello from the image layer');
    await rig.gc();
    expect((await rig.snaps()).filter((s) => s.kind === 'active')).toEqual([]);
    expect(await rig.disagreement()).toEqual([]);
    expect(rig.leaks()).toEqual([]);
  }, STEP);
});
