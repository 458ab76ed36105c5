// diffTrees on plain directories: the layer it writes, applied onto a copy
// of lower, gives upper (changed bytes at the same size and second, type
// changes, deletions as whiteouts, opaque-free dir replacement, hardlinks,
// xattrs, modes).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyLayer } from '../../../src/apply/applier.js';
import { exportDiff, LAYER_TAR, LAYER_ZSTD } from '../../../src/apply/export.js';
import { setXattr } from '../../../src/sys/nodes.js';
import { listTree } from './tree.js';

describe('diffTrees / exportDiff on directories', () => {
  let base: string;
  beforeEach(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-differ-'));
  });
  afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

  it('round-trips lower → upper through a layer', async () => {
    const lower = path.join(base, 'lower');
    const w = (p: string, c: string, t = 1_700_000_000) => {
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, c);
      fs.utimesSync(p, t, t);
    };
    w(`${lower}/same`, 'same');
    w(`${lower}/samesize`, 'aaaa');
    w(`${lower}/gone/deep/x`, 'x');
    w(`${lower}/dir2file/child`, 'c');
    w(`${lower}/file2dir`, 'f');
    w(`${lower}/keepdir/old`, 'old');
    fs.symlinkSync('same', `${lower}/link`);
    await execa('cp', ['-a', lower, path.join(base, 'upper')]);
    const upper = path.join(base, 'upper');
    w(`${upper}/samesize`, 'bbbb'); // same size, same whole-second mtime: only bytes differ
    fs.rmSync(`${upper}/gone`, { recursive: true });
    fs.rmSync(`${upper}/dir2file`, { recursive: true });
    w(`${upper}/dir2file`, 'now a file');
    fs.rmSync(`${upper}/file2dir`);
    w(`${upper}/file2dir/inner`, 'in');
    fs.rmSync(`${upper}/keepdir/old`);
    w(`${upper}/keepdir/new`, 'new');
    fs.chmodSync(`${upper}/same`, 0o600);
    fs.unlinkSync(`${upper}/link`);
    fs.symlinkSync('samesize', `${upper}/link`);
    w(`${upper}/h1`, 'hard');
    fs.linkSync(`${upper}/h1`, `${upper}/h2`);
    try {
      setXattr(`${upper}/h1`, 'user.k', Buffer.from([0, 1, 0xfe]));
    } catch {
      // tmpfs without user xattrs: the rest still counts
    }
    for (const [mt, name] of [[LAYER_TAR, 'l.tar'], [LAYER_ZSTD, 'l.tar.zst']] as const) {
      const out = path.join(base, name);
      const res = await exportDiff(lower, upper, out, mt);
      const target = path.join(base, `applied-${name}`);
      await execa('cp', ['-a', lower, target]);
      const applied = await applyLayer(target, fs.createReadStream(out), { mediaType: mt });
      expect(applied.diffId).toBe(res.diffId);
      expect(listTree(target, { mtimes: true })).toEqual(listTree(upper, { mtimes: true }));
    }
    const names = (await execa('tar', ['tf', path.join(base, 'l.tar')])).stdout.split('\n');
    expect(names).toContain('.wh.gone');
    expect(names).toContain('keepdir/.wh.old');
    expect(names).toContain('samesize');
    expect(names).not.toContain('gone/deep/x');
    expect(names).not.toContain('lost+found/');
  });
});
