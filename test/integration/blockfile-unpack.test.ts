// Unpack snapshots ("extract-…" keys, containerd's unpack key format, and
// tsblock's own "tsblock-extract-…") get
// faster mount options (no barriers, data=writeback); everything else keeps
// ext4's defaults. The options must really mount on this kernel, and a layer
// written through them must be in the committed image.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { join } from 'node:path';
import { MetaStore } from '../../src/storage/metastore.js';
import { CoreSnapshotter } from '../../src/core/snapshotter.js';
import { BlockfileBackend, UNPACK_MOUNT_OPTIONS } from '../../src/backends/blockfile/blockfile.js';
import { withTempMount } from '../../src/sys/mount.js';
import { rootReason } from '../helpers/env.js';

const skip = rootReason !== undefined;
const why = skip ? ` (skipped: ${rootReason})` : '';

describe.skipIf(skip)(`blockfile unpack mounts${why}`, () => {
  let root: string;
  let sn: CoreSnapshotter;
  beforeEach(async () => {
    root = fs.mkdtempSync('/var/tmp/tsblock-unpack-');
    const store = new MetaStore(join(root, 'metadata.db'));
    const backend = new BlockfileBackend({ dir: join(root, 'blockfile'), baseSize: 256 * 1024 ** 2, mountOptions: ['noatime'] });
    sn = await CoreSnapshotter.open({ store, backend });
  });
  afterEach(async () => {
    await sn?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('gives extract- keys the unpack options, other keys the defaults, operator options last', async () => {
    const unpack = await sn.prepare('extract-1 sha256:aa', '');
    expect(unpack[0]!.options).toEqual(['loop', 'rw', ...UNPACK_MOUNT_OPTIONS, 'noatime']);
    const own = await sn.prepare('tsblock-extract-1-ab sha256:cc', '');
    expect(own[0]!.options).toEqual(unpack[0]!.options);
    const plain = await sn.prepare('container-1', '');
    expect(plain[0]!.options).toEqual(['loop', 'rw', 'noatime']);
    for (const o of UNPACK_MOUNT_OPTIONS) expect(plain[0]!.options).not.toContain(o);
    // Mounts() of the same key answers the same.
    expect((await sn.mounts('extract-1 sha256:aa'))[0]!.options).toEqual(unpack[0]!.options);
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
  });
});
