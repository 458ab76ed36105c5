// types: the shape of tsblock's configuration once every layer (defaults,
// the TOML file, flags, TSBLOCK_* environment) has been merged and checked.
// Sizes are bytes here; the file and flags accept "10G"-style strings.

import type { BackendName } from '../backends/registry.js';
import type { LogLevel } from '../base/log.js';
import type { MinFree } from '../core/space.js';
import type { StoreMode } from '../backends/blockfile/layout.js';

/** DEFAULT_CONFIG_PATH is where `tsblock` looks for its config file. */
export const DEFAULT_CONFIG_PATH = '/etc/tsblock/config.toml';
/** DEFAULT_INSTANCE is the name of the snapshotter a config without [snapshotters.*] serves. */
export const DEFAULT_INSTANCE = 'tsblock';
/** DEFAULT_ROOT is the default instance's state directory. */
export const DEFAULT_ROOT = '/var/lib/tsblock';
/** DEFAULT_SOCKET is the default instance's socket. */
export const DEFAULT_SOCKET = '/run/tsblock/tsblock.sock';
/** DEFAULT_METRICS_ADDRESS is where /metrics listens unless configured otherwise ("" turns it off). */
export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9465';

/** InstanceConfig is one named snapshotter: its own root, store, backend and socket. */
export interface InstanceConfig {
  name: string;
  backend: BackendName;
  root: string;
  /** socket is a unix socket path, or "fd://" / "fd://N" / "fd://NAME" for systemd socket activation. */
  socket: string;
  socketGroup?: number;
  baseSize?: number;
  mountOptions: string[];
  /** devmapper only: an existing thin-pool; unset = tsblock owns a loop-backed pool under the root. */
  pool?: string;
  dataSize?: number;
  metadataSize?: number;
  discard: boolean;
  /** minFree is the space reserve new snapshots may not eat into ("10G" or "5%"; unset = 1%). */
  minFree?: MinFree;
  /**
   * contentDirs are containerd content stores (each holding blobs/<alg>/<hex>)
   * the Diff service reads layer blobs from; unset = containerd's default
   * (/var/lib/containerd/io.containerd.content.v1.content).
   */
  contentDirs?: string[];
  /** store (blockfile): "auto" (default), "direct" or "xfs-file" (backends/blockfile/layout.ts). */
  store?: StoreMode;
}

/** TsblockConfig is the whole daemon configuration. */
export interface TsblockConfig {
  version: 1;
  logLevel: LogLevel;
  /** metricsAddress is host:port for Prometheus /metrics; "" disables it. */
  metricsAddress: string;
  /** metricsAddressExplicit is false when the address is only the built-in default (a busy port is then not fatal). */
  metricsAddressExplicit: boolean;
  snapshotters: InstanceConfig[];
}

/** defaultRoot is an instance's state directory unless configured. */
export function defaultRoot(name: string): string {
  return name === DEFAULT_INSTANCE ? DEFAULT_ROOT : `/var/lib/tsblock-${name}`;
}

/** defaultSocket is an instance's socket unless configured. */
export function defaultSocket(name: string): string {
  return name === DEFAULT_INSTANCE ? DEFAULT_SOCKET : `/run/tsblock/${name}.sock`;
}
