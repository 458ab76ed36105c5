// openSnapshotter builds the whole stack for one root: lock, metadata store,
// backend and core, with start-up reconciliation done before it returns.

import { mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { CoreSnapshotter, type CoreLogger } from '../core/snapshotter.js';
import { MetaStore } from '../storage/metastore.js';
import { loadBackendModule, type BackendSettings } from '../backends/registry.js';
import { lockExclusive, type FileLock } from '../sys/lock.js';

/** OpenedSnapshotter is a running core plus what must be released with it. */
export interface OpenedSnapshotter {
  snapshotter: CoreSnapshotter;
  close(): Promise<void>;
}

/** metadataPath is where a root keeps its SQLite database. */
export function metadataPath(root: string): string {
  return join(root, 'metadata.db');
}

/** openSnapshotter locks `root` (one daemon per root) and opens everything under it. */
export async function openSnapshotter(settings: BackendSettings, log: CoreLogger): Promise<OpenedSnapshotter> {
  mkdirSync(settings.root, { recursive: true, mode: 0o700 });
  chmodSync(settings.root, 0o700);
  const lock: FileLock = lockExclusive(join(settings.root, 'tsblock.lock'));
  let store: MetaStore | undefined;
  try {
    const mod = await loadBackendModule(settings.backend);
    store = new MetaStore(metadataPath(settings.root), { extraMigrations: mod.migrations });
    const backend = mod.create(settings, store, log);
    const snapshotter = await CoreSnapshotter.open({ store, backend, log });
    return {
      snapshotter,
      async close() {
        try {
          await snapshotter.close();
        } finally {
          lock.release();
        }
      },
    };
  } catch (err) {
    store?.close();
    lock.release();
    throw err;
  }
}
