// Pure-logic checks of the pieces import and diff are built on: chain IDs,
// the hand-written tar encoder (read back by tar-stream and by the applier's
// own header parser, binary xattrs intact), and media-type choice by name.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import { chainIds } from '../../../src/apply/chain.js';
import { encodeHeader, END_OF_ARCHIVE, padding } from '../../../src/apply/tar-writer.js';
import { attachRawPax, toEntryMeta } from '../../../src/apply/header.js';
import { mediaTypeForFile } from '../../../src/cli/commands/diff.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('chainIds', () => {
  it('is the diffID for one layer and sha256("<parent> <diffID>") after', () => {
    const ids = chainIds([d('a'), d('b'), d('c')]);
    expect(ids[0]).toBe(d('a'));
    const h = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
    expect(ids[1]).toBe(h(`${d('a')} ${d('b')}`));
    expect(ids[2]).toBe(h(`${ids[1]} ${d('c')}`));
  });
  it('refuses malformed diffIDs', () => {
    expect(() => chainIds(['sha256:xyz'])).toThrow(/diffID "sha256:xyz" is not sha256/);
  });
});

describe('tar-writer', () => {
  it('round-trips names, long and non-ASCII names, links, devices, big ids and binary xattrs', async () => {
    const cap = Buffer.from([1, 0, 0, 2, 0, 4, 0, 0, 0xff, 0x80]);
    const longName = `${'d'.repeat(120)}/ü-${'f'.repeat(90)}`;
    const entries = [
      encodeHeader({ name: 'dir/', type: 'directory', mode: 0o1777, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000 }),
      encodeHeader({ name: 'dir/file', type: 'file', mode: 0o4755, uid: 3_000_000, gid: 7, size: 5, mtime: 1_700_000_001, xattrs: new Map([['security.capability', cap], ['user.a', Buffer.from('b')]]) }),
      Buffer.from('hello'),
      padding(5),
      encodeHeader({ name: longName, type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 1, linkname: 'x'.repeat(150) }),
      encodeHeader({ name: 'dir/hl', type: 'link', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1, linkname: 'dir/file' }),
      encodeHeader({ name: 'null', type: 'char', mode: 0o666, uid: 0, gid: 0, size: 0, mtime: 1, devmajor: 1, devminor: 3 }),
      encodeHeader({ name: 'dir/.wh.gone', type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: 0 }),
      END_OF_ARCHIVE,
    ];
    const ex = tar.extract();
    attachRawPax(ex);
    const seen: ReturnType<typeof toEntryMeta>[] = [];
    const done = new Promise<void>((resolve, reject) => {
      ex.on('finish', resolve);
      ex.on('error', reject);
    });
    ex.on('entry', (h, s, next) => {
      seen.push(toEntryMeta(h));
      s.on('end', next).resume();
    });
    ex.end(Buffer.concat(entries));
    await done;
    expect(seen.map((m) => [m.name, m.type])).toEqual([
      ['dir/', 'directory'],
      ['dir/file', 'file'],
      [longName, 'symlink'],
      ['dir/hl', 'link'],
      ['null', 'char'],
      ['dir/.wh.gone', 'file'],
    ]);
    const f = seen[1]!;
    expect([f.mode, f.uid, f.gid, f.size]).toEqual([0o4755, 3_000_000, 7, 5]);
    expect(new Map(f.xattrs).get('security.capability')).toEqual(cap);
    expect(seen[2]!.linkname).toBe('x'.repeat(150));
    expect([seen[4]!.devmajor, seen[4]!.devminor]).toEqual([1, 3]);
    expect(seen[0]!.mode).toBe(0o1777);
  });
});

describe('mediaTypeForFile', () => {
  it('follows the output name', () => {
    expect(mediaTypeForFile('l.tar.gz')).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(mediaTypeForFile('l.tgz')).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(mediaTypeForFile('l.tar.zst')).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(mediaTypeForFile('l.tar')).toBe('application/vnd.oci.image.layer.v1.tar');
  });
});
