// Unpack snapshots ("extract-…" keys, containerd's unpack key format, also
// in the "<namespace>/<n>/" form containerd's metadata hands a proxy, and
// tsblock's own "tsblock-extract-…") get a loop device tsblock attached
// itself and faster mount options (no barriers, data=writeback); everything
// else keeps the image file, the `loop` option and ext4's defaults. The
// options must really mount on this kernel, a layer written through them must
// be in the committed image, and the device must go with Commit, Remove or
// close().

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { join } from 'node:path';
import { MetaStore } from '../../src/storage/metastore.js';
import { CoreSnapshotter } from '../../src/core/snapshotter.js';
import { BlockfileBackend, UNPACK_MOUNT_OPTIONS } from '../../src/backends/blockfile/blockfile.js';
import { withTempMount } from '../../src/sys/mount.js';
import { loopBackingFile } from '../../src/sys/loop.js';
import { rootReason } from '../helpers/env.js';
import { loopsUnder } from '../helpers/leaks.js';
import { imagesDirOf } from '../../src/backends/blockfile/layout.js';

/** gone waits (autoclear runs on a kernel work queue) until no loop device is backed by a file under dir. */
async function noLoopsUnder(dir: string): Promise<string[]> {
  for (let i = 0; i < 40 && loopsUnder(dir).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  return loopsUnder(dir);
}

const skip = rootReason !== undefined;
const why = skip ? ` (skipped: ${rootReason})` : '';

describe.skipIf(skip)(`blockfile unpack mounts${why}`, () => {
  let root: string;
  let sn: CoreSnapshotter;
  beforeEach(async () => {
    root = fs.mkdtempSync('/var/tmp/tsblock-unpack-');
    const store = new MetaStore(join(root, 'metadata.db'));
    const backend = new BlockfileBackend({ dir: imagesDirOf(root), baseSize: 256 * 1024 ** 2, mountOptions: ['noatime'] });
    sn = await CoreSnapshotter.open({ store, backend });
  });
  afterEach(async () => {
    await sn?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('gives unpack keys their own loop device and the unpack options, other keys the file and the defaults', async () => {
    const unpack = await sn.prepare('extract-1 sha256:aa', '');
    expect(unpack[0]!.options).toEqual(['rw', ...UNPACK_MOUNT_OPTIONS, 'noatime']);
    expect(unpack[0]!.source).toMatch(/^\/dev\/loop\d+$/);
    const image = fs.realpathSync(join(imagesDirOf(root), 'snapshots', String(sn.listRows().find((r) => r.key === 'extract-1 sha256:aa')!.id)));
    expect(loopBackingFile(unpack[0]!.source)).toBe(image);
    const viaContainerd = await sn.prepare('default/12/extract-77-Vjzv sha256:bb', '');
    expect(viaContainerd[0]!.options).toEqual(unpack[0]!.options);
    expect(viaContainerd[0]!.source).not.toBe(unpack[0]!.source);
    const own = await sn.prepare('tsblock-extract-1-ab sha256:cc', '');
    expect(own[0]!.options).toEqual(unpack[0]!.options);
    const plain = await sn.prepare('default/13/container-1', '');
    expect(plain[0]!.options).toEqual(['loop', 'rw', 'noatime']);
    expect(plain[0]!.source.startsWith(join(imagesDirOf(root), 'snapshots'))).toBe(true);
    for (const o of UNPACK_MOUNT_OPTIONS) expect(plain[0]!.options).not.toContain(o);
    // Mounts() of the same key answers the same device.
    expect(await sn.mounts('extract-1 sha256:aa')).toEqual(unpack);
    expect(loopsUnder(root)).toHaveLength(3);
    // Commit and Remove let the device go; close() the rest.
    await sn.commit('layer', 'extract-1 sha256:aa');
    await sn.remove('default/12/extract-77-Vjzv sha256:bb');
    for (let i = 0; i < 40 && loopsUnder(root).length > 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(loopsUnder(root).map((l) => l.split(' ')[0])).toEqual([own[0]!.source]);
    await sn.close();
    expect(await noLoopsUnder(root)).toEqual([]);
  });

  it('mounts with the unpack options and commits what was written', async () => {
    const mounts = await sn.prepare('extract-2 sha256:bb', '');
    await withTempMount(mounts, async (dir) => {
      fs.mkdirSync(join(dir, 'etc'));
      fs.writeFileSync(join(dir, 'etc', 'layer'), 'unpacked\n');
    }, { parent: root });
    await sn.commit('layer-1', 'extract-2 sha256:bb');
    const view = await sn.view('check', 'layer-1');
    const seen = await withTempMount(view, async (dir) => fs.readFileSync(join(dir, 'etc', 'layer'), 'utf8'), { parent: root });
    expect(seen).toBe('unpacked\n');
    expect(await noLoopsUnder(root)).toEqual([]);
  });

  it('with mount_options = ["direct-io"], unpack mounts leave it out (no `loop` option: ext4 would get it and refuse) and really mount; other keys keep it', async () => {
    await sn.close();
    const store = new MetaStore(join(root, 'metadata.db'));
    const backend = new BlockfileBackend({ dir: imagesDirOf(root), baseSize: 256 * 1024 ** 2, mountOptions: ['direct-io'] });
    sn = await CoreSnapshotter.open({ store, backend });
    const unpack = await sn.prepare('extract-3 sha256:dd', '');
    expect(unpack[0]!.options).toEqual(['rw', ...UNPACK_MOUNT_OPTIONS]);
    await withTempMount(unpack, async (dir) => fs.writeFileSync(join(dir, 'f'), 'x'), { parent: root });
    await sn.commit('layer-dio', 'extract-3 sha256:dd');
    const plain = await sn.prepare('default/14/container-dio', 'layer-dio');
    expect(plain[0]!.options).toEqual(['loop', 'rw', 'direct-io']);
    // tsblock's own mount verbs take direct-io as the loop flag, as containerd >= 1.7 does.
    expect(await withTempMount(plain, async (dir) => fs.readFileSync(join(dir, 'f'), 'utf8'), { parent: root })).toBe('x');
    await sn.remove('default/14/container-dio');
    expect(await noLoopsUnder(root)).toEqual([]);
  });

  it('a killed server leaves no device behind: the kernel lets go of it with the descriptor', async () => {
    // The same attach in a child that is then SIGKILLed (what a crash does to tsblock's descriptors).
    const { spawn } = await import('node:child_process');
    const image = join(root, 'img');
    fs.copyFileSync(join(imagesDirOf(root), 'base.img'), image);
    const child = spawn(process.execPath, ['-e', `import('${join(process.cwd(), 'dist/src/sys/loop.js')}').then((l) => { const d = l.attachLoop(${JSON.stringify(image)}, { autoclear: true }); console.log(d.path); setInterval(() => {}, 1000); })`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const dev = await new Promise<string>((resolve) => child.stdout!.once('data', (b: Buffer) => resolve(b.toString().trim())));
    expect(loopBackingFile(dev)).toBe(fs.realpathSync(image));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(await noLoopsUnder(root)).toEqual([]);
  });
});
