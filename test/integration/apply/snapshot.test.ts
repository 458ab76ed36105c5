// The applier at snapshot level on the real blockfile backend: layers are
// applied through a temporary loop mount of what Prepare returned, committed
// under their chain IDs, hostile layers leave nothing outside the mount and
// no snapshot behind, `tsblock diff` output re-applies to the same tree, and
// `import` of an OCI layout seeds a chain a second import skips.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BlockfileBackend } from '../../../src/backends/blockfile/blockfile.js';
import { CoreSnapshotter } from '../../../src/core/snapshotter.js';
import { MetaStore } from '../../../src/storage/metastore.js';
import { chainIds } from '../../../src/apply/chain.js';
import { unpackLayer, applyToMounts } from '../../../src/apply/unpack.js';
import { diffSnapshot } from '../../../src/apply/snapshot-diff.js';
import { LAYER_TAR } from '../../../src/apply/export.js';
import { importImages } from '../../../src/import/importer.js';
import { openLayout } from '../../../src/import/oci.js';
import { withTempMount } from '../../../src/sys/mount.js';
import { Kind } from '../../../src/snapshots/snapshotter.js';
import { buildTar, chunked, diffIdOf, file, gzipTar, hardlink, opaque, symlink, dir, whiteout, type LayerEntry } from '../../fixtures/layers/build.js';
import { buildCorpus, type CorpusLayer } from '../../fixtures/layers/corpus.js';
import { writeLayoutArchive, writeLayoutDir } from '../../fixtures/layers/oci.js';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { makeSandbox, type Sandbox } from './helpers.js';
import { listTree } from './tree.js';

const skip = rootReason !== undefined;
const why = skip ? ` (skipped: ${rootReason})` : '';
if (skip) console.warn(`snapshot-level apply tests skipped: ${rootReason}`);

async function openBlockfile(root: string): Promise<CoreSnapshotter> {
  const store = new MetaStore(path.join(root, 'metadata.db'));
  const backend = new BlockfileBackend({ dir: path.join(root, 'blockfile'), baseSize: 256 * 1024 ** 2 });
  return CoreSnapshotter.open({ store, backend });
}

async function keys(sn: CoreSnapshotter): Promise<{ key: string; kind: Kind }[]> {
  const out: { key: string; kind: Kind }[] = [];
  await sn.walk((i) => void out.push({ key: i.name, kind: i.kind }));
  return out;
}

/** viewTree lists a committed snapshot's tree through a temporary View. */
async function viewTree(sn: CoreSnapshotter, name: string): Promise<string[]> {
  const k = `view-${Math.random()}`;
  const m = await sn.view(k, name);
  try {
    return await withTempMount(m, async (d) => listTree(d), { readOnly: true });
  } finally {
    await sn.remove(k);
  }
}

