// layers turns each configuration source into the same partial shape, so
// merging is one function: the TOML file (snake_case keys, as containerd and
// the other proxy snapshotters write them), command-line flags and TSBLOCK_*
// environment variables. Nothing here validates values; validate.ts does,
// with every problem reported together.

/** RawInstance is one snapshotter's settings as written (sizes still strings). */
export interface RawInstance {
  backend?: unknown;
  root?: unknown;
  socket?: unknown;
  socket_group?: unknown;
  base_size?: unknown;
  mount_options?: unknown;
  pool?: unknown;
  data_size?: unknown;
  metadata_size?: unknown;
  discard?: unknown;
  min_free?: unknown;
  content_dirs?: unknown;
  store?: unknown;
}

/** RawLayer is one source's contribution; `instance` settings go to the selected snapshotter. */
export interface RawLayer {
  version?: unknown;
  log_level?: unknown;
  metrics_address?: unknown;
  snapshotters?: Record<string, RawInstance>;
  /** instance holds flag/env settings for the one selected snapshotter. */
  instance?: RawInstance;
  /** select names that snapshotter (--snapshotter / TSBLOCK_SNAPSHOTTER). */
  select?: string;
  /** unknown lists keys the source did not recognise (reported by validate). */
  unknown?: string[];
}

/** INSTANCE_KEYS are the keys a [snapshotters.NAME] table may hold. */
export const INSTANCE_KEYS = [
  'backend', 'root', 'socket', 'socket_group', 'base_size', 'mount_options', 'pool', 'data_size', 'metadata_size', 'discard', 'min_free', 'content_dirs', 'store',
] as const;

/** fromFile maps a parsed TOML document onto a RawLayer, noting unknown keys. */
export function fromFile(doc: Record<string, unknown>, source: string): RawLayer {
  const layer: RawLayer = { unknown: [] };
  for (const [k, v] of Object.entries(doc)) {
    if (k === 'version') layer.version = v;
    else if (k === 'log_level') layer.log_level = v;
    else if (k === 'metrics' && isTable(v)) {
      for (const [mk, mv] of Object.entries(v)) {
        if (mk === 'address') layer.metrics_address = mv;
        else layer.unknown!.push(`${source}: unknown key metrics.${mk}`);
      }
    } else if (k === 'snapshotters' && isTable(v)) {
      layer.snapshotters = {};
      for (const [name, inst] of Object.entries(v)) {
        if (!isTable(inst)) {
          layer.unknown!.push(`${source}: snapshotters.${name} must be a table`);
          continue;
        }
        const raw: RawInstance = {};
        for (const [ik, iv] of Object.entries(inst)) {
          if ((INSTANCE_KEYS as readonly string[]).includes(ik)) (raw as Record<string, unknown>)[ik] = iv;
          else layer.unknown!.push(`${source}: unknown key snapshotters.${name}.${ik}`);
        }
        layer.snapshotters[name] = raw;
      }
    } else layer.unknown!.push(`${source}: unknown key ${k}`);
  }
  return layer;
}

/** FlagValues are the config-related flags `serve` and the inspection verbs share. */
export interface FlagValues {
  snapshotter?: string;
  root?: string;
  socket?: string;
  backend?: string;
  'base-size'?: string;
  'mount-option'?: string[];
  pool?: string;
  'data-size'?: string;
  'metadata-size'?: string;
  discard?: boolean;
  'socket-group'?: string;
  'min-free'?: string;
  'content-dir'?: string[];
  store?: string;
  'log-level'?: string;
  'metrics-address'?: string;
}

