// Hostile layers: every one must either fail with a clear typed error or be
// placed safely inside root (names cleaned as if rooted), and nothing outside
// root may change. Runs as root so that a bug would really be able to escape.

import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyLayer } from '../../../src/apply/applier.js';
import { buildTar, diffIdOf, dir, file, gzipTar, hardlink, symlink, type LayerEntry } from '../../fixtures/layers/build.js';
import { applyBuf, isRoot, makeSandbox, type Sandbox } from './helpers.js';

if (!isRoot) console.warn('hostile-layer tests skipped: they need root (a real escape must be possible to be tested)');

describe.skipIf(!isRoot)('applyLayer with hostile layers (root required)', () => {
  let sb: Sandbox;
  let before: string[];
  beforeEach(() => {
    sb = makeSandbox();
    before = sb.fingerprint();
  });
  afterEach(() => {
    try {
      // The invariant of every test here: nothing outside root changed.
      expect(sb.fingerprint()).toEqual(before);
    } finally {
      sb.cleanup();
    }
  });
  const at = (p: string) => path.join(sb.root, p);
  // outsideRel is the sandbox's outside dir as an absolute path minus the leading "/".
  const outsideAbs = () => path.join(sb.outside, 'sentinel');
  const apply = async (entries: LayerEntry[]) => applyBuf(sb.root, await buildTar(entries));

  it('re-roots ../ names', async () => {
    // Deep "../" chains aim at the sandbox's own outside dir, never at host paths.
    const deep = `${'../'.repeat(30)}${sb.outside.slice(1)}/escaped`;
    await apply([file('../outside/sentinel', 'pwned'), file(deep, 'x'), file('a/../../sibling', 's')]);
    expect(fs.readFileSync(at('outside/sentinel'), 'utf8')).toBe('pwned');
    expect(fs.readFileSync(path.join(sb.root, sb.outside, 'escaped'), 'utf8')).toBe('x');
    expect(fs.readFileSync(at('sibling'), 'utf8')).toBe('s');
  });

  it('re-roots absolute names', async () => {
    await apply([file(outsideAbs(), 'pwned'), dir('/abs/dir'), file('//abs//dir/./f', 'f')]);
    expect(fs.readFileSync(path.join(sb.root, outsideAbs()), 'utf8')).toBe('pwned');
    expect(fs.readFileSync(at('abs/dir/f'), 'utf8')).toBe('f');
  });

  it('resolves a symlink to / in a parent inside root (a -> /, then a/<outside>/sentinel)', async () => {
    await apply([symlink('a', '/'), file(`a${outsideAbs()}`, 'pwned'), dir(`a${sb.base}/newdir`)]);
    expect(fs.readlinkSync(at('a'))).toBe('/'); // the link itself is kept verbatim
    expect(fs.readFileSync(path.join(sb.root, outsideAbs()), 'utf8')).toBe('pwned');
    expect(fs.existsSync(path.join(sb.root, sb.base, 'newdir'))).toBe(true);
  });

  it('clamps symlinks to .. chains at root', async () => {
    await apply([dir('x/y'), symlink('x/y/up', '../../../../..'), file('x/y/up/outside/sentinel', 'pwned'), symlink('rel', 'x/y/up/../..'), file('rel/z', 'z')]);
    expect(fs.readFileSync(at('outside/sentinel'), 'utf8')).toBe('pwned');
    expect(fs.readFileSync(at('z'), 'utf8')).toBe('z');
  });

  it('follows a symlink created earlier in the same layer only inside root', async () => {
    await apply([symlink('escape', sb.outside), file('escape/sentinel', 'pwned'), symlink('rel-escape', '../outside'), file('rel-escape/sentinel', 'pwned2')]);
    expect(fs.readFileSync(path.join(sb.root, sb.outside, 'sentinel'), 'utf8')).toBe('pwned');
    expect(fs.readFileSync(at('outside/sentinel'), 'utf8')).toBe('pwned2');
  });

  it('never follows a final symlink: a file, dir or device entry replaces the link', async () => {
    await apply([symlink('f', outsideAbs()), file('f', 'replaced'), symlink('d', sb.outside), dir('d', { mode: 0o700 }), symlink('n', outsideAbs()), { name: 'n', type: 'fifo' }]);
    expect(fs.lstatSync(at('f')).isFile()).toBe(true);
    expect(fs.lstatSync(at('d')).isDirectory()).toBe(true);
    expect(fs.lstatSync(at('n')).isFIFO()).toBe(true);
  });

  it('refuses symlink loops', async () => {
    await expect(apply([symlink('l1', 'l2'), symlink('l2', 'l1'), file('l1/x', 'x')])).rejects.toMatchObject({
      code: 'invalid-argument',
      message: expect.stringMatching(/too many levels of symbolic links/),
    });
    await expect(apply([symlink('self', 'self/a'), file('self/b', 'x')])).rejects.toMatchObject({ code: 'invalid-argument' });
  });

  it('keeps hardlink targets inside root', async () => {
    await expect(apply([hardlink('pw', '../../etc/passwd')])).rejects.toMatchObject({
      code: 'invalid-argument',
      message: expect.stringMatching(/hardlink "pw" -> "..\/..\/etc\/passwd": target does not exist/),
    });
    await expect(apply([hardlink('pw', path.join(sb.outside, 'etc/passwd'))])).rejects.toMatchObject({ code: 'invalid-argument' });
    await expect(apply([hardlink('pw', `${'../'.repeat(30)}${sb.outside.slice(1)}/etc/passwd`)])).rejects.toMatchObject({ code: 'invalid-argument' });
    expect(fs.statSync(path.join(sb.outside, 'etc/passwd')).nlink).toBe(1);
    await expect(apply([symlink('s', '/'), hardlink('pw', `s${sb.outside}/etc/passwd`)])).rejects.toMatchObject({ code: 'invalid-argument' });
    await expect(apply([dir('d'), hardlink('dl', 'd')])).rejects.toMatchObject({ message: expect.stringMatching(/target is a directory/) });
    // A hardlink to a symlink pointing outside links the symlink itself.
    await apply([symlink('out', outsideAbs()), hardlink('out2', 'out')]);
    expect(fs.lstatSync(at('out2')).isSymbolicLink()).toBe(true);
    expect(fs.lstatSync(at('out')).nlink).toBe(2);
  });

  it('refuses huge names with a clear error', async () => {
    await expect(apply([file('a/'.repeat(2100) + 'f', 'x')])).rejects.toMatchObject({
      code: 'invalid-argument',
      message: expect.stringMatching(/entry name is \d+ bytes long \(limit 4096\)/),
    });
    await expect(apply([file('n'.repeat(300), 'x')])).rejects.toMatchObject({ message: expect.stringMatching(/300-byte component/) });
    await expect(apply([symlink('s', 'x'.repeat(5000))])).rejects.toMatchObject({ code: 'invalid-argument' });
  });

  it('accepts a long (PAX) name within limits', async () => {
    const long = `${'d'.repeat(200)}/${'e'.repeat(250)}/f`;
    await apply([file(long, 'ok')]);
    expect(fs.readFileSync(at(long), 'utf8')).toBe('ok');
  });

  it('refuses a truncated stream', async () => {
    const t = await buildTar([file('a', Buffer.alloc(100_000, 1)), file('b', 'b')]);
    await expect(applyBuf(sb.root, t.subarray(0, 50_000))).rejects.toMatchObject({
      code: 'invalid-argument',
      message: expect.stringMatching(/malformed layer: Unexpected end of data/),
    });
    await expect(applyBuf(sb.root, gzipTar(t).subarray(0, 200))).rejects.toMatchObject({
      code: 'invalid-argument',
      message: expect.stringMatching(/malformed layer: gzip decompression failed/),
    });
  });

  it('refuses a corrupt gzip stream and a corrupt tar header', async () => {
    const t = await buildTar([file('a', Buffer.alloc(100_000, 1))]);
    const gz = gzipTar(t);
    gz.fill(0x55, 20, 60);
    await expect(applyBuf(sb.root, gz)).rejects.toMatchObject({ code: 'invalid-argument', message: expect.stringMatching(/gzip/) });
    const bad = Buffer.from(t);
    bad[0] ^= 0xff; // breaks the header checksum
    await expect(applyBuf(sb.root, bad)).rejects.toMatchObject({ code: 'invalid-argument', message: expect.stringMatching(/malformed layer: Invalid tar header/) });
  });

  it('refuses a wrong diffID after draining the stream', async () => {
    const t = await buildTar([file('a', 'a')]);
    const wrong = `sha256:${'0'.repeat(64)}`;
    await expect(applyBuf(sb.root, gzipTar(t), { expectedDiffId: wrong })).rejects.toMatchObject({
      code: 'invalid-argument',
      message: `layer diffID mismatch: expected ${wrong} got ${diffIdOf(t)}`,
    });
  });

  it('stops on abort', async () => {
    const ac = new AbortController();
    async function* slow() {
      yield await buildTar([file('a', 'a')]).then((b) => b.subarray(0, 512));
      ac.abort(new Error('stop now'));
      await new Promise(() => {}); // a stalled source
    }
    await expect(applyLayer(sb.root, slow(), { signal: ac.signal })).rejects.toThrow('stop now');
  });
});
