// registry maps a backend name to its factory, so the daemon, the CLI and the
// tests build backends the same way from one config shape.

import type { Backend } from '../core/backend.js';
import { BlockfileBackend, DEFAULT_BASE_SIZE } from './blockfile/blockfile.js';
import { InvalidArgumentError } from '../errdefs.js';
import { XfsFileStore } from './blockfile/store.js';
import { blockfileLayout, type StoreMode } from './blockfile/layout.js';
export { STORE_MODES, type StoreMode } from './names.js';
import type { CoreLogger } from '../base/log.js';
import type { MetaStore } from '../storage/metastore.js';
import type { Migration } from '../storage/schema.js';
import type { MinFree } from '../core/space.js';

import { BACKENDS, type BackendName } from './names.js';
export { BACKENDS, isBackendName, type BackendName } from './names.js';

/** BackendSettings are the backend-relevant parts of the daemon config. */
export interface BackendSettings {
  backend: BackendName;
  root: string;
  /** baseSize is each snapshot's default virtual size in bytes. */
  baseSize?: number;
  /** mountOptions are appended to every returned mount. */
  mountOptions?: string[];
  /** devmapper: an existing thin-pool to use instead of an owned one. */
  poolName?: string;
  /** devmapper: sizes of the owned pool's sparse data and metadata files. */
  dataSize?: number;
  metadataSize?: number;
  discardOnRemove?: boolean;
  /**
   * store (blockfile): where images live. "auto" (default): directly under
   * the root when its filesystem can reflink, else in an XFS store in a file
   * under the root (a root that already has images directly keeps them);
   * "direct" / "xfs-file" force one.
   */
  store?: StoreMode;
  /** minFree is the space reserve (core/space.ts); unset = DEFAULT_MIN_FREE. */
  minFree?: MinFree;
}

/** BackendFactory is what a backend module provides. */
export interface BackendModule {
  migrations: readonly Migration[];
  create(settings: BackendSettings, store: MetaStore, log: CoreLogger): Backend;
}

const blockfile: BackendModule = {
  migrations: [],
  create: (s, _store, log) => {
    const layout = blockfileLayout(s.root, s.store ?? 'auto');
    if (layout.note) log('warn', layout.note, { root: s.root });
    return new BlockfileBackend({
      dir: layout.dir,
      baseSize: s.baseSize ?? DEFAULT_BASE_SIZE,
      mountOptions: s.mountOptions,
      store: layout.store ? new XfsFileStore({ root: s.root, log }) : undefined,
      log,
    });
  },
};

/** loadBackendModule returns the module for a backend name (devmapper is loaded lazily). */
export async function loadBackendModule(name: string): Promise<BackendModule> {
  if (name === 'blockfile') return blockfile;
  if (name === 'devmapper') {
    // Loaded on demand so a blockfile daemon never opens /dev/mapper/control.
    const path = './devmapper/index.js';
    const mod = (await import(path)) as { devmapperModule: BackendModule };
    return mod.devmapperModule;
  }
  throw new InvalidArgumentError(`unknown backend ${JSON.stringify(name)} (expected one of ${BACKENDS.join(', ')})`);
}
