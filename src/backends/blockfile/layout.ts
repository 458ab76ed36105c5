// layout decides where a blockfile root keeps its images: directly under the
// root (<root>/blockfile) when the root's filesystem can reflink, or inside
// the root's XFS store (<root>/store/blockfile, store.ts) when it cannot.
// Decided once per root and then kept: a root that has images directly keeps
// using them (a forced "xfs-file" on it is refused, never a silent move), and
// a root with a store keeps its store.

import { existsSync, readdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { FailedPreconditionError } from '../../errdefs.js';
import { canReflink } from '../../sys/reflink.js';
import { STORE_DIR, storeExists } from './store.js';

import type { StoreMode } from '../names.js';
export { STORE_MODES, type StoreMode } from '../names.js';

/** BlockfileLayout is the decision: the images' dir, and whether it sits in a store. */
export interface BlockfileLayout {
  dir: string;
  store: boolean;
  /** note is a warning for the log (a root that keeps full copies). */
  note?: string;
}

/** directDir is where a root without a store keeps its images. */
export function directDir(root: string): string {
  return join(root, 'blockfile');
}

/** storeDir is where a root with a store keeps its images (inside the mounted store). */
export function storeImagesDir(root: string): string {
  return join(root, STORE_DIR, 'blockfile');
}

/** hasDirectImages tells whether root keeps images directly (a base image or any snapshot). */
export function hasDirectImages(root: string): boolean {
  const dir = directDir(root);
  if (existsSync(join(dir, 'base.img'))) return true;
  try {
    return readdirSync(join(dir, 'snapshots')).length > 0;
  } catch {
    return false;
  }
}

/** blockfileLayout decides the layout of root for mode (root must exist). */
export function blockfileLayout(root: string, mode: StoreMode): BlockfileLayout {
  const inStore: BlockfileLayout = { dir: storeImagesDir(root), store: true };
  const direct: BlockfileLayout = { dir: directDir(root), store: false };
  if (mode === 'direct') {
    if (storeExists(root)) {
      throw new FailedPreconditionError(
        `${root} keeps its images in its store (${join(root, 'store.xfs')}); store = "direct" would not see them: use store = "auto" or another root`,
      );
    }
    return direct;
  }
  if (storeExists(root)) return inStore;
  if (hasDirectImages(root)) {
    if (mode === 'xfs-file') {
      throw new FailedPreconditionError(
        `${root} already keeps images directly under ${directDir(root)}; tsblock does not move them into a store: ` +
          `use store = "auto" (keeps them), or a new root for store = "xfs-file" (containerd re-pulls into it)`,
      );
    }
    if (!canReflink(root)) {
      return {
        ...direct,
        note: `${root} cannot reflink and keeps its images directly (made before the store existed): every container's snapshot is a full copy of its image. ` +
          'A new root gets an XFS store and cheap clones (docs/operations.md, "The store")',
      };
    }
    return direct;
  }
  if (mode === 'xfs-file') return inStore;
  if (canReflink(root)) return direct;
  const st = statfsSync(root);
  if (st.blocks * st.bsize < AUTO_STORE_MIN_HOST) {
    return {
      ...direct,
      note: `${root} cannot reflink, and its filesystem (${Math.floor((st.blocks * st.bsize) / 1024 ** 2)} MiB) is too small for a store: images are full copies`,
    };
  }
  return inStore;
}

/** AUTO_STORE_MIN_HOST is the smallest host filesystem "auto" makes a store on (a store needs ≥ 1 GiB and room beside it). */
export const AUTO_STORE_MIN_HOST = 2 * 1024 ** 3;

/** imagesDirOf is where root keeps its images now: in its store if it has one, else directly. */
export function imagesDirOf(root: string): string {
  return storeExists(root) ? storeImagesDir(root) : directDir(root);
}
