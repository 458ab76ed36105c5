// openSnapshotter builds the whole stack for one root: lock, metadata store,
// backend and core, with start-up reconciliation done before it returns.

import { mkdirSync, chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { CoreLogger } from '../base/log.js';
import { CoreSnapshotter } from '../core/snapshotter.js';
import { MetaStore, metadataPath } from '../storage/metastore.js';
import { loadBackendModule, type BackendSettings } from '../backends/registry.js';
import { lockExclusive, type FileLock } from '../sys/lock.js';
import { DEFAULT_MIN_FREE, describeMinFree } from '../core/space.js';
import { UnavailableError } from '../errdefs.js';

/** OpenedSnapshotter is a running core plus what must be released with it. */
export interface OpenedSnapshotter {
  snapshotter: CoreSnapshotter;
  close(): Promise<void>;
}

/** OpenOptions: lockWaitMs waits that long for a root another daemon holds (a handoff: it is stopping); default 0. */
export interface OpenOptions {
  lockWaitMs?: number;
}

/** openSnapshotter locks `root` (one daemon per root) and opens everything under it. */
export async function openSnapshotter(settings: BackendSettings, log: CoreLogger, opts: OpenOptions = {}): Promise<OpenedSnapshotter> {
  mkdirSync(settings.root, { recursive: true, mode: 0o700 });
  chmodSync(settings.root, 0o700);
  const lock: FileLock = await lockWaiting(join(settings.root, 'tsblock.lock'), opts.lockWaitMs ?? 0);
  let store: MetaStore | undefined;
  try {
    const mod = await loadBackendModule(settings.backend);
    restrictMetadata(metadataPath(settings.root));
    store = new MetaStore(metadataPath(settings.root), { extraMigrations: mod.migrations });
    const backend = mod.create(settings, store, log);
    const minFree = settings.minFree ?? DEFAULT_MIN_FREE;
    log('info', 'low-space guard', { minFree: describeMinFree(minFree), root: settings.root });
    const snapshotter = await CoreSnapshotter.open({ store, backend, log, minFree });
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

/** lockWaiting takes the lock, retrying every 20 ms for up to waitMs while another process holds it. */
async function lockWaiting(path: string, waitMs: number): Promise<FileLock> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return lockExclusive(path);
    } catch (err) {
      if (!(err instanceof UnavailableError) || Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/**
 * restrictMetadata makes the database owner-only before SQLite opens it:
 * SQLite gives the -wal and -shm files the database file's mode, and keys and
 * labels are nobody else's business (the root is 0700 too; this is depth).
 */
function restrictMetadata(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  for (const p of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(p)) chmodSync(p, 0o600);
}
