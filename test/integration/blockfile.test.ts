// The shared snapshotter suite against the blockfile backend, for real: sparse
// ext4 images, loop devices, mounts. Once on the host's ext4 (/var/tmp: sparse
// copies), once in tsblock's XFS store in a file on it (the default there),
// and once on a loop-mounted XFS with reflink=1 (FICLONE clones).

import { afterAll, beforeAll, describe } from 'vitest';
import { join } from 'node:path';
import { MetaStore } from '../../src/storage/metastore.js';
import { CoreSnapshotter } from '../../src/core/snapshotter.js';
import { BlockfileBackend } from '../../src/backends/blockfile/blockfile.js';
import { snapshotterSuite, type Opened } from '../suites/snapshotter-suite.js';
import { rootReason, makeXfsScratch, type XfsScratch } from '../helpers/env.js';
import { leaksUnder } from '../helpers/leaks.js';
import { XfsFileStore } from '../../src/backends/blockfile/store.js';

async function open(root: string): Promise<Opened> {
  const store = new MetaStore(join(root, 'metadata.db'));
  const backend = new BlockfileBackend({ dir: join(root, 'blockfile'), baseSize: 1024 ** 3 });
  const sn = await CoreSnapshotter.open({ store, backend });
  return { sn, close: () => sn.close() };
}

const skip = rootReason !== undefined;
const why = skip ? ` (skipped: ${rootReason})` : '';

describe.skipIf(skip)(`blockfile on ext4 (sparse copies)${why}`, () => {
  snapshotterSuite('suite', { open, leaks: leaksUnder, tmpParent: () => '/var/tmp' });
});

async function openInStore(root: string): Promise<Opened> {
  const store = new XfsFileStore({ root, initialSize: 2 * 1024 ** 3 });
  const backend = new BlockfileBackend({ dir: join(root, 'store', 'blockfile'), baseSize: 1024 ** 3, store });
  const sn = await CoreSnapshotter.open({ store: new MetaStore(join(root, 'metadata.db')), backend });
  return { sn, close: () => sn.close() };
}

describe.skipIf(skip)(`blockfile in its XFS store on the host's filesystem (the default where the root cannot reflink)${why}`, () => {
  snapshotterSuite('suite', { open: openInStore, leaks: leaksUnder, tmpParent: () => '/var/tmp' });
});

describe.skipIf(skip)(`blockfile on XFS reflink=1 (FICLONE)${why}`, () => {
  let xfs: XfsScratch;
  beforeAll(() => {
    xfs = makeXfsScratch();
  });
  afterAll(() => xfs?.release());
  snapshotterSuite('suite', { open, leaks: leaksUnder, tmpParent: () => xfs.dir });
});
