// config is tsblock's configuration: types, layered loading, validation and rendering.

export * from './types.js';
export { loadConfig, merge, findInstance, parseHostPort, type LoadOptions, type LoadedConfig } from './load.js';
export { fromEnv, fromFile, fromFlags, ENV_VARS, type FlagValues, type RawLayer, type RawInstance } from './layers.js';
export { defaultConfigText, dumpConfig } from './render.js';
