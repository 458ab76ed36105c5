// whiteout implements OCI layer deletions (image-spec layer.md):
//   ".wh.<name>"   deletes <name> from lower layers (recursively for a dir);
//   ".wh..wh..opq" makes its directory opaque: everything lower layers put
//                  there goes, entries of this layer stay.
// Whiteout files are never created. Other ".wh..wh." names are AUFS
// bookkeeping and are ignored.
//
// An opaque marker may come after this layer's own entries in that
// directory, so the applier records everything the layer wrote (LayerWrites)
// and the purge keeps those, plus every directory on the way to one of them.

import fs from 'node:fs';
import { InvalidArgumentError } from '../errdefs.js';
import { joinKey, type RootResolver } from './paths.js';

/** WHITEOUT_PREFIX marks a deletion entry. */
export const WHITEOUT_PREFIX = '.wh.';
/** WHITEOUT_META_PREFIX marks AUFS metadata entries. */
export const WHITEOUT_META_PREFIX = '.wh..wh.';
/** OPAQUE_MARKER makes its directory opaque. */
export const OPAQUE_MARKER = '.wh..wh..opq';

/** Whiteout classifies an entry's base name. */
export type Whiteout = { kind: 'none' } | { kind: 'opaque' } | { kind: 'meta' } | { kind: 'delete'; target: string };

/** classifyWhiteout tells what an entry with this base name means. */
export function classifyWhiteout(base: string): Whiteout {
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: 'none' };
  if (base === OPAQUE_MARKER) return { kind: 'opaque' };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') {
    throw new InvalidArgumentError(`malformed layer: whiteout "${base}" names no file`);
  }
  return { kind: 'delete', target };
}

/**
 * LayerWrites remembers which resolved paths the current layer wrote, and
 * which directories lie on the way to them, so an opaque purge keeps them.
 */
export class LayerWrites {
  private readonly written = new Set<string>();
  private readonly ancestors = new Set<string>();

  /** add records resolved components written by this layer. */
  add(parts: readonly string[]): void {
    this.written.add(joinKey(parts));
    for (let n = parts.length - 1; n > 0; n--) {
      const k = joinKey(parts.slice(0, n));
      if (this.ancestors.has(k)) break;
      this.ancestors.add(k);
    }
  }

  /** keeps tells whether a path was written by this layer or leads to something that was. */
  keeps(key: string): boolean {
    return this.written.has(key) || this.ancestors.has(key);
  }
}

// Synchronous calls, as in paths.ts and entries.ts: µs page-cache operations
// that a thread-pool round trip each would only slow down.
function lstatOrUndefined(p: string): fs.Stats | undefined {
  return fs.lstatSync(p, { throwIfNoEntry: false });
}

/**
 * removeEntry deletes the entry at resolved components (never following a
 * final symlink; a directory goes recursively). Removing a directory or a
 * symlink invalidates the resolver's cache. Returns whether anything was there.
 */
export async function removeEntry(resolver: RootResolver, parts: readonly string[]): Promise<boolean> {
  const p = resolver.abs(parts);
  const st = lstatOrUndefined(p);
  if (!st) return false;
  if (st.isDirectory()) {
    fs.rmSync(p, { recursive: true, force: true });
    resolver.invalidate();
  } else {
    fs.unlinkSync(p);
    if (st.isSymbolicLink()) resolver.invalidate();
  }
  return true;
}

/**
 * applyWhiteout removes <target> in the directory at parentParts (entry
 * components, unresolved). A missing parent means there is nothing to delete.
 */
export async function applyWhiteout(resolver: RootResolver, parentParts: readonly string[], target: string): Promise<void> {
  const parent = await resolver.resolveDir(parentParts, false);
  if (parent) await removeEntry(resolver, [...parent, target]);
}

/**
 * purgeOpaque removes everything under the directory at parentParts that the
 * current layer did not write, descending into kept directories because a
 * directory entry of this layer merged over a lower one still hides the lower
 * one's children.
 */
export async function purgeOpaque(resolver: RootResolver, parentParts: readonly string[], writes: LayerWrites): Promise<void> {
  const dir = await resolver.resolveDir(parentParts, false);
  if (dir) await purgeDir(resolver, dir, writes);
}

async function purgeDir(resolver: RootResolver, dir: string[], writes: LayerWrites): Promise<void> {
  const entries = fs.readdirSync(resolver.abs(dir), { withFileTypes: true });
  for (const e of entries) {
    const parts = [...dir, e.name];
    if (!writes.keeps(joinKey(parts))) {
      await removeEntry(resolver, parts);
    } else if (e.isDirectory()) {
      await purgeDir(resolver, parts, writes);
    }
  }
}
