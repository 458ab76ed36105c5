// The Diff service over gRPC on the same server as Snapshots, on the real
// blockfile backend: Apply a layer blob onto Prepare's mounts, Commit, then
// Diff (empty → committed View) writes a layer that, applied again, gives
// the same tree; `import` through the Snapshots socket (RemoteSnapshots)
// seeds a chain as the CLI does while a daemon runs.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockfileBackend } from '../../../src/backends/blockfile/blockfile.js';
import { CoreSnapshotter } from '../../../src/core/snapshotter.js';
import { MetaStore } from '../../../src/storage/metastore.js';
import { diffClientConstructor } from '../../../src/proto/load.js';
import { serveInProcess } from '../../helpers/server.js';
import { mountToProto } from '../../../src/server/convert.js';
import { RemoteSnapshots } from '../../../src/import/remote.js';
import { importImages } from '../../../src/import/importer.js';
import { openLayout } from '../../../src/import/oci.js';
import { chainIds } from '../../../src/apply/chain.js';
import { withTempMount } from '../../../src/sys/mount.js';
import { buildCorpus, type CorpusLayer } from '../../fixtures/layers/corpus.js';
import { writeLayoutDir } from '../../fixtures/layers/oci.js';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { listTree } from './tree.js';

const skip = rootReason !== undefined;
const why = skip ? ` (skipped: ${rootReason})` : '';

describe.skipIf(skip)(`Diff service over gRPC on blockfile${why}`, () => {
  let work: string;
  let sn: CoreSnapshotter;
  let server: grpc.Server;
  let remote: RemoteSnapshots;
  let diff: grpc.Client & Record<string, any>;
  let corpus: CorpusLayer[];
  const blobDir = () => path.join(work, 'state', 'content');
  const call = <T>(method: string, req: object): Promise<T> =>
    new Promise((resolve, reject) => diff[method](req, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));

  beforeAll(async () => {
    work = fs.mkdtempSync('/var/tmp/tsblock-diffsvc-');
    const store = new MetaStore(path.join(work, 'state', 'metadata.db'));
    sn = await CoreSnapshotter.open({ store, backend: new BlockfileBackend({ dir: path.join(work, 'state', 'blockfile'), baseSize: 256 * 1024 ** 2 }) });
    const sock = path.join(work, 'tsblock.sock');
    server = (await serveInProcess(sn, sock, { diff: { blobDir: blobDir(), contentDirs: [] } })).server;
    remote = new RemoteSnapshots(sock, 'tsblock');
    const Ctor = diffClientConstructor();
    diff = new Ctor(`unix://${sock}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
    corpus = await buildCorpus();
  });
  afterAll(async () => {
    diff?.close();
    remote?.close();
    server?.forceShutdown();
    await sn?.close();
    const leaks = work ? leaksUnder(work) : [];
    if (work) fs.rmSync(work, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  });

  it('Apply then Diff round-trips a layer', async () => {
    const l0 = corpus[0]!;
    const blobDigest = `sha256:${createHash('sha256').update(l0.blob).digest('hex')}`;
    fs.mkdirSync(path.join(blobDir(), 'blobs', 'sha256'), { recursive: true });
    fs.writeFileSync(path.join(blobDir(), 'blobs', 'sha256', blobDigest.slice(7)), l0.blob);

    const mounts = await remote.prepare('extract-1', '');
    const applied = await call<{ applied: { digest: string; size: number; media_type: string } }>('Apply', {
      diff: { media_type: l0.mediaType, digest: blobDigest, size: l0.blob.length },
      mounts: mounts.map(mountToProto),
    });
    expect(applied.applied.digest).toBe(l0.diffId);
    expect(applied.applied.size).toBe(l0.tar.length);
    expect(applied.applied.media_type).toBe('application/vnd.oci.image.layer.v1.tar');
    await remote.commit('layer-a', 'extract-1');

    // A blob the service cannot find is NOT_FOUND with a reason.
    const m2 = await remote.prepare('extract-missing', '');
    await expect(call('Apply', { diff: { media_type: l0.mediaType, digest: `sha256:${'9'.repeat(64)}`, size: 1 }, mounts: m2.map(mountToProto) })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    await remote.remove('extract-missing');

    // A blob whose bytes are not what its digest says fails the Apply; so does a
    // wrong containerd.io/uncompressed. The snapshot stays removable.
    const forged = `sha256:${'ab'.repeat(32)}`;
    fs.writeFileSync(path.join(blobDir(), 'blobs', 'sha256', forged.slice(7)), l0.blob);
    const m4 = await remote.prepare('extract-forged', '');
    await expect(call('Apply', { diff: { media_type: l0.mediaType, digest: forged, size: l0.blob.length }, mounts: m4.map(mountToProto) })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/does not match its content/),
    });
    const badDiffId = `sha256:${'cd'.repeat(32)}`;
    await expect(call('Apply', {
      diff: { media_type: l0.mediaType, digest: blobDigest, size: l0.blob.length, annotations: { 'containerd.io/uncompressed': badDiffId } },
      mounts: m4.map(mountToProto),
    })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/diff ?id|diffID/i) });
    await remote.remove('extract-forged');

    const view = await remote.view('view-a', 'layer-a');
    const d = await call<{ diff: { digest: string; size: number; media_type: string; annotations: Record<string, string> } }>('Diff', {
      left: [],
      right: view.map(mountToProto),
      media_type: 'application/vnd.oci.image.layer.v1.tar+gzip',
    });
    await remote.remove('view-a');
    expect(d.diff.media_type).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    const written = path.join(blobDir(), 'blobs', 'sha256', d.diff.digest.slice(7));
    expect(fs.statSync(written).size).toBe(d.diff.size);
    const diffId = d.diff.annotations['containerd.io/uncompressed']!;
    expect(diffId).toMatch(/^sha256:[0-9a-f]{64}$/);

    const m3 = await remote.prepare('extract-2', '');
    const again = await call<{ applied: { digest: string } }>('Apply', { diff: d.diff, mounts: m3.map(mountToProto) });
    expect(again.applied.digest).toBe(diffId);
    await remote.commit('layer-b', 'extract-2');

    const tree = async (name: string) => {
      const v = await remote.view(`t-${name}`, name);
      try {
        return await withTempMount(v, async (dir) => listTree(dir, { mtimes: true }), { readOnly: true });
      } finally {
        await remote.remove(`t-${name}`);
      }
    };
    const ta = await tree('layer-a');
    expect(ta.length).toBeGreaterThan(20);
    expect(await tree('layer-b')).toEqual(ta);
    await remote.remove('layer-a');
    await remote.remove('layer-b');
  });

  it('import through the Snapshots socket seeds the chain, then skips it', async () => {
    const layout = path.join(work, 'layout');
    writeLayoutDir(layout, 'example.com/corpus:grpc', corpus.map((l) => ({ blob: l.blob, mediaType: l.mediaType, diffId: l.diffId })));
    const l = await openLayout(layout);
    const first = await importImages(remote, l.images);
    expect([first.applied, first.skipped]).toEqual([3, 0]);
    const chain = chainIds(corpus.map((c) => c.diffId));
    expect((await remote.stat(chain[2]!)).parent).toBe(chain[1]);
    const second = await importImages(remote, l.images);
    expect([second.applied, second.skipped]).toEqual([0, 3]);
    const names: string[] = [];
    await sn.walk((i) => void names.push(i.name));
    expect(names.sort()).toEqual([...chain].sort());
  });
});
