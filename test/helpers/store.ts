// store: test access to a blockfile root's XFS store (src/backends/blockfile/store.ts)
// while no daemon has it open: a clean stop unmounts an idle store.

import { storeExists, XfsFileStore } from '../../src/backends/blockfile/store.js';
import { mountEntry, unmount } from '../../src/sys/mount.js';
import { join } from 'node:path';

/** withStoreMounted runs fn with root's store mounted (a no-op wrapper for a root without one). */
export async function withStoreMounted<T>(root: string, fn: () => T | Promise<T>): Promise<T> {
  if (!storeExists(root)) return fn();
  const store = new XfsFileStore({ root });
  await store.open();
  try {
    return await fn();
  } finally {
    await store.close();
  }
}

/**
 * releaseStore unmounts root's store if a killed daemon left it mounted (a
 * SIGKILL leaves it, as it leaves containers' mounts; the next start adopts
 * it). For test teardown after everything inside was released.
 */
export function releaseStore(root: string): void {
  const mp = join(root, 'store');
  if (mountEntry(mp)?.fsType === 'xfs') unmount(mp);
}
