// tree lists a directory tree in a comparable form: one line per entry with
// name, type, mode, owner, size, content hash, link target, rdev, xattrs and
// the hardlink group (entries sharing an inode get the same first name).

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { getXattr, listXattrs } from '../../../src/sys/nodes.js';

/** TreeOptions tune listTree. */
export interface TreeOptions {
  /** skip lists root-level names left out (default lost+found). */
  skip?: string[];
  /** mtimes adds whole-second mtimes of non-directories. */
  mtimes?: boolean;
}

/** listTree returns one line per entry below root, sorted by name. */
export function listTree(root: string, opts: TreeOptions = {}): string[] {
  const skip = new Set(opts.skip ?? ['lost+found']);
  const out: string[] = [];
  const inodes = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
      if (rel === '' && skip.has(n)) continue;
      const r = rel === '' ? n : `${rel}/${n}`;
      const p = path.join(root, r);
      const st = fs.lstatSync(p);
      const type = st.isFile() ? 'f' : st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : st.isFIFO() ? 'p' : 's';
      let extra = '';
      if (type === 'f') extra = `${st.size} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}`;
      if (type === 'l') extra = `-> ${fs.readlinkSync(p)}`;
      if (type === 'c' || type === 'b') extra = `rdev=${st.rdev}`;
      if (type !== 'd' && st.nlink > 1) {
        const id = `${st.ino}`;
        if (!inodes.has(id)) inodes.set(id, r);
        extra += ` link=${inodes.get(id)}`;
      }
      let xattrs = '';
      try {
        xattrs = listXattrs(p)
          .filter((x) => !x.startsWith('system.'))
          .sort()
          .map((x) => `${x}=${getXattr(p, x)?.toString('hex')}`)
          .join(',');
      } catch {
        xattrs = '?';
      }
      const mt = opts.mtimes && type !== 'd' && type !== 'l' ? ` t=${Math.floor(st.mtimeMs / 1000)}` : '';
      out.push(`${r} ${type} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${extra}${xattrs ? ` x[${xattrs}]` : ''}${mt}`.trimEnd());
      if (type === 'd') walk(r);
    }
  };
  walk('');
  return out;
}
