// paths turns tar entry names into locations inside the layer root without
// ever leaving it. Two rules, both taken from containerd's applier (facts,
// not code):
//
//  1. Names are cleaned *as if rooted*: leading "/" and "./" are dropped and
//     ".." pops a component but stops at the root, so "../../etc/x" lands on
//     <root>/etc/x. Nothing is rejected for "..", it is re-rooted.
//  2. Every parent component is walked with lstat. A symlink met on the way
//     is resolved relative to the root: absolute targets restart at the root,
//     ".." is clamped at the root, and more than MAX_SYMLINK_HOPS links in one
//     resolution is a loop. The final component is never followed here; the
//     entry writers replace whatever sits there without opening it.
//
// The root is a private mount of a snapshot that nobody else writes while the
// layer is applied, so a check-then-act on a path inside it cannot race.
//
// The filesystem calls are synchronous on purpose (as in entries.ts): each is
// a page-cache operation of a few µs on the freshly mounted snapshot, and a
// thread-pool round trip per lstat cost more than the call itself
// (docs/performance.md, "Applier"). The methods stay async for callers.

import fs from 'node:fs';
import { InvalidArgumentError } from '../errdefs.js';

/** MAX_PATH_BYTES is the longest entry or link name accepted (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** MAX_NAME_BYTES is the longest single path component accepted (NAME_MAX). */
export const MAX_NAME_BYTES = 255;
/** MAX_SYMLINK_HOPS bounds symlink resolution in one path, like the kernel's ELOOP limit. */
export const MAX_SYMLINK_HOPS = 40;

/**
 * cleanEntryName splits a tar name into components, cleaned as if rooted
 * ("." and empty parts dropped, ".." clamped at the root). An empty result
 * means the root itself. Over-long names throw InvalidArgumentError.
 */
export function cleanEntryName(name: string, what = 'entry name'): string[] {
  const bytes = Buffer.byteLength(name);
  if (bytes > MAX_PATH_BYTES) {
    throw new InvalidArgumentError(`malformed layer: ${what} is ${bytes} bytes long (limit ${MAX_PATH_BYTES}): ${name.slice(0, 64)}…`);
  }
  if (name.includes('\0')) throw new InvalidArgumentError(`malformed layer: ${what} contains a NUL byte`);
  const parts: string[] = [];
  for (const seg of name.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      parts.pop();
      continue;
    }
    const n = Buffer.byteLength(seg);
    if (n > MAX_NAME_BYTES) {
      throw new InvalidArgumentError(`malformed layer: ${what} has a ${n}-byte component (limit ${MAX_NAME_BYTES}): ${seg.slice(0, 64)}…`);
    }
    parts.push(seg);
  }
  return parts;
}

/** joinKey is the canonical relative form of resolved components ("" is the root). */
export function joinKey(parts: readonly string[]): string {
  return parts.join('/');
}

/**
 * RootResolver resolves parent directories inside one root. It caches
 * resolutions of parent paths because a layer lists many entries per
 * directory; any removal of a directory or symlink inside the root must call
 * invalidate(), since a cached resolution may go through it.
 */
export class RootResolver {
  private readonly cache = new Map<string, string[]>();

  /** root must be an absolute, symlink-free directory path (realpath). */
  constructor(
    readonly root: string,
    private readonly onCreateDir: (parts: string[]) => void = () => {},
  ) {}

  /** abs is the host path of resolved components. */
  abs(parts: readonly string[]): string {
    return parts.length === 0 ? this.root : `${this.root}/${parts.join('/')}`;
  }

  /** invalidate forgets cached resolutions (after a directory or symlink was removed or replaced). */
  invalidate(): void {
    this.cache.clear();
  }

  /**
   * resolveDir resolves components that must all be directories and returns
   * the real, symlink-free components under the root. With create, missing
   * directories are made (0755, reported to onCreateDir); without it a
   * missing one yields undefined. A non-directory on the way is an error.
   */
  async resolveDir(parts: readonly string[], create: boolean): Promise<string[] | undefined> {
    if (parts.length === 0) return [];
    const key = joinKey(parts);
    const hit = this.cache.get(key);
    if (hit) return hit;
    // Entries usually follow their parent directory's entry: start from the
    // cached parent when there is one.
    let start: string[] = [];
    let rest = parts;
    if (parts.length > 1) {
      const up = this.cache.get(joinKey(parts.slice(0, -1)));
      if (up) {
        start = up;
        rest = parts.slice(-1);
      }
    }
    const out = this.walk(start, rest, create, key);
    if (out) this.cache.set(key, out);
    return out;
  }

  /**
   * resolveNoFollow resolves all but the last component as directories and
   * keeps the last as is (not followed): the location of an existing entry,
   * e.g. a hardlink target. Undefined when a parent is missing.
   */
  async resolveNoFollow(parts: readonly string[]): Promise<string[] | undefined> {
    if (parts.length === 0) return [];
    const parent = await this.resolveDir(parts.slice(0, -1), false);
    return parent ? [...parent, parts[parts.length - 1]!] : undefined;
  }

  private walk(start: string[], rest: readonly string[], create: boolean, name: string): string[] | undefined {
    const cur = [...start];
    // pending is a stack: the next component to visit is at the end.
    const pending = [...rest].reverse();
    let hops = 0;
    while (pending.length > 0) {
      const c = pending.pop()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        cur.pop(); // clamped: popping the root is a no-op
        continue;
      }
      cur.push(c);
      const p = this.abs(cur);
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (!st) {
        if (!create) return undefined;
        fs.mkdirSync(p, 0o755);
        this.onCreateDir([...cur]);
        continue;
      }
      if (st.isDirectory()) continue;
      if (st.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS) {
          throw new InvalidArgumentError(`malformed layer: too many levels of symbolic links resolving "${name}" inside the root`);
        }
        const target = fs.readlinkSync(p);
        cur.pop();
        if (target.startsWith('/')) cur.length = 0; // absolute: re-rooted
        const segs = target.split('/');
        for (let i = segs.length - 1; i >= 0; i--) pending.push(segs[i]!);
        continue;
      }
      throw new InvalidArgumentError(`malformed layer: "${joinKey(cur)}" is not a directory (parent of "${name}")`);
    }
    return cur;
  }
}
