// index is the devmapper backend's public face: the factory, the migrations
// the MetaStore needs, and the module object src/backends/registry.ts loads.

import type { Backend } from '../../core/backend.js';
import type { MetaStore } from '../../storage/metastore.js';
import type { CoreLogger } from '../../base/log.js';
import type { BackendModule, BackendSettings } from '../registry.js';
import { DevmapperBackend } from './devmapper.js';
import { WARM_SPARES_ENV, withDefaults, type DevmapperConfig } from './config.js';
import { devmapperMigrations } from './devices.js';

export { DevmapperBackend } from './devmapper.js';
export { devmapperMigrations } from './devices.js';
export { withDefaults, validate, poolNameOf, defaultMetadataSize, DEFAULT_WARM_SPARES, WARM_SPARES_ENV, type DevmapperConfig } from './config.js';

/** createDevmapperBackend builds a devmapper backend; the store must include devmapperMigrations. */
export function createDevmapperBackend(config: DevmapperConfig, store: MetaStore, log?: CoreLogger): Backend {
  return new DevmapperBackend(config, store, log);
}

/** devmapperConfigFrom maps the daemon's backend settings onto a DevmapperConfig. */
export function devmapperConfigFrom(s: BackendSettings): DevmapperConfig {
  return withDefaults({
    root: s.root,
    poolName: s.poolName,
    dataSize: s.dataSize,
    metadataSize: s.metadataSize,
    baseSize: s.baseSize,
    discardOnRemove: s.discardOnRemove,
    mountOptions: s.mountOptions,
    warmSpares: process.env[WARM_SPARES_ENV] ? Number(process.env[WARM_SPARES_ENV]) : undefined,
  });
}

/** devmapperModule is what registry.loadBackendModule('devmapper') returns. */
export const devmapperModule: BackendModule = {
  migrations: devmapperMigrations,
  create: (s, store, log) => new DevmapperBackend(devmapperConfigFrom(s), store, log),
};
