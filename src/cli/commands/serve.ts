// `tsblock serve`: run the snapshotter daemon on a unix socket.

import { parseArgs } from 'node:util';
import { createLogger, type LogLevel } from '../../daemon/log.js';
import { runDaemon, type ServeOptions } from '../../daemon/serve.js';
import { parseSize } from '../../daemon/size.js';
import { isBackendName, BACKENDS } from '../../backends/registry.js';
import { InvalidArgumentError } from '../../errdefs.js';

/** DEFAULT_ROOT and DEFAULT_SOCKET are where a plain `tsblock serve` keeps its state and listens. */
export const DEFAULT_ROOT = '/var/lib/tsblock';
export const DEFAULT_SOCKET = '/run/tsblock/tsblock.sock';

export const serveUsage = `usage: tsblock serve [options]

  --root DIR            state directory (default ${DEFAULT_ROOT})
  --socket PATH         unix socket to listen on (default ${DEFAULT_SOCKET})
  --backend NAME        ${BACKENDS.join(' | ')} (default blockfile)
  --base-size SIZE      virtual size of each snapshot, e.g. 10G (default 10G)
  --mount-option OPT    extra option for every returned mount (repeatable)
  --pool NAME           devmapper: use this existing thin-pool
  --data-size SIZE      devmapper: owned pool data file size (default 100G, sparse)
  --metadata-size SIZE  devmapper: owned pool metadata file size
  --discard             devmapper: discard blocks of removed snapshots
  --socket-group GID    group owning the socket (mode 0660)
  --log-level LEVEL     debug | info | warn | error (default info)
`;

/** parseServeArgs turns argv into ServeOptions; every problem is reported at once. */
export function parseServeArgs(argv: string[]): ServeOptions & { logLevel: LogLevel } {
  const { values } = parseArgs({
    args: argv,
    options: {
      root: { type: 'string', default: DEFAULT_ROOT },
      socket: { type: 'string', default: DEFAULT_SOCKET },
      backend: { type: 'string', default: 'blockfile' },
      'base-size': { type: 'string' },
      'mount-option': { type: 'string', multiple: true },
      pool: { type: 'string' },
      'data-size': { type: 'string' },
      'metadata-size': { type: 'string' },
      discard: { type: 'boolean', default: false },
      'socket-group': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
    },
    strict: true,
    allowPositionals: false,
  });
  const problems: string[] = [];
  const attempt = <T>(fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (err) {
      problems.push((err as Error).message);
      return undefined;
    }
  };
  if (!isBackendName(values.backend!)) problems.push(`--backend must be one of ${BACKENDS.join(', ')}`);
  const level = values['log-level']!;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) problems.push('--log-level must be debug, info, warn or error');
  const gid = values['socket-group'] === undefined ? undefined : Number(values['socket-group']);
  if (gid !== undefined && !Number.isInteger(gid)) problems.push('--socket-group must be a numeric gid');
  const opts = {
    root: values.root!,
    socket: values.socket!,
    backend: values.backend as ServeOptions['backend'],
    baseSize: values['base-size'] ? attempt(() => parseSize(values['base-size']!, '--base-size')) : undefined,
    mountOptions: values['mount-option'],
    poolName: values.pool,
    dataSize: values['data-size'] ? attempt(() => parseSize(values['data-size']!, '--data-size')) : undefined,
    metadataSize: values['metadata-size'] ? attempt(() => parseSize(values['metadata-size']!, '--metadata-size')) : undefined,
    discardOnRemove: values.discard,
    socketGid: gid,
    logLevel: level as LogLevel,
  };
  if (problems.length > 0) throw new InvalidArgumentError(problems.join('; '));
  return opts;
}

/** serveCommand runs the daemon until a signal stops it. */
export async function serveCommand(argv: string[]): Promise<number> {
  const opts = parseServeArgs(argv);
  const log = createLogger(opts.logLevel);
  try {
    await runDaemon(opts, log);
    return 0;
  } catch (err) {
    log.error({ error: (err as Error).message }, 'tsblock serve failed');
    return 1;
  }
}
