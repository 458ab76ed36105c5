// The shared snapshotter suite against the devmapper backend: an owned
// loop-backed thin pool per case; close() tears every device and the pool
// down (loops auto-clear), so reopening the same root is a simulated reboot.
import { describe } from 'vitest';
import { join } from 'node:path';
import { MetaStore } from '../../src/storage/metastore.js';
import { CoreSnapshotter } from '../../src/core/snapshotter.js';
import { DevmapperBackend, devmapperMigrations, withDefaults } from '../../src/backends/devmapper/index.js';
import { listDevices } from '../../src/sys/dm.js';
import { snapshotterSuite, type Opened } from '../suites/snapshotter-suite.js';
import { leaksUnder } from '../helpers/leaks.js';
import { HAS_DM, SKIP_REASON } from './helpers.js';

const MiB = 1024 ** 2;

async function open(root: string): Promise<Opened> {
  const store = new MetaStore(join(root, 'metadata.db'), { extraMigrations: devmapperMigrations });
  const backend = new DevmapperBackend(withDefaults({ root, dataSize: 1024 * MiB, baseSize: 128 * MiB }), store);
  try {
    const sn = await CoreSnapshotter.open({ store, backend });
    return {
      sn,
      close: async () => {
        try {
          await sn.close();
        } finally {
          await backend.shutdown();
        }
      },
    };
  } catch (err) {
    await backend.shutdown().catch(() => {});
    store.close();
    throw err;
  }
}

// leaks adds dm devices of the case's pool to the mounts/loops check.
function leaks(root: string): string[] {
  const pool = withDefaults({ root }).ownedPoolName!;
  return [...leaksUnder(root), ...listDevices().filter((d) => d.name.startsWith(pool)).map((d) => `dm ${d.name}`)];
}

describe.skipIf(!HAS_DM)(`devmapper${HAS_DM ? '' : ` (skipped: ${SKIP_REASON})`}`, () => {
  snapshotterSuite('suite', { open, leaks, tmpParent: () => '/var/tmp', chainDepth: 12 });
});
