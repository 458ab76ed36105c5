// args parses a verb's command line and loads the layered configuration it
// names: what every verb shares, and all `tsblock serve` needs before its
// socket answers (so it loads no gRPC client, lock or FFI code).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig, type FlagValues, type TsblockConfig } from '../config/index.js';

/** Io is where a verb writes; tests pass buffers, main passes the process streams. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
  /** tty selects human tables over tab-separated text. */
  tty: boolean;
  env: NodeJS.ProcessEnv;
}

/** stdio is the process's own Io. */
export const stdio: Io = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
  tty: process.stdout.isTTY === true,
  env: process.env,
};

/** CONFIG_OPTIONS are the flags that select and override configuration, accepted by every verb. */
export const CONFIG_OPTIONS = {
  config: { type: 'string' },
  snapshotter: { type: 'string' },
  root: { type: 'string' },
  socket: { type: 'string' },
  backend: { type: 'string' },
  'base-size': { type: 'string' },
  'mount-option': { type: 'string', multiple: true },
  pool: { type: 'string' },
  'data-size': { type: 'string' },
  'metadata-size': { type: 'string' },
  discard: { type: 'boolean' },
  'socket-group': { type: 'string' },
  'min-free': { type: 'string' },
  'content-dir': { type: 'string', multiple: true },
  store: { type: 'string' },
  'log-level': { type: 'string' },
  'metrics-address': { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

/** CONFIG_HELP documents CONFIG_OPTIONS for the inspection verbs. */
export const CONFIG_HELP = `  --config FILE         config file (default /etc/tsblock/config.toml, or $TSBLOCK_CONFIG)
  --snapshotter NAME    which configured snapshotter (default: the only one, or "tsblock")
  --root DIR            override that snapshotter's root
  --socket PATH         override its socket
  --backend NAME        override its backend (blockfile | devmapper)
  --json                machine-readable output
`;

/** Parsed is a verb's parsed argv plus the loaded configuration. */
export interface Parsed<V> {
  values: V;
  positionals: string[];
  config: TsblockConfig;
}

/** parseVerb parses argv with the config options plus a verb's own, then loads the layered config. */
export function parseVerb<O extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  own: O,
  io: Io,
): Parsed<Record<string, any>> {
  const parsed = parseArgs({ args: argv, options: { ...CONFIG_OPTIONS, ...own }, strict: true, allowPositionals: true } as ParseArgsConfig);
  const values = parsed.values as Record<string, any>;
  const positionals = parsed.positionals;
  const { config } = loadConfig({ configPath: values.config as string | undefined, flags: values as FlagValues, env: io.env });
  return { values, positionals, config };
}