describe.skipIf(skip)(`apply into blockfile snapshots${why}`, () => {
  let work: string;
  let sb: Sandbox;
  let sn: CoreSnapshotter;
  let corpus: CorpusLayer[];
  let chain: string[];
  beforeAll(async () => {
    // State and layouts live beside the sandbox: its fingerprint reads every file.
    work = fs.mkdtempSync('/var/tmp/tsblock-snapapply-');
    sb = makeSandbox(work);
    sn = await openBlockfile(path.join(work, 'state'));
    corpus = await buildCorpus();
    chain = chainIds(corpus.map((l) => l.diffId));
  });
  afterAll(async () => {
    await sn?.close();
    const leaks = work ? leaksUnder(work) : [];
    if (work) fs.rmSync(work, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  });
  afterEach(() => {
    expect(leaksUnder(work)).toEqual([]);
  });

  it('unpacks the corpus as committed chain-ID snapshots through a loop mount, and skips it the second time', async () => {
    let parent = '';
    for (const [i, l] of corpus.entries()) {
      const r = await unpackLayer(sn, { parent, chainId: chain[i]!, diffId: l.diffId, mediaType: l.mediaType, open: () => chunked(l.blob, 65536) });
      expect(r.skipped).toBe(false);
      parent = chain[i]!;
    }
    const ks = await keys(sn);
    expect(ks.map((k) => k.key).sort()).toEqual([...chain].sort());
    expect(ks.every((k) => k.kind === Kind.Committed)).toBe(true);
    expect((await sn.stat(chain[2]!)).labels['containerd.io/snapshot.ref']).toBe(chain[2]);
    for (const [i, l] of corpus.entries()) {
      const r = await unpackLayer(sn, { parent: i ? chain[i - 1]! : '', chainId: chain[i]!, diffId: l.diffId, open: () => { throw new Error('must not open'); } });
      expect(r.skipped).toBe(true);
    }
    const tree = await viewTree(sn, chain[2]!);
    const line = (n: string) => tree.find((l) => l.startsWith(`${n} `));
    expect(line('gone')).toBeUndefined();
    expect(tree.filter((l) => l.startsWith('data/opq/')).map((l) => l.split(' ')[0])).toEqual(['data/opq/c']);
    expect(line('bin/tool')).toMatch(/^bin\/tool f 4755 0:0 /);
    expect(line('bin/capped')).toMatch(/security\.capability=0100000200040000/);
    expect(line('bin/sh')).toBe('bin/sh l 777 0:0 -> tool');
    expect(line('bin/ls')).toMatch(/link=bin\/busybox$/);
    // L2 re-wrote etc/passwd: the L1 hardlink keeps the old inode, as with containerd.
    expect(line('etc/passwd-link')).not.toMatch(/link=/);
    expect(line('etc/owned')).toBeUndefined();
    expect(line('replaced')).toBe('replaced d 750 0:0');
    expect(line('remode')).toMatch(/^remode f 4711 2:3 /);
    expect(line('dev/null')).toMatch(/^dev\/null c 666 0:0 rdev=259/);
    expect(line('tmp')).toBe('tmp d 1777 0:0');
  });

  describe('hostile layers through the mount', () => {
    let before: string[];
    const mountParent = () => sb.root;
    const hostile = async (entries: LayerEntry[] | Buffer, expectError: RegExp | undefined, diffId?: string) => {
      before = sb.fingerprint();
      const blob = Buffer.isBuffer(entries) ? entries : await buildTar(entries);
      const chainId = `sha256:${'e'.repeat(63)}${Math.floor(Math.random() * 10)}`;
      const p = unpackLayer(sn, { parent: chain[0]!, chainId, diffId: diffId ?? diffIdOf(blob), open: () => chunked(blob, 65536) }, { mountParent: mountParent() });
      if (expectError) await expect(p).rejects.toThrow(expectError);
      else await p;
      // Nothing outside the mount changed, no extraction snapshot is left.
      expect(sb.fingerprint()).toEqual(before);
      const left = (await keys(sn)).filter((k) => k.kind !== Kind.Committed);
      expect(left).toEqual([]);
      if (!expectError) await sn.remove(chainId);
      expect(fs.readdirSync(sb.root)).toEqual([]); // the temporary mount point is gone
    };
    it('../ names are re-rooted inside the snapshot', () => hostile([file('../outside/sentinel', 'pwned'), file(`${'../'.repeat(20)}${sb.outside.slice(1)}/x`, 'x')], undefined));
    it('absolute names are re-rooted', () => hostile([file(path.join(sb.outside, 'sentinel'), 'pwned'), file('/etc/passwd', 'p')], undefined));
    it('symlink then write through it stays inside', () =>
      hostile([symlink('esc', sb.outside), file('esc/sentinel', 'pwned'), symlink('up', '../../../..'), file(`up${sb.base}/sibling`, 'pwned')], undefined));
    it('symlink loops fail clearly', () => hostile([symlink('l1', 'l2'), symlink('l2', 'l1'), file('l1/x', 'x')], /too many levels of symbolic links/));
    it('huge names fail clearly', () => hostile([file('a/'.repeat(2100) + 'f', 'x')], /limit 4096/));
    it('a truncated stream fails clearly', async () => hostile((await buildTar([file('a', Buffer.alloc(200_000, 1)), dir('d')])).subarray(0, 100_000), /malformed layer/, `sha256:${'1'.repeat(64)}`));
    it('a truncated gzip stream fails clearly', async () => hostile(gzipTar(await buildTar([file('a', randomBytes(200_000))])).subarray(0, 30_000), /malformed layer: gzip/, `sha256:${'1'.repeat(64)}`));
    it('a wrong diffID fails after the whole stream was read', () => hostile([file('ok', 'ok')], /layer diffID mismatch/, `sha256:${'0'.repeat(64)}`));
  });

  it('applyToMounts unmounts when the apply fails', async () => {
    const m = await sn.prepare('fail-key', chain[0]!);
    try {
      await expect(applyToMounts(m, chunked(Buffer.from('not a tar at all, just text that is long enough'.repeat(20))), { mountParent: sb.root })).rejects.toThrow(/malformed layer/);
      expect(leaksUnder(work)).toEqual([]);
    } finally {
      await sn.remove('fail-key');
    }
  });

  it('diff exports a layer that re-applies to the same tree (whiteouts included)', async () => {
    const out = path.join(work, 'l2.tar');
    const res = await diffSnapshot(sn, chain[2]!, out, { mediaType: LAYER_TAR });
    const names: string[] = [];
    const tarStream = (await import('tar-stream')).default.extract();
    const done = new Promise<void>((r) => tarStream.on('finish', r));
    tarStream.on('entry', (h, s, next) => {
      names.push(h.name);
      s.on('end', next).resume();
    });
    tarStream.end(fs.readFileSync(out));
    await done;
    expect(names).toContain('etc/.wh.owned');
    expect(names).toContain('bin/sh');
    expect(names).not.toContain('bin/busybox');
    const again = `sha256:${'d'.repeat(64)}`;
    const r = await unpackLayer(sn, { parent: chain[1]!, chainId: again, diffId: res.diffId, open: () => fs.createReadStream(out) });
    expect(r.skipped).toBe(false);
    expect(await viewTree(sn, again)).toEqual(await viewTree(sn, chain[2]!));
    // A full export (over nothing) re-creates the whole tree in one layer.
    const full = path.join(work, 'full.tar.gz');
    const fres = await diffSnapshot(sn, chain[2]!, full, { parent: '' });
    const flat = `sha256:${'f'.repeat(64)}`;
    await unpackLayer(sn, { parent: '', chainId: flat, diffId: fres.diffId, open: () => fs.createReadStream(full) });
    expect(await viewTree(sn, flat)).toEqual(await viewTree(sn, chain[2]!));
    await sn.remove(again);
    await sn.remove(flat);
  });

  it('import of an OCI layout dir and archive seeds the chain once', async () => {
    const other = await openBlockfile(path.join(work, 'state2'));
    try {
      const dirLayout = path.join(work, 'layout');
      const layers = corpus.map((l) => ({ blob: l.blob, mediaType: l.mediaType, diffId: l.diffId }));
      writeLayoutDir(dirLayout, 'example.com/corpus:1', layers);
      const archive = path.join(work, 'corpus.tar');
      await writeLayoutArchive(archive, 'example.com/corpus:1', layers);
      const l1 = await openLayout(archive, { tmpParent: work });
      try {
        expect(l1.images.map((i) => [i.name, i.layers.map((x) => x.chainId)])).toEqual([['example.com/corpus:1', chain]]);
        const s1 = await importImages(other, l1.images);
        expect([s1.applied, s1.skipped]).toEqual([3, 0]);
      } finally {
        await l1.close();
      }
      const l2 = await openLayout(dirLayout, { name: 'example.com/corpus:1' });
      const s2 = await importImages(other, l2.images);
      expect([s2.applied, s2.skipped]).toEqual([0, 3]);
      await expect(openLayout(dirLayout, { name: 'nope' })).rejects.toThrow(/no image named nope/);
      expect(await viewTree(other, chain[2]!)).toEqual(await viewTree(sn, chain[2]!));
    } finally {
      await other.close();
    }
  });

  it('imports a 200-layer image as 200 committed chain-ID snapshots; the top holds what whiteouts, opaque dirs and cross-layer hardlinks leave', async () => {
    const deep = await openBlockfile(path.join(work, 'state-200'));
    try {
      const layers: { blob: Buffer; mediaType: string; diffId: string }[] = [];
      for (let i = 0; i < 200; i++) {
        const entries: LayerEntry[] = [dir('chain'), file(`chain/f${i}`, `layer ${i}`), file('chain/latest', String(i))];
        if (i === 0) entries.push(dir('keep'), file('keep/base', 'from layer 0', { mode: 0o640, uid: 5, gid: 6 }));
        if (i > 0) entries.push(whiteout(`chain/f${i - 1}`), dir('links'), hardlink(`links/l${i}`, 'keep/base'));
        if (i > 1) entries.push(whiteout(`links/l${i - 1}`));
        if (i % 50 === 49) entries.push(opaque('chain'));
        const tar = await buildTar(entries);
        layers.push(i % 2 ? { blob: gzipTar(tar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: diffIdOf(tar) }
          : { blob: tar, mediaType: LAYER_TAR, diffId: diffIdOf(tar) });
      }
      const archive = path.join(work, 'deep.tar');
      await writeLayoutArchive(archive, 'example.com/deep:200', layers);
      const l = await openLayout(archive, { tmpParent: work });
      let deepChain: string[];
      try {
        deepChain = l.images[0]!.layers.map((x) => x.chainId);
        const t0 = Date.now();
        const sum = await importImages(deep, l.images);
        expect([sum.applied, sum.skipped]).toEqual([200, 0]);
        console.log(`200-layer import into blockfile: ${Date.now() - t0} ms`);
      } finally {
        await l.close();
      }
      const ks = await keys(deep);
      expect(ks).toHaveLength(200);
      expect(ks.every((k) => k.kind === Kind.Committed)).toBe(true);
      expect((await deep.stat(deepChain[199]!)).parent).toBe(deepChain[198]);
      const tree = await viewTree(deep, deepChain[199]!);
      const names = tree.map((x) => x.split(' ')[0]);
      expect(names.filter((n) => n!.startsWith('chain/'))).toEqual(['chain/f199', 'chain/latest']);
      expect(names.filter((n) => n!.startsWith('links/'))).toEqual(['links/l199']);
      // the last layer's hardlink shares the layer-0 file's inode; as containerd's
      // applier does (archive/tar.go: Lchown + lchmod for every entry type), the
      // link header's owner and mode (0:0, 0644) land on that shared inode
      expect(tree.find((x) => x.startsWith('links/l199 '))).toMatch(/^links\/l199 f 644 0:0 12 .*link=keep\/base$/);
      expect(tree.find((x) => x.startsWith('keep/base '))).toMatch(/^keep\/base f 644 0:0 12 /);
      // and the middle of the chain is intact too
      const mid = await viewTree(deep, deepChain[120]!);
      expect(mid.map((x) => x.split(' ')[0]).filter((n) => n!.startsWith('chain/'))).toEqual(['chain/f120', 'chain/latest']);
    } finally {
      await deep.close();
    }
  }, 300_000);
});
