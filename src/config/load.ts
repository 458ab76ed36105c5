// load merges the configuration layers — built-in defaults < the TOML file <
// command-line flags < TSBLOCK_* environment — and validates the result,
// reporting every problem at once (an operator fixes a file in one pass).

import { parseMinFree, type MinFree } from '../core/space.js';
import { readFileSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { InvalidArgumentError, errorMessage } from '../errdefs.js';
import { BACKENDS, STORE_MODES, isBackendName, type BackendName, type StoreMode } from '../backends/names.js';
import { parseSize } from '../base/size.js';
import type { LogLevel } from '../base/log.js';
import { fromEnv, fromFile, fromFlags, type FlagValues, type RawInstance, type RawLayer } from './layers.js';
import {
  DEFAULT_CONFIG_PATH,
  DEFAULT_INSTANCE,
  DEFAULT_METRICS_ADDRESS,
  defaultRoot,
  defaultSocket,
  type InstanceConfig,
  type TsblockConfig,
} from './types.js';

/** LoadOptions say where each layer comes from; tests pass all of them. */
export interface LoadOptions {
  /** configPath is the file to read; undefined = TSBLOCK_CONFIG or the default path (missing default is fine). */
  configPath?: string;
  flags?: FlagValues;
  env?: NodeJS.ProcessEnv;
  /** fileText replaces reading configPath (tests). */
  fileText?: string;
}

/** LoadedConfig is a valid config plus where it came from. */
export interface LoadedConfig {
  config: TsblockConfig;
  /** file is the config file read, or undefined when none was. */
  file?: string;
}

const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** UNIX_PATH_MAX is sun_path's size minus the terminating NUL. */
const UNIX_PATH_MAX = 107;

/** loadConfig reads and merges every layer; it throws one InvalidArgumentError listing all problems. */
export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  const explicitPath = opts.configPath ?? (env.TSBLOCK_CONFIG || undefined);
  const path = explicitPath ?? DEFAULT_CONFIG_PATH;
  let fileLayer: RawLayer = {};
  let file: string | undefined;
  let text = opts.fileText;
  if (text === undefined) {
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      // Only a file someone named must exist; the default path is optional.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || explicitPath !== undefined) {
        problems.push(`cannot read config ${path}: ${errorMessage(err)}`);
      }
    }
  }
  if (text !== undefined) {
    file = opts.fileText !== undefined ? (explicitPath ?? '<inline>') : path;
    try {
      fileLayer = fromFile(parseToml(text) as Record<string, unknown>, file);
    } catch (err) {
      problems.push(`${file}: ${errorMessage(err).split('\n')[0]}`);
    }
  }
  const config = merge([fileLayer, fromFlags(opts.flags ?? {}), fromEnv(env)], problems);
  if (problems.length > 0) throw new InvalidArgumentError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return { config, file };
}

