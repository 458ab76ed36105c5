// The applier on the devmapper backend, in the VM, against a real
// `tsblock serve --backend devmapper` (owned 1G pool, 64M devices):
//   - the corpus (every entry type, gzip / tar / zstd, whiteouts and opaque
//     dirs across layers) applied by the server's Diff service (gRPC Apply)
//     into Prepare'd thin devices and committed gives the same tree, file by
//     file with owners, modes, xattrs, rdevs, hardlinks and mtimes, as the
//     applier writes onto a plain loop-mounted ext4, and as containerd 1.6's
//     own applier (ctr images import) makes in the same VM;
//   - hostile layers are re-rooted or refused with INVALID_ARGUMENT, nothing
//     outside changes, the snapshot stays removable and no dm device or
//     mount is left;
//   - Diff (full, and parent → child with whiteouts) writes layers that
//     re-apply to the same trees;
//   - `tsblock import` through the live daemon names snapshots by chain ID,
//     skips them the second time, refuses a wrong diffID leaving nothing,
//     and `tsblock diff` exports a layer that re-applies to the same tree.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { applyLayer } from '../../src/apply/applier.js';
import { chainIds } from '../../src/apply/chain.js';
import { LAYER_GZIP, LAYER_TAR, LAYER_ZSTD } from '../../src/apply/export.js';
import { diffCommand } from '../../src/cli/commands/diff.js';
import { importCommand } from '../../src/cli/commands/import.js';
import { lsCommand } from '../../src/cli/commands/ls.js';
import { makeExt4 } from '../../src/sys/exec.js';
import { withTempMount } from '../../src/sys/mount.js';
import { failure } from '../helpers/client.js';
import { buildTar, chunked, dir, file, hardlink, symlink, zstdTar, type LayerEntry } from '../fixtures/layers/build.js';
import { buildCorpus, type CorpusLayer } from '../fixtures/layers/corpus.js';
import { writeLayoutArchive } from '../fixtures/layers/oci.js';
import { makeSandbox, type Sandbox } from '../integration/apply/helpers.js';
import { listTree } from '../integration/apply/tree.js';
import { containerdMissing, containerdTree, startContainerd } from '../integration/apply/containerd.js';
import { capture } from '../integration/cli/helpers.js';
import { DiffClient, storeBlob } from '../integration/reliability/layer.js';
import { activeSnapDevices, opsSkipReason, startDmServer, stopDmServer, treeOf, type DmServer } from './ops-helpers.js';
import { skipOrFail } from '../helpers/env.js';

const MiB = 1024 ** 2;
const why = opsSkipReason ? ` (skipped: ${opsSkipReason})` : '';
if (opsSkipReason) console.warn(`devmapper apply tests skipped: ${opsSkipReason}`);

