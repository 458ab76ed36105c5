// differ writes the changes from a lower tree to an upper tree as an OCI
// layer tar (image-spec layer.md "Changesets"): entries added or modified in
// upper, ".wh.<name>" for what upper removed, parent directories of every
// change (so the layer applies on its own), hardlinks kept as links to the
// first path of the inode written in this layer. Applying the result onto
// lower gives upper (names, types, modes, owners, contents, xattrs, link
// targets, mtimes to the second).
//
// A regular file counts as unchanged only when type, mode, owner, size,
// mtime (ns), xattrs are equal and the mtime has a non-zero nanosecond part
// (else its bytes are compared): the same rule containerd's double walk uses
// to avoid trusting second-granularity times.

import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from '../sys/errno.js';
import { getXattr, listXattrs } from '../sys/nodes.js';
import { END_OF_ARCHIVE, encodeHeader, padding, type TarHeader } from './tar-writer.js';
import { WHITEOUT_PREFIX } from './whiteout.js';

/** DiffOptions tune diffTrees. */
export interface DiffOptions {
  signal?: AbortSignal;
  /** skipRoot lists root-level names never diffed (default lost+found: mkfs puts it in every ext4). */
  skipRoot?: string[];
}

async function lstatOr(p: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(p, { bigint: false });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

function kindOf(st: Stats): TarHeader['type'] | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return undefined; // sockets are not representable in tar
}

function xattrsOf(p: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let names: string[];
  try {
    names = listXattrs(p);
  } catch (err) {
    if (isErrno(err, 'ENOTSUP', 'EOPNOTSUPP')) return out;
    throw err;
  }
  for (const n of names.sort()) {
    // Filesystem-internal attributes are not layer content.
    if (n.startsWith('system.') && n !== 'system.posix_acl_access' && n !== 'system.posix_acl_default') continue;
    const v = getXattr(p, n);
    if (v !== undefined) out.set(n, v);
  }
  return out;
}

function sameXattrs(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (!b.get(k)?.equals(v)) return false;
  return true;
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([fs.open(a), fs.open(b)]);
  try {
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (;;) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length, null), fb.read(bb, 0, bb.length, null)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

async function changed(u: string, us: Stats, l: string, ls: Stats): Promise<boolean> {
  const k = kindOf(us);
  if (k !== kindOf(ls) || us.mode !== ls.mode || us.uid !== ls.uid || us.gid !== ls.gid) return true;
  if (!sameXattrs(xattrsOf(u), xattrsOf(l))) return true;
  switch (k) {
    case 'symlink':
      return (await fs.readlink(u)) !== (await fs.readlink(l));
    case 'char':
    case 'block':
      return us.rdev !== ls.rdev;
    case 'file':
      if (us.size !== ls.size) return true;
      if (us.mtimeMs !== ls.mtimeMs) return true;
      // A sub-second mtime part is trusted; whole seconds (tar-applied files) are not.
      if (us.mtimeMs % 1000 !== 0) return false;
      return !(await sameContent(u, l));
    case 'directory':
      return us.mtimeMs !== ls.mtimeMs;
    default:
      return false;
  }
}

/**
 * diffTrees yields an uncompressed layer tar of the changes from lower
 * (undefined: an empty tree) to upper. Both are directories the caller keeps
 * still (mounted read-only) while the generator runs.
 */
export async function* diffTrees(lower: string | undefined, upper: string, opts: DiffOptions = {}): AsyncGenerator<Buffer> {
  const skip = new Set(opts.skipRoot ?? ['lost+found']);
  const links = new Map<string, string>(); // "dev:ino" -> first tar name
  // pending holds directories on the current path not yet written: they are
  // emitted (outermost first) only when something below them changed.
  const pending: { name: string; abs: string; st: Stats }[] = [];

  async function* header(name: string, abs: string, st: Stats): AsyncGenerator<Buffer> {
    const type = kindOf(st)!;
    const h: TarHeader = { name, type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0, mtime: Math.floor(st.mtimeMs / 1000) };
    h.xattrs = xattrsOf(abs);
    if (type === 'symlink') h.linkname = await fs.readlink(abs);
    if (type === 'char' || type === 'block') {
      h.devmajor = Number((BigInt(st.rdev) >> 8n) & 0xfffn) | Number((BigInt(st.rdev) >> 32n) & ~0xfffn);
      h.devminor = Number(BigInt(st.rdev) & 0xffn) | Number((BigInt(st.rdev) >> 12n) & ~0xffn);
    }
    if (type !== 'directory' && st.nlink > 1) {
      const id = `${st.dev}:${st.ino}`;
      const first = links.get(id);
      if (first !== undefined) {
        yield encodeHeader({ ...h, type: 'link', linkname: first, xattrs: undefined });
        return;
      }
      links.set(id, name);
    }
    if (type === 'file') {
      h.size = st.size;
      yield encodeHeader(h);
      const fh = await fs.open(abs);
      try {
        let left = st.size;
        while (left > 0) {
          const buf = Buffer.allocUnsafe(Math.min(left, 1 << 20));
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          if (bytesRead === 0) throw new Error(`${abs} shrank while being diffed`);
          yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
          left -= bytesRead;
        }
      } finally {
        await fh.close();
      }
      yield padding(st.size);
      return;
    }
    yield encodeHeader(h);
  }

  async function* flushParents(): AsyncGenerator<Buffer> {
    for (const d of pending) yield* header(d.name, d.abs, d.st);
    pending.length = 0;
  }

  async function* walk(rel: string, lowerDir: string | undefined): AsyncGenerator<Buffer> {
    opts.signal?.throwIfAborted();
    const upperDir = rel === '' ? upper : path.join(upper, rel);
    const un = await fs.readdir(upperDir);
    const ln = lowerDir ? await fs.readdir(lowerDir).catch(() => [] as string[]) : [];
    const names = [...new Set([...un, ...ln])].sort();
    const upperSet = new Set(un);
    for (const n of names) {
      if (rel === '' && skip.has(n)) continue;
      const name = rel === '' ? n : `${rel}/${n}`;
      const ua = path.join(upperDir, n);
      const la = lowerDir ? path.join(lowerDir, n) : undefined;
      if (!upperSet.has(n)) {
        yield* flushParents();
        const wh = rel === '' ? `${WHITEOUT_PREFIX}${n}` : `${rel}/${WHITEOUT_PREFIX}${n}`;
        yield encodeHeader({ name: wh, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: 0 });
        continue;
      }
      const us = (await lstatOr(ua))!;
      if (!kindOf(us)) continue;
      const ls = la ? await lstatOr(la) : undefined;
      if (us.isDirectory()) {
        const lowerIsDir = ls?.isDirectory() === true;
        const dirChanged = !ls || !lowerIsDir || (await changed(ua, us, la!, ls));
        const depth = pending.length;
        if (dirChanged) {
          yield* flushParents();
          yield* header(`${name}/`, ua, us);
        } else pending.push({ name: `${name}/`, abs: ua, st: us });
        yield* walk(name, lowerIsDir ? la : undefined);
        pending.length = Math.min(pending.length, depth);
        continue;
      }
      if (!ls || (await changed(ua, us, la!, ls))) {
        yield* flushParents();
        yield* header(name, ua, us);
      }
    }
  }

  yield* walk('', lower);
  yield END_OF_ARCHIVE;
}