/** merge applies layers in order (later wins) and resolves them into a checked TsblockConfig. */
export function merge(layers: RawLayer[], problems: string[] = []): TsblockConfig {
  const [base, ...overrides] = layers;
  for (const l of layers) problems.push(...(l.unknown ?? []));
  const named: Record<string, RawInstance> = base?.snapshotters && Object.keys(base.snapshotters).length > 0
    ? structuredClone(base.snapshotters)
    : {};
  const fromFileOnly = Object.keys(named).length > 0;
  let version: unknown = base?.version ?? 1;
  let logLevel: unknown = base?.log_level ?? 'info';
  let metrics: unknown = base?.metrics_address;
  let select: string | undefined;
  for (const l of overrides) {
    if (l.version !== undefined) version = l.version;
    if (l.log_level !== undefined) logLevel = l.log_level;
    if (l.metrics_address !== undefined) metrics = l.metrics_address;
    if (l.select !== undefined) select = l.select;
  }
  const overrideSettings = overrides.filter((l) => l.instance && Object.keys(l.instance).length > 0);
  if (!fromFileOnly) named[select ?? DEFAULT_INSTANCE] = {};
  if (overrideSettings.length > 0) {
    const names = Object.keys(named);
    const target = select ?? (names.length === 1 ? names[0] : undefined);
    if (target === undefined) {
      problems.push(`flags/environment settings apply to one snapshotter; choose it with --snapshotter or TSBLOCK_SNAPSHOTTER (configured: ${names.join(', ')})`);
    } else if (!named[target]) {
      problems.push(`no snapshotter named ${JSON.stringify(target)} in the config (configured: ${names.join(', ')})`);
    } else {
      for (const l of overrideSettings) Object.assign(named[target]!, l.instance);
    }
  } else if (select !== undefined && !named[select]) {
    problems.push(`no snapshotter named ${JSON.stringify(select)} in the config (configured: ${Object.keys(named).join(', ')})`);
  }

  if (version !== 1) problems.push(`version must be 1, got ${JSON.stringify(version)}`);
  if (typeof logLevel !== 'string' || !LOG_LEVELS.includes(logLevel as LogLevel)) {
    problems.push(`log_level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  const metricsAddress = metrics === undefined ? DEFAULT_METRICS_ADDRESS : metrics;
  if (typeof metricsAddress !== 'string' || (metricsAddress !== '' && !parseHostPort(metricsAddress))) {
    problems.push(`metrics address must be "host:port" (e.g. 127.0.0.1:9465) or "" to disable, got ${JSON.stringify(metricsAddress)}`);
  }
  const snapshotters = Object.entries(named).map(([name, raw]) => resolveInstance(name, raw, problems));
  checkDistinct(snapshotters, problems);
  return {
    version: 1,
    logLevel: (typeof logLevel === 'string' ? logLevel : 'info') as LogLevel,
    metricsAddress: typeof metricsAddress === 'string' ? metricsAddress : '',
    metricsAddressExplicit: metrics !== undefined,
    snapshotters,
  };
}

function resolveInstance(name: string, raw: RawInstance, problems: string[]): InstanceConfig {
  const where = `snapshotters.${name}`;
  if (!NAME_RE.test(name)) problems.push(`${where}: name must be 1-63 of [A-Za-z0-9._-] starting with a letter or digit`);
  const str = (key: keyof RawInstance): string | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      problems.push(`${where}.${key} must be a string, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v;
  };
  const size = (key: keyof RawInstance): number | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    try {
      return parseSize(v as string | number, `${where}.${key}`);
    } catch (err) {
      problems.push(errorMessage(err));
      return undefined;
    }
  };
  const backend = str('backend') ?? 'blockfile';
  if (!isBackendName(backend)) problems.push(`${where}.backend must be one of ${BACKENDS.join(', ')}, got ${JSON.stringify(backend)}`);
  const root = str('root') ?? defaultRoot(name);
  if (!isAbsolute(root)) problems.push(`${where}.root must be an absolute path, got ${JSON.stringify(root)}`);
  const socket = str('socket') ?? defaultSocket(name);
  if (socket.startsWith('fd://')) {
    if (!/^fd:\/\/([0-9]+|[A-Za-z0-9._-]+)?$/.test(socket)) problems.push(`${where}.socket ${JSON.stringify(socket)}: use fd://, fd://<number> or fd://<name>`);
  } else if (!isAbsolute(socket)) {
    problems.push(`${where}.socket must be an absolute path or fd://…, got ${JSON.stringify(socket)}`);
  } else if (Buffer.byteLength(socket) > UNIX_PATH_MAX) {
    problems.push(`${where}.socket is longer than ${UNIX_PATH_MAX} bytes (unix socket limit)`);
  }
  let socketGroup: number | undefined;
  if (raw.socket_group !== undefined) {
    const g = Number(raw.socket_group);
    if (!Number.isInteger(g) || g < 0) problems.push(`${where}.socket_group must be a numeric gid, got ${JSON.stringify(raw.socket_group)}`);
    else socketGroup = g;
  }
  const baseSize = size('base_size');
  if (baseSize !== undefined && (baseSize < 16 * 1024 ** 2 || baseSize % 4096 !== 0)) {
    problems.push(`${where}.base_size must be at least 16M and a multiple of 4096`);
  }
  let mountOptions: string[] = [];
  if (raw.mount_options !== undefined) {
    if (!Array.isArray(raw.mount_options) || raw.mount_options.some((o) => typeof o !== 'string' || o === '' || o.includes(','))) {
      problems.push(`${where}.mount_options must be a list of single options (no commas), got ${JSON.stringify(raw.mount_options)}`);
    } else mountOptions = raw.mount_options as string[];
  }
  const pool = str('pool') || undefined;
  const dataSize = size('data_size');
  const metadataSize = size('metadata_size');
  if (raw.discard !== undefined && typeof raw.discard !== 'boolean') problems.push(`${where}.discard must be true or false`);
  const discard = raw.discard === true;
  if (backend === 'blockfile') {
    for (const k of ['pool', 'data_size', 'metadata_size', 'discard'] as const) {
      if (raw[k] !== undefined && raw[k] !== '' && raw[k] !== false) problems.push(`${where}.${k} only applies to the devmapper backend`);
    }
  }
  if (backend === 'devmapper' && pool !== undefined && (dataSize !== undefined || metadataSize !== undefined)) {
    problems.push(`${where}: data_size/metadata_size size an owned pool; they cannot be combined with pool = ${JSON.stringify(pool)}`);
  }
  if (pool !== undefined && !/^[A-Za-z0-9._+-]{1,100}$/.test(pool)) problems.push(`${where}.pool must be 1-100 of [A-Za-z0-9._+-]`);
  let minFree: MinFree | undefined;
  if (raw.min_free !== undefined) {
    try {
      minFree = parseMinFree(raw.min_free as string | number, `${where}.min_free`);
    } catch (err) {
      problems.push(errorMessage(err));
    }
  }
  let contentDirs: string[] | undefined;
  if (raw.content_dirs !== undefined) {
    if (!Array.isArray(raw.content_dirs) || raw.content_dirs.some((d) => typeof d !== 'string' || !isAbsolute(d))) {
      problems.push(`${where}.content_dirs must be a list of absolute paths (containerd content stores), got ${JSON.stringify(raw.content_dirs)}`);
    } else contentDirs = raw.content_dirs as string[];
  }
  let store: StoreMode | undefined;
  if (raw.store !== undefined) {
    if (backend !== 'blockfile') problems.push(`${where}.store only applies to the blockfile backend`);
    else if (typeof raw.store !== 'string' || !(STORE_MODES as readonly string[]).includes(raw.store)) {
      problems.push(`${where}.store must be one of ${STORE_MODES.join(', ')}, got ${JSON.stringify(raw.store)}`);
    } else store = raw.store as StoreMode;
  }
  return { name, backend: backend as BackendName, root, socket, socketGroup, baseSize, mountOptions, pool, dataSize, metadataSize, discard, minFree, contentDirs, store };
}

