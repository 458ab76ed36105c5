// serve runs the daemon: open the snapshotter for a root (reconciling what a
// crash left), register the gRPC services, listen on the unix socket (or a
// socket systemd passed in), and on SIGTERM/SIGINT stop accepting, finish
// in-flight calls and close cleanly. Containers' mounts are containerd's,
// not ours: shutdown leaves them alone (and never unmounts or detaches).

import * as grpc from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Server as NetServer } from 'node:net';
import type { Logger } from 'pino';
import { openSnapshotter } from './open.js';
import { sweepTempMounts } from './temp-mounts.js';
import { coreLogger } from './log.js';
import { isFdAddress, listenOnFd, resolveFd, type PassedFd } from './activation.js';
import type { BackendSettings } from '../backends/registry.js';
import { loadSnapshotsService, snapshotsHandlers } from '../server/service.js';
import { diffHandlers, loadDiffService } from '../server/diff-service.js';
import { ensureSocketFree, listenUnix, shutdownServer } from '../server/listen.js';
import { Inflight } from '../server/inflight.js';
import { errorMessage } from '../errdefs.js';
import { instrumentHandlers } from '../metrics/instrument.js';
import type { MetricsTarget, TsblockMetrics } from '../metrics/metrics.js';
import type { InstanceConfig } from '../config/types.js';

/** ServeOptions is everything one snapshotter instance needs. */
export interface ServeOptions extends BackendSettings {
  /** socket is a unix socket path or an fd:// address (socket activation). */
  socket: string;
  socketMode?: number;
  socketGid?: number;
  /** name is the instance's name in logs and metrics (default "tsblock"). */
  name?: string;
  /** contentDirs are the containerd content stores the Diff service reads blobs from (default containerd's). */
  contentDirs?: string[];
}

/** DaemonExtras are process-wide things instances share. */
export interface DaemonExtras {
  metrics?: TsblockMetrics;
  /** passedFds are the sockets systemd handed over (see activation.ts). */
  passedFds?: PassedFd[];
  /** instance is the config the metrics collector reads (derived from opts when absent). */
  instance?: InstanceConfig;
}

/** Daemon is a running server; stop() is idempotent. */
export interface Daemon {
  stop(): Promise<void>;
  readonly stopped: Promise<void>;
}

/** startDaemon brings up one snapshotter instance and returns once it listens. */
export async function startDaemon(opts: ServeOptions, log: Logger, extras: DaemonExtras = {}): Promise<Daemon> {
  const started = Date.now();
  const name = opts.name ?? 'tsblock';
  const ilog = log.child({ snapshotter: name });
  const activated = isFdAddress(opts.socket);
  // Refuse a live socket before making a base image or bringing up a pool.
  if (!activated) await ensureSocketFree(opts.socket);
  const opened = await openSnapshotter(opts, coreLogger(ilog));
  // Apply/Diff mount snapshots under <root>/mnt; a crash mid-apply left them mounted.
  const temp = sweepTempMounts(opts.root);
  if (temp.released.length > 0) ilog.warn({ released: temp.released }, 'unmounted temporary mounts a previous run left');
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    // channelz (grpc-js's introspection service) tracks every call and
    // session; tsblock never serves it, and the tracking costs each RPC.
    'grpc.enable_channelz': 0,
  });
  const handlers = snapshotsHandlers(opened.snapshotter, (rec) => ilog.warn(rec, 'rpc failed'));
  const inflight = new Inflight();
  server.addService(loadSnapshotsService(), inflight.track(instrumentHandlers(handlers, name, extras.metrics, ilog)));
  // containerd.services.diff.v1.Diff for containerd ≥ 2 proxy differs (docs/applier.md).
  server.addService(
    loadDiffService(),
    inflight.track(
      instrumentHandlers(diffHandlers({ blobDir: join(opts.root, 'content'), contentDirs: opts.contentDirs, mountParent: temp.dir, spaceShortage: () => opened.snapshotter.spaceShortage() }, (rec) => ilog.warn(rec, 'diff rpc failed')), name, extras.metrics, ilog),
    ),
  );
  let acceptor: NetServer | undefined;
  try {
    if (activated) acceptor = await listenOnFd(server, resolveFd(opts.socket, extras.passedFds ?? []));
    else await listenUnix(server, opts.socket, { mode: opts.socketMode, gid: opts.socketGid });
  } catch (err) {
    server.forceShutdown();
    await opened.close();
    throw err;
  }
  const target: MetricsTarget = {
    instance: extras.instance ?? {
      name, backend: opts.backend, root: opts.root, socket: opts.socket, mountOptions: opts.mountOptions ?? [],
      baseSize: opts.baseSize, pool: opts.poolName, dataSize: opts.dataSize, metadataSize: opts.metadataSize, discard: opts.discardOnRemove ?? false,
    },
    store: opened.snapshotter.store,
    usage: (key) => opened.snapshotter.usage(key),
  };
  extras.metrics?.addTarget(target);
  ilog.info({ socket: opts.socket, root: opts.root, backend: opts.backend, ms: Date.now() - started }, 'serving');

  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const stop = () =>
    (stopping ??= (async () => {
      ilog.info({ socket: opts.socket }, 'shutting down');
      // Stop accepting first (an activated socket stays open in systemd's
      // hands, so containerd's next connect queues until we are back). Only
      // stop listening: net.Server.close's callback waits until every
      // connection it accepted has ended, and containerd keeps its own open,
      // so awaiting it hung the shutdown until SIGKILL. shutdownServer ends
      // the gRPC sessions, and with them those connections.
      acceptor?.close();
      await shutdownServer(server, 10_000, inflight);
      extras.metrics?.removeTarget(target);
      try {
        await opened.close();
      } catch (err) {
        ilog.error({ error: errorMessage(err) }, 'close failed');
      }
      if (!activated) rmSync(opts.socket, { force: true });
      resolveStopped();
    })());
  return { stop, stopped };
}
