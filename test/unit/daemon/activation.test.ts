// A snapshotter configured with a socket path takes the passed socket bound
// to that path (tsblock.socket's ListenStream= is the default socket path):
// /proc/net/unix maps the descriptor's inode to the path it was bound to.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { passedFdFor, unixSocketPaths } from '../../../src/daemon/activation.js';
import { closeFd, listeningUnixSocketFd } from '../../helpers/systemd.js';

const TABLE = `Num       RefCount Protocol Flags    Type St Inode Path
0000000059f54c18: 00000003 00000000 00000000 0001 03 115263 /run/tsblock/tsblock.sock
000000004ccfdefc: 00000003 00000000 00000000 0001 03 112532
00000000aa000001: 00000002 00000000 00010000 0001 01 98765 @abstract
00000000aa000002: 00000002 00000000 00010000 0001 01 4242 /tmp/with space.sock
`;

let dir = '';
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('passed sockets by path', () => {
  it('parses /proc/net/unix: filesystem paths by inode, none for unbound or abstract sockets', () => {
    expect([...unixSocketPaths(TABLE)]).toEqual([[115263, '/run/tsblock/tsblock.sock'], [4242, '/tmp/with space.sock']]);
  });

  it('finds the passed descriptor listening on a path, and none for another path or when nothing was passed', () => {
    dir = mkdtempSync(join(tmpdir(), 'tsblock-restart-activation-'));
    const a = join(dir, 'a.sock');
    const fdA = listeningUnixSocketFd(a);
    const fdB = listeningUnixSocketFd(join(dir, 'b.sock'));
    try {
      const passed = [{ fd: fdB, name: 'b' }, { fd: fdA, name: 'a' }];
      expect(passedFdFor(a, passed)).toBe(fdA);
      expect(passedFdFor(join(dir, 'c.sock'), passed)).toBeUndefined();
      expect(passedFdFor(a, [])).toBeUndefined();
      expect(passedFdFor(a, [{ fd: 987654, name: 'closed' }])).toBeUndefined();
    } finally {
      closeFd(fdA);
      closeFd(fdB);
    }
  });
});