/** referenceTree applies the layers with the applier onto a plain loop-mounted ext4 (no device-mapper) and lists it. */
async function referenceTree(work: string, layers: CorpusLayer[]): Promise<string[]> {
  const img = path.join(work, 'reference.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 64 * MiB);
  await makeExt4(img, { noLostFound: true });
  try {
    return await withTempMount(
      [{ type: 'ext4', source: img, options: ['loop', 'rw'] }],
      async (d) => {
        for (const l of layers) await applyLayer(d, chunked(l.blob, 65536), { mediaType: l.mediaType });
        return listTree(d, { mtimes: true });
      },
      { parent: work },
    );
  } finally {
    fs.rmSync(img, { force: true });
  }
}

describe.skipIf(opsSkipReason !== '')(`applier and Diff service on devmapper${why}`, { timeout: 600_000 }, () => {
  let s: DmServer | undefined;
  let d: DiffClient;
  let corpus: CorpusLayer[];
  let chain: string[];
  let reference: string[];
  const srv = (): DmServer => s!;
  const line = (tree: string[], name: string) => tree.find((l) => l.startsWith(`${name} `));

  beforeAll(async () => {
    corpus = await buildCorpus();
    chain = chainIds(corpus.map((l) => l.diffId));
    s = await startDmServer('tsblock-dmapply-');
    d = new DiffClient(s.socket);
    reference = await referenceTree(s.dir, corpus);
  }, 600_000);

  afterAll(async () => {
    d?.close();
    const leaks = await stopDmServer(s);
    expect(leaks).toEqual([]);
  }, 300_000);

  afterEach(async () => {
    // Nothing mounted or attached under the scratch dir (the server's own
    // temp mounts live in <root>/mnt), and no snapshot device left active:
    // every test removes its actives and views, commits deactivate.
    expect(srv().leaks()).toEqual([]);
    expect(activeSnapDevices(srv().pool)).toEqual([]);
  });

  it('applies the corpus through gRPC Apply into dm snapshots: the same tree as on plain ext4', async () => {
    const c = srv().client;
    for (const [i, l] of corpus.entries()) {
      const key = `extract-${i}`;
      const mounts = await c.prepare(key, i === 0 ? '' : `layer-${i - 1}`);
      expect(mounts).toHaveLength(1);
      expect(mounts[0]).toMatchObject({ type: 'ext4', source: expect.stringMatching(new RegExp(`^/dev/mapper/${srv().pool}-snap-\\d+$`)) });
      const blob = storeBlob(srv().root, l.blob);
      expect(await d.apply(blob, mounts, 300_000, l.mediaType)).toBe(l.diffId);
      await c.commit(`layer-${i}`, key);
    }
    expect(reference.length).toBeGreaterThan(20);
    const top = await treeOf(srv(), 'layer-2');
    expect(top).toEqual(reference);
    // The semantics, not only agreement with the applier on ext4:
    expect(line(top, 'gone')).toBeUndefined();
    expect(top.filter((l) => l.startsWith('data/opq/')).map((l) => l.split(' ')[0])).toEqual(['data/opq/c']);
    expect(line(top, 'bin/tool')).toMatch(/^bin\/tool f 4755 0:0 /);
    expect(line(top, 'bin/capped')).toMatch(/security\.capability=0100000200040000/);
    expect(line(top, 'etc/attrs')).toMatch(/user\.bin=00ff80,user\.one=7631/);
    expect(line(top, 'bin/sh')).toBe('bin/sh l 777 0:0 -> tool');
    expect(line(top, 'bin/ls')).toMatch(/ link=bin\/busybox( |$)/);
    expect(line(top, 'etc/passwd-link')).not.toMatch(/link=/); // L2 rewrote etc/passwd
    expect(line(top, 'etc/owned')).toBeUndefined();
    expect(line(top, 'replaced')).toBe('replaced d 750 0:0');
    expect(line(top, 'remode')).toMatch(/^remode f 4711 2:3 /);
    expect(line(top, 'dev/null')).toMatch(/^dev\/null c 666 0:0 rdev=259/);
    expect(line(top, 'dev/loop9')).toMatch(/^dev\/loop9 b 660 0:6 rdev=1801/);
    expect(line(top, 'dev-fifo')).toMatch(/^dev-fifo p 644 /);
    expect(line(top, 'tmp')).toBe('tmp d 1777 0:0');
    expect(line(top, 'root')).toBe('root d 700 0:0');
    expect(line(top, 'new/deep/er')).toMatch(/^new\/deep\/er d \d+ 1234:5678$/);
    expect(line(top, 'data/big')).toMatch(new RegExp(`^data/big f \\d+ 0:0 ${3 * MiB} `));
    expect(line(top, 'bin/tool')).toMatch(/ t=\d{9,}$/);
    // In the middle layer the cross-layer hardlink still shares L0's inode.
    const mid = await treeOf(srv(), 'layer-1');
    expect(line(mid, 'etc/passwd-link')).toMatch(/ link=etc\/passwd( |$)/);
    expect(line(mid, 'etc/owned')).toMatch(/^etc\/owned f 640 1000:1000 /);
  });

  it('and the same tree as containerd 1.6\'s own applier makes in this VM (ctr images import, native snapshotter)', async (ctx) => {
    const missing = containerdMissing();
    if (missing) skipOrFail(ctx, `containerd comparison: ${missing}`);
    // containerd's root on a real ext4: the guest's tmpfs (kernel 6.1) refuses
    // user.* xattrs, which containerd then drops with a warning.
    const img = path.join(srv().dir, 'ctrd.img');
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 256 * MiB);
    await makeExt4(img, { noLostFound: true });
    let theirs: string[] = [];
    try {
      await withTempMount([{ type: 'ext4', source: img, options: ['loop', 'rw'] }], async (work) => {
        const cd = await startContainerd(work, {});
        try {
          const layers = corpus.map((l) => ({ blob: l.blob, mediaType: l.mediaType, diffId: l.diffId }));
          theirs = await containerdTree(cd, work, layers, 'example.com/corpus:dm', chain[2]!);
        } finally {
          await cd.stop();
        }
      }, { parent: srv().dir });
    } finally {
      fs.rmSync(img, { force: true });
    }
    expect(theirs.length).toBeGreaterThan(20);
    expect(await treeOf(srv(), 'layer-2')).toEqual(theirs);
  });

  describe('hostile layers through gRPC Apply', () => {
    let sb: Sandbox;
    let n = 0;
    beforeAll(() => {
      sb = makeSandbox(srv().dir);
    });
    afterAll(() => sb?.cleanup());

    /** hostile applies entries (or raw bytes) on layer-0; expectError is the refusal's pattern, undefined when it must succeed. */
    const hostile = async (layer: LayerEntry[] | Buffer, expectError: RegExp | undefined, check?: (root: string) => void, mediaType = LAYER_TAR) => {
      const c = srv().client;
      const before = sb.fingerprint();
      const passwd = fs.readFileSync('/etc/passwd', 'utf8');
      const key = `hostile-${++n}`;
      const mounts = await c.prepare(key, 'layer-0');
      const device = path.basename(mounts[0]!.source);
      try {
        const blob = storeBlob(srv().root, Buffer.isBuffer(layer) ? layer : await buildTar(layer));
        const res = await failure(d.apply(blob, mounts, 300_000, mediaType));
        if (expectError) {
          expect(res.code, res.details).toBe(status.INVALID_ARGUMENT);
          expect(res.details).toMatch(expectError);
        } else {
          expect(res.code, res.details).toBe(status.OK);
          if (check) await withTempMount(await c.mounts(key), async (r) => check(r), { readOnly: true, parent: srv().dir });
        }
        // Nothing outside the snapshot changed; the server unmounted it.
        expect(sb.fingerprint()).toEqual(before);
        expect(fs.readFileSync('/etc/passwd', 'utf8')).toBe(passwd);
        expect(fs.readdirSync(path.join(srv().root, 'mnt'))).toEqual([]);
      } finally {
        // Removable whatever happened: a mount the apply leaked would make this EBUSY.
        await c.remove(key);
      }
      expect(activeSnapDevices(srv().pool)).not.toContain(device);
    };
    const read = (r: string, p: string) => fs.readFileSync(path.join(r, p), 'utf8');

    it('re-roots ../ names inside the device', () =>
      hostile([file('../outside/sentinel', 'pwned'), file(`${'../'.repeat(30)}${sb.outside.slice(1)}/escaped`, 'x')], undefined, (r) => {
        expect(read(r, 'outside/sentinel')).toBe('pwned');
        expect(read(r, `${sb.outside}/escaped`)).toBe('x');
      }));
    it('re-roots absolute names', () =>
      hostile([file(path.join(sb.outside, 'sentinel'), 'pwned'), file('/etc/passwd', 'p')], undefined, (r) => {
        expect(read(r, path.join(sb.outside, 'sentinel'))).toBe('pwned');
        expect(read(r, 'etc/passwd')).toBe('p');
      }));
    it('resolves a symlink then a write through it inside the device', () =>
      hostile([symlink('esc', sb.outside), file('esc/sentinel', 'pwned'), symlink('up', '../../../..'), file(`up${sb.base}/sibling`, 'pwned')], undefined, (r) => {
        expect(fs.readlinkSync(path.join(r, 'esc'))).toBe(sb.outside);
        expect(read(r, `${sb.outside}/sentinel`)).toBe('pwned');
        expect(read(r, `${sb.base}/sibling`)).toBe('pwned');
      }));
    it('refuses a hardlink to a file outside', () => hostile([hardlink('pw', path.join(sb.outside, 'etc/passwd'))], /target does not exist/));
    it('refuses symlink loops', () => hostile([symlink('l1', 'l2'), symlink('l2', 'l1'), file('l1/x', 'x')], /too many levels of symbolic links/));
    it('refuses a truncated tar', async () => hostile((await buildTar([file('a', Buffer.alloc(200_000, 1)), dir('d')])).subarray(0, 100_000), /malformed layer/));
    it('refuses a truncated zstd stream', async () => {
      // Random bytes do not compress: half the frame is half the tar.
      const z = zstdTar(await buildTar([file('a', randomBytes(300_000))]));
      await hostile(z.subarray(0, z.length >> 1), /malformed layer: zstd decompression failed/, undefined, LAYER_ZSTD);
    });
  });

  it('Diff round-trips: a full export and a parent → child diff re-apply to the same trees', async () => {
    const c = srv().client;
    // Full: everything of layer-2 over an empty tree, gzip.
    const v2 = await c.view('rt-v2', 'layer-2');
    const full = await d.diff([], v2, LAYER_GZIP);
    expect(full.media_type).toBe(LAYER_GZIP);
    const fullId = full.annotations['containerd.io/uncompressed']!;
    expect(fullId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(fs.statSync(path.join(srv().root, 'content', 'blobs', 'sha256', full.digest.slice(7))).size).toBe(full.size);
    // Parent → child: layer-1 → layer-2 as zstd, deletions as whiteouts.
    const v1 = await c.view('rt-v1', 'layer-1');
    const top = await d.diff(v1, v2, LAYER_ZSTD);
    await c.remove('rt-v1');
    await c.remove('rt-v2');
    expect(top.media_type).toBe(LAYER_ZSTD);
    expect(top.size).toBeLessThan(full.size);

    const m1 = await c.prepare('rt-full', '');
    expect(await d.apply(full, m1, 300_000, full.media_type)).toBe(fullId);
    await c.commit('rt-full-c', 'rt-full');
    const m2 = await c.prepare('rt-top', 'layer-1');
    expect(await d.apply(top, m2, 300_000, top.media_type)).toBe(top.annotations['containerd.io/uncompressed']);
    await c.commit('rt-top-c', 'rt-top');
    expect(await treeOf(srv(), 'rt-full-c')).toEqual(reference);
    expect(await treeOf(srv(), 'rt-top-c')).toEqual(reference);
    await c.remove('rt-full-c');
    await c.remove('rt-top-c');
  });

  describe('tsblock import / diff through the live daemon', () => {
    const flags = () => srv().flags;
    const keys = async () => (await srv().client.list()).map((i) => i.name).sort();

    it('imports an OCI archive as chain-ID snapshots, then skips every layer', async () => {
      const archive = path.join(srv().dir, 'img.tar');
      await writeLayoutArchive(archive, 'example.com/dm:1', corpus.map((l) => ({ blob: l.blob, mediaType: l.mediaType, diffId: l.diffId })));
      const first = capture();
      expect(await importCommand([archive, '--json', ...flags()], first.io)).toBe(0);
      expect(JSON.parse(first.out())).toMatchObject({ applied: 3, skipped: 0, images: [{ name: 'example.com/dm:1', chainId: chain[2], layers: 3 }] });
      const again = capture();
      expect(await importCommand([archive, ...flags()], again.io)).toBe(0);
      expect(again.out()).toMatch(/imported: 0 applied .* 3 already present/);

      const ls = capture();
      expect(await lsCommand(['--json', ...flags()], ls.io)).toBe(0);
      const by = new Map((JSON.parse(ls.out()) as any[]).map((e) => [e.key, e]));
      for (const [i, id] of chain.entries()) {
        expect(by.get(id)).toMatchObject({
          kind: 'committed',
          parent: i === 0 ? '' : chain[i - 1],
          size: 64 * MiB,
          storage: expect.stringMatching(new RegExp(`^/dev/mapper/${srv().pool}-snap-\\d+$`)),
          labels: { 'containerd.io/snapshot.ref': id },
        });
      }
      expect([...by.keys()].filter((k) => k.startsWith('tsblock-extract-'))).toEqual([]);
      // Mounted and applied by the CLI process, not the server: the same tree.
      expect(await treeOf(srv(), chain[2]!)).toEqual(reference);
    });

    it('refuses a layer whose diffID is wrong and leaves no snapshot or device behind', async () => {
      const tar = await buildTar([file('wrong', 'w')]);
      const wrong = `sha256:${'0'.repeat(64)}`;
      const archive = path.join(srv().dir, 'wrong.tar');
      await writeLayoutArchive(archive, 'example.com/dm:wrong', [{ blob: tar, mediaType: LAYER_TAR, diffId: wrong }]);
      const before = await keys();
      await expect(importCommand([archive, ...flags()], capture().io)).rejects.toThrow(/layer diffID mismatch: expected sha256:0{64}/);
      expect(await keys()).toEqual(before);
    });

    it('tsblock diff exports the top layer; it re-applies onto its parent to the same tree', async () => {
      const out = path.join(srv().dir, 'top.tar.zst');
      const cap = capture();
      expect(await diffCommand([chain[2]!, '-o', out, '--json', ...flags()], cap.io)).toBe(0);
      const res = JSON.parse(cap.out());
      expect(res).toMatchObject({ file: out, mediaType: LAYER_ZSTD, digest: expect.stringMatching(/^sha256:/), diffId: expect.stringMatching(/^sha256:/) });
      expect(fs.statSync(out).size).toBe(res.size);
      const c = srv().client;
      const m = await c.prepare('cli-diff', chain[1]!);
      expect(await d.apply(storeBlob(srv().root, fs.readFileSync(out)), m, 300_000, LAYER_ZSTD)).toBe(res.diffId);
      await c.commit('cli-diff-c', 'cli-diff');
      expect(await treeOf(srv(), 'cli-diff-c')).toEqual(reference);
      await c.remove('cli-diff-c');
      await expect(diffCommand(['sha256:nope', '-o', out, ...flags()], capture().io)).rejects.toThrow(/not found/);
    });
  });
});
