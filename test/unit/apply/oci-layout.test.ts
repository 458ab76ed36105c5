// openLayout without root: index → nested index narrowed to the host
// platform → manifest → config diff_ids → chain IDs; --name selection;
// archives; clear errors for missing or inconsistent layouts.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chainIds } from '../../../src/apply/chain.js';
import { hostPlatform, openLayout } from '../../../src/import/oci.js';
import { writeLayoutArchive, writeLayoutDir } from '../../fixtures/layers/oci.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const layer = (s: string) => ({ blob: Buffer.from(s), mediaType: 'application/vnd.oci.image.layer.v1.tar', diffId: sha(Buffer.from(s)) });

describe('openLayout', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-oci-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('resolves a layout dir and an archive to layers with chain IDs', async () => {
    const layers = [layer('a'), layer('b')];
    writeLayoutDir(path.join(dir, 'l'), 'example.com/x:1', layers);
    await writeLayoutArchive(path.join(dir, 'x.tar'), 'example.com/x:1', layers);
    for (const src of [path.join(dir, 'l'), path.join(dir, 'x.tar')]) {
      const l = await openLayout(src, { tmpParent: dir });
      try {
        expect(l.images).toHaveLength(1);
        expect(l.images[0]!.name).toBe('example.com/x:1');
        expect(l.images[0]!.layers.map((x) => x.chainId)).toEqual(chainIds(layers.map((x) => x.diffId)));
        expect(fs.readFileSync(l.images[0]!.layers[1]!.blobPath, 'utf8')).toBe('b');
      } finally {
        await l.close();
      }
    }
    // The archive's temporary copy is gone after close.
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('tsblock-import-'))).toEqual([]);
    await expect(openLayout(path.join(dir, 'l'), { name: 'other' })).rejects.toThrow(/no image named other/);
    expect((await openLayout(path.join(dir, 'l'), { name: '1' })).images).toHaveLength(1);
  });

  it('narrows a nested index to the host platform', async () => {
    const l = path.join(dir, 'l');
    writeLayoutDir(l, 'example.com/x:1', [layer('a')]);
    const index = JSON.parse(fs.readFileSync(path.join(l, 'index.json'), 'utf8'));
    const m = index.manifests[0];
    const nested = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          { ...m, platform: { os: 'linux', architecture: 'not-this-one' }, digest: `sha256:${'0'.repeat(64)}` },
          { ...m, platform: hostPlatform() },
        ],
      }),
    );
    fs.writeFileSync(path.join(l, 'blobs', 'sha256', sha(nested).slice(7)), nested);
    index.manifests = [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha(nested), size: nested.length, annotations: m.annotations }];
    fs.writeFileSync(path.join(l, 'index.json'), JSON.stringify(index));
    const opened = await openLayout(l);
    expect(opened.images[0]!.manifestDigest).toBe(m.digest);
  });

  it('reports missing and inconsistent layouts clearly', async () => {
    await expect(openLayout(path.join(dir, 'nope'))).rejects.toMatchObject({ code: 'not-found' });
    fs.mkdirSync(path.join(dir, 'empty'));
    await expect(openLayout(path.join(dir, 'empty'))).rejects.toThrow(/index\.json not found/);
    fs.writeFileSync(path.join(dir, 'junk.tar'), 'not a tar');
    await expect(openLayout(path.join(dir, 'junk.tar'), { tmpParent: dir })).rejects.toThrow();
  });
});
