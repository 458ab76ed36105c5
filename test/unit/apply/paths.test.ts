import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RootResolver, cleanEntryName } from '../../../src/apply/paths.js';

describe('cleanEntryName', () => {
  it('cleans names as if rooted', () => {
    expect(cleanEntryName('./a/b/')).toEqual(['a', 'b']);
    expect(cleanEntryName('/abs//x/./y')).toEqual(['abs', 'x', 'y']);
    expect(cleanEntryName('../../etc/passwd')).toEqual(['etc', 'passwd']);
    expect(cleanEntryName('a/../../b')).toEqual(['b']);
    expect(cleanEntryName('./')).toEqual([]);
    expect(cleanEntryName('..')).toEqual([]);
  });
  it('refuses over-long names and components', () => {
    expect(() => cleanEntryName('x'.repeat(4097))).toThrow(/4097 bytes long \(limit 4096\)/);
    expect(() => cleanEntryName(`a/${'y'.repeat(256)}`)).toThrow(/256-byte component \(limit 255\)/);
    expect(() => cleanEntryName('é'.repeat(128))).toThrow(/256-byte component/); // bytes, not characters
    expect(cleanEntryName('z'.repeat(255))).toHaveLength(1);
  });
  it('refuses NUL bytes', () => {
    expect(() => cleanEntryName('a\0b')).toThrow(/NUL/);
  });
});

describe('RootResolver', () => {
  let base: string;
  let root: string;
  beforeEach(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-resolver-'));
    root = path.join(base, 'root');
    fs.mkdirSync(path.join(root, 'real/sub'), { recursive: true });
  });
  afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

  it('resolves absolute and relative symlinks inside root', async () => {
    fs.symlinkSync('/real', path.join(root, 'abs'));
    fs.symlinkSync('../../../../real/sub', path.join(root, 'real/up'));
    fs.symlinkSync(base, path.join(root, 'host'));
    const r = new RootResolver(root);
    expect(await r.resolveDir(['abs', 'sub'], false)).toEqual(['real', 'sub']);
    expect(await r.resolveDir(['real', 'up'], false)).toEqual(['real', 'sub']);
    // A link to a host path is re-rooted: base's path inside root does not exist.
    expect(await r.resolveDir(['host'], false)).toBeUndefined();
  });

  it('creates missing parents only when asked, and reports them', async () => {
    const made: string[] = [];
    const r = new RootResolver(root, (p) => made.push(p.join('/')));
    expect(await r.resolveDir(['n1', 'n2'], false)).toBeUndefined();
    expect(await r.resolveDir(['n1', 'n2'], true)).toEqual(['n1', 'n2']);
    expect(made).toEqual(['n1', 'n1/n2']);
    expect(fs.statSync(path.join(root, 'n1/n2')).mode & 0o777).toBe(0o755 & ~process.umask());
  });

  it('detects loops and non-directories', async () => {
    fs.symlinkSync('b', path.join(root, 'a'));
    fs.symlinkSync('a', path.join(root, 'b'));
    fs.writeFileSync(path.join(root, 'file'), '');
    const r = new RootResolver(root);
    await expect(r.resolveDir(['a', 'x'], true)).rejects.toThrow(/too many levels of symbolic links/);
    await expect(r.resolveDir(['file', 'x'], true)).rejects.toThrow(/"file" is not a directory/);
  });

  it('forgets cached resolutions on invalidate', async () => {
    fs.symlinkSync('real', path.join(root, 'l'));
    const r = new RootResolver(root);
    expect(await r.resolveDir(['l'], false)).toEqual(['real']);
    fs.unlinkSync(path.join(root, 'l'));
    fs.mkdirSync(path.join(root, 'l'));
    expect(await r.resolveDir(['l'], false)).toEqual(['real']); // stale until told
    r.invalidate();
    expect(await r.resolveDir(['l'], false)).toEqual(['l']);
  });
});
