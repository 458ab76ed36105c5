// `tsblock serve`: run the snapshotter daemon — every configured snapshotter
// on its own socket — with flags layered over the config file.

import { createLogger } from '../../daemon/log.js';
import { runConfig } from '../../daemon/run.js';
import { InvalidArgumentError, errorMessage } from '../../errdefs.js';
import { BACKENDS } from '../../backends/names.js';
import { DEFAULT_ROOT, DEFAULT_SOCKET, DEFAULT_METRICS_ADDRESS } from '../../config/types.js';
import { parseVerb, stdio, type Io } from '../args.js';

export { DEFAULT_ROOT, DEFAULT_SOCKET };

/** serveUsage is `tsblock help serve`. */
export const serveUsage = `usage: tsblock serve [options]

Serves every snapshotter in the config file (default /etc/tsblock/config.toml;
none = one blockfile snapshotter "tsblock"). Flags override the file and
apply to one snapshotter (--snapshotter NAME when several are configured);
TSBLOCK_* environment variables override flags (see docs/operations.md).

  --config FILE         config file (or $TSBLOCK_CONFIG)
  --snapshotter NAME    the snapshotter the flags below apply to
  --root DIR            state directory (default ${DEFAULT_ROOT})
  --socket PATH|fd://   unix socket to listen on (default ${DEFAULT_SOCKET});
                        fd://, fd://N or fd://NAME take a systemd-passed socket
  --backend NAME        ${BACKENDS.join(' | ')} (default blockfile)
  --base-size SIZE      virtual size of each snapshot, e.g. 10G (default 10G)
  --mount-option OPT    extra option for every returned mount (repeatable)
  --pool NAME           devmapper: use this existing thin-pool
  --data-size SIZE      devmapper: owned pool data file size (default 100G, sparse)
  --metadata-size SIZE  devmapper: owned pool metadata file size
  --discard             devmapper: discard blocks of removed snapshots
  --socket-group GID    group owning the socket (mode 0660)
  --min-free SIZE|PCT   refuse new active snapshots when the storage has less
                        free (e.g. 10G or 5%; default 1%, 0 = off)
  --content-dir DIR     containerd content store the Diff service reads layer blobs
                        from (repeatable; default /var/lib/containerd/io.containerd.content.v1.content)
  --store MODE          blockfile: where images live: auto (default: directly when
                        the root can reflink, else an XFS store in <root>/store.xfs),
                        direct, or xfs-file
  --log-level LEVEL     debug | info | warn | error (default info)
  --metrics-address A   Prometheus /metrics host:port (default ${DEFAULT_METRICS_ADDRESS}; "" = off)
`;

/** serveCommand runs the daemon until SIGTERM/SIGINT stops it. */
export async function serveCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, {}, io);
  if (p.positionals.length > 0) throw new InvalidArgumentError(`serve takes no arguments, got ${p.positionals.join(' ')}`);
  const log = createLogger(p.config.logLevel);
  try {
    await runConfig(p.config, log);
    return 0;
  } catch (err) {
    log.error({ error: errorMessage(err) }, 'tsblock serve failed');
    return 1;
  }
}