/** fromFlags maps parsed flags onto a RawLayer. */
export function fromFlags(f: FlagValues): RawLayer {
  const instance: RawInstance = {};
  if (f.root !== undefined) instance.root = f.root;
  if (f.socket !== undefined) instance.socket = f.socket;
  if (f.backend !== undefined) instance.backend = f.backend;
  if (f['base-size'] !== undefined) instance.base_size = f['base-size'];
  if (f['mount-option'] !== undefined) instance.mount_options = f['mount-option'];
  if (f.pool !== undefined) instance.pool = f.pool;
  if (f['data-size'] !== undefined) instance.data_size = f['data-size'];
  if (f['metadata-size'] !== undefined) instance.metadata_size = f['metadata-size'];
  if (f.discard !== undefined) instance.discard = f.discard;
  if (f['socket-group'] !== undefined) instance.socket_group = f['socket-group'];
  if (f['min-free'] !== undefined) instance.min_free = f['min-free'];
  if (f['content-dir'] !== undefined) instance.content_dirs = f['content-dir'];
  if (f.store !== undefined) instance.store = f.store;
  return {
    log_level: f['log-level'],
    metrics_address: f['metrics-address'],
    instance,
    select: f.snapshotter,
  };
}

/** ENV_VARS maps TSBLOCK_* variables to the setting they override (documented in docs/operations.md). */
export const ENV_VARS: Record<string, string> = {
  TSBLOCK_CONFIG: 'config file path',
  TSBLOCK_SNAPSHOTTER: 'which snapshotter instance the settings below apply to',
  TSBLOCK_LOG_LEVEL: 'log_level',
  TSBLOCK_METRICS_ADDRESS: 'metrics.address',
  TSBLOCK_ROOT: 'root',
  TSBLOCK_SOCKET: 'socket',
  TSBLOCK_BACKEND: 'backend',
  TSBLOCK_BASE_SIZE: 'base_size',
  TSBLOCK_MOUNT_OPTIONS: 'mount_options (comma-separated)',
  TSBLOCK_POOL: 'pool',
  TSBLOCK_DATA_SIZE: 'data_size',
  TSBLOCK_METADATA_SIZE: 'metadata_size',
  TSBLOCK_DISCARD: 'discard (true/false)',
  TSBLOCK_SOCKET_GROUP: 'socket_group',
  TSBLOCK_MIN_FREE: 'min_free',
  TSBLOCK_CONTENT_DIRS: 'content_dirs (colon-separated)',
  TSBLOCK_STORE: 'store',
};

/** fromEnv maps TSBLOCK_* variables onto a RawLayer (the top layer). */
export function fromEnv(env: NodeJS.ProcessEnv): RawLayer {
  const instance: RawInstance = {};
  const pick = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const set = (name: string, key: keyof RawInstance, conv: (s: string) => unknown = (s) => s): void => {
    const v = pick(name);
    if (v !== undefined) instance[key] = conv(v);
  };
  set('TSBLOCK_ROOT', 'root');
  set('TSBLOCK_SOCKET', 'socket');
  set('TSBLOCK_BACKEND', 'backend');
  set('TSBLOCK_BASE_SIZE', 'base_size');
  set('TSBLOCK_MOUNT_OPTIONS', 'mount_options', (s) => s.split(',').map((x) => x.trim()).filter(Boolean));
  set('TSBLOCK_POOL', 'pool');
  set('TSBLOCK_DATA_SIZE', 'data_size');
  set('TSBLOCK_METADATA_SIZE', 'metadata_size');
  set('TSBLOCK_DISCARD', 'discard', (s) => (/^(1|true|yes|on)$/i.test(s) ? true : /^(0|false|no|off)$/i.test(s) ? false : s));
  set('TSBLOCK_SOCKET_GROUP', 'socket_group');
  set('TSBLOCK_MIN_FREE', 'min_free');
  set('TSBLOCK_STORE', 'store');
  set('TSBLOCK_CONTENT_DIRS', 'content_dirs', (s) => s.split(':').map((x) => x.trim()).filter(Boolean));
  // An empty TSBLOCK_METRICS_ADDRESS is meaningful: it turns metrics off.
  const metrics = env.TSBLOCK_METRICS_ADDRESS;
  return { log_level: pick('TSBLOCK_LOG_LEVEL'), metrics_address: metrics, instance, select: pick('TSBLOCK_SNAPSHOTTER') };
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}