function checkDistinct(list: InstanceConfig[], problems: string[]): void {
  for (let i = 0; i < list.length; i++) {
    for (let j = i + 1; j < list.length; j++) {
      const a = list[i]!;
      const b = list[j]!;
      if (a.socket === b.socket) problems.push(`snapshotters ${a.name} and ${b.name} use the same socket ${a.socket}`);
      if (within(a.root, b.root) || within(b.root, a.root)) {
        problems.push(`snapshotters ${a.name} and ${b.name} need separate roots (${a.root}, ${b.root}): each root holds one store and is locked by one instance`);
      }
    }
  }
  if (list.length > 1 && list.some((s) => s.socket === 'fd://')) {
    problems.push('with several snapshotters, name each activated socket (fd://<FileDescriptorName> or fd://<number>), not plain fd://');
  }
}

function within(parent: string, child: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/** parseHostPort splits "host:port" / "[v6]:port" / ":port"; undefined when malformed. */
export function parseHostPort(addr: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** findInstance returns the named snapshotter, the only one, or throws naming the choices. */
export function findInstance(config: TsblockConfig, name?: string): InstanceConfig {
  if (name !== undefined) {
    const found = config.snapshotters.find((s) => s.name === name);
    if (!found) throw new InvalidArgumentError(`no snapshotter named ${JSON.stringify(name)} (configured: ${config.snapshotters.map((s) => s.name).join(', ')})`);
    return found;
  }
  if (config.snapshotters.length === 1) return config.snapshotters[0]!;
  const dflt = config.snapshotters.find((s) => s.name === DEFAULT_INSTANCE);
  if (dflt) return dflt;
  throw new InvalidArgumentError(`several snapshotters are configured (${config.snapshotters.map((s) => s.name).join(', ')}); choose one with --snapshotter NAME`);
}
