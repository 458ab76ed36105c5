// render prints configurations back as TOML: `tsblock config default` (a
// commented starting point for /etc/tsblock/config.toml) and `tsblock config
// dump` (the effective, merged configuration, sizes in bytes).

import { stringify } from 'smol-toml';
import { DEFAULT_METRICS_ADDRESS, DEFAULT_ROOT, DEFAULT_SOCKET, type TsblockConfig } from './types.js';

/** defaultConfigText is the annotated default config file. */
export function defaultConfigText(): string {
  return `# /etc/tsblock/config.toml — tsblock configuration.
# Precedence: built-in defaults < this file < command-line flags < TSBLOCK_* environment.
version = 1

# debug | info | warn | error. Logs are JSON lines on stderr.
log_level = "info"

[metrics]
# Prometheus /metrics (host:port). "" turns it off.
address = "${DEFAULT_METRICS_ADDRESS}"

# One table per snapshotter served by this daemon; each has its own root
# (store, images or pool), backend and socket. containerd names each one in
# [proxy_plugins.<name>] with address = <socket>.
[snapshotters.tsblock]
backend = "blockfile"             # blockfile | devmapper
root = "${DEFAULT_ROOT}"
socket = "${DEFAULT_SOCKET}"      # or "fd://" under systemd socket activation
base_size = "10G"                 # virtual size of each snapshot's filesystem
mount_options = []                # appended to every mount, e.g. ["discard"]
# min_free = "1%"                 # refuse new snapshots below this much free space ("10G", "5%", "0" = off)
# socket_group = 0                # gid owning the socket (mode 0660)
# store = "auto"                 # blockfile: auto | direct | xfs-file (auto: an XFS store in a file when the root cannot reflink)
# content_dirs = ["/var/lib/containerd/io.containerd.content.v1.content"]  # where the Diff service reads blobs (containerd's content store)

# A second instance from the same daemon, on dm-thin:
# [snapshotters.dm]
# backend = "devmapper"
# root = "/var/lib/tsblock-dm"
# socket = "/run/tsblock/dm.sock"
# base_size = "20G"
# pool = "my-thinpool"            # an existing thin-pool; leave unset and tsblock
# data_size = "100G"              # owns a loop-backed pool of this size (sparse)
# discard = true
`;
}

/** dumpConfig renders an effective configuration as TOML. */
export function dumpConfig(c: TsblockConfig): string {
  const snapshotters: Record<string, Record<string, unknown>> = {};
  for (const s of c.snapshotters) {
    const t: Record<string, unknown> = { backend: s.backend, root: s.root, socket: s.socket, mount_options: s.mountOptions };
    if (s.baseSize !== undefined) t.base_size = s.baseSize;
    if (s.socketGroup !== undefined) t.socket_group = s.socketGroup;
    if (s.contentDirs !== undefined) t.content_dirs = s.contentDirs;
    if (s.store !== undefined) t.store = s.store;
    if (s.minFree !== undefined) t.min_free = s.minFree.percent !== undefined ? `${s.minFree.percent}%` : String(s.minFree.bytes ?? 0);
    if (s.backend === 'devmapper') {
      if (s.pool !== undefined) t.pool = s.pool;
      if (s.dataSize !== undefined) t.data_size = s.dataSize;
      if (s.metadataSize !== undefined) t.metadata_size = s.metadataSize;
      t.discard = s.discard;
    }
    snapshotters[s.name] = t;
  }
  return stringify({ version: c.version, log_level: c.logLevel, metrics: { address: c.metricsAddress }, snapshotters }) + '\n';
}
