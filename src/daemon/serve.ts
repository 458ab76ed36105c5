// serve runs the daemon: listen on the unix socket (or a socket systemd
// passed in) and answer connections at once, then open the snapshotter for a
// root (reconciling what a crash left) and serve the calls that waited for it
// (server/gated.ts); on SIGTERM/SIGINT stop accepting, finish in-flight
// calls and close cleanly. Containers' mounts are containerd's, not ours:
// shutdown leaves them alone (and never unmounts or detaches).
//
// Only what answering needs is imported statically (gRPC, the services'
// method tables, the socket code): the protos (protobufjs, proto-loader and
// the parsing of the .proto files), the backends, the store (SQLite), FFI and
// metrics load after the socket answers, so a restart answers containerd's
// handshake in the time Node takes to start plus grpc-js
// (docs/reliability.md).

import * as grpc from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Server as NetServer } from 'node:net';
import type { Logger } from 'pino';
import { isFdAddress, listenOnFd, passedFdFor, resolveFd, type PassedFd } from './activation.js';
import type { BackendSettings } from '../backends/registry.js';
import { DIFF_METHODS, SNAPSHOTS_METHODS } from '../proto/methods.js';
import { ensureSocketFree, listenUnix, shutdownServer } from '../server/listen.js';
import { Inflight } from '../server/inflight.js';
import { Gate, LazyService } from '../server/gated.js';
import { errorMessage } from '../errdefs.js';
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
  /** env is where TSBLOCK_TEST_START_DELAY_MS is read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** lockWaitMs waits for the root's lock that long (a handoff: the predecessor is stopping; see run.ts). */
  lockWaitMs?: number;
}

/** Daemon is a running server; stop() is idempotent. */
export interface Daemon {
  stop(): Promise<void>;
  readonly stopped: Promise<void>;
}

/** ListeningDaemon answers on its socket; calls wait until open() has opened the store. */
export interface ListeningDaemon {
  /** open opens the store and serves the waiting calls; on failure they get UNAVAILABLE and the socket closes. */
  open(extras?: Pick<DaemonExtras, 'metrics'>): Promise<Daemon>;
  /** abort refuses the waiting calls (UNAVAILABLE, "<reason>") and closes the socket, for a start that will not open. */
  abort(reason: string): Promise<void>;
}

/** TEST_START_DELAY_ENV delays opening the store after the socket answers (tests of a slow start; unset = none). */
export const TEST_START_DELAY_ENV = 'TSBLOCK_TEST_START_DELAY_MS';

/** Served are the handlers the gate opens onto. */
interface Served {
  snapshots: grpc.UntypedServiceImplementation;
  diff: grpc.UntypedServiceImplementation;
}

/** startDaemon brings up one snapshotter instance and returns once it serves. */
export async function startDaemon(opts: ServeOptions, log: Logger, extras: DaemonExtras = {}): Promise<Daemon> {
  const l = await listenDaemon(opts, log, extras);
  return l.open({ metrics: extras.metrics });
}

/** listenDaemon binds (or takes) the instance's socket and returns once it answers connections. */
export async function listenDaemon(opts: ServeOptions, log: Logger, extras: DaemonExtras = {}): Promise<ListeningDaemon> {
  const started = Date.now();
  const name = opts.name ?? 'tsblock';
  const ilog = log.child({ snapshotter: name });
  // fd:// names a passed socket; a path may be one systemd passed too (tsblock.socket).
  const fd = isFdAddress(opts.socket) ? resolveFd(opts.socket, extras.passedFds ?? []) : passedFdFor(opts.socket, extras.passedFds ?? []);
  const activated = fd !== undefined;
  // Refuse a live socket before making a base image or bringing up a pool.
  if (!activated) await ensureSocketFree(opts.socket);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    // channelz (grpc-js's introspection service) tracks every call and
    // session; tsblock never serves it, and the tracking costs each RPC.
    'grpc.enable_channelz': 0,
  });
  const gate = new Gate<Served>();
  const inflight = new Inflight();
  // Registered from their method tables; open() loads the protos that decode the held requests.
  const snapshotsSvc = new LazyService(SNAPSHOTS_METHODS);
  const diffSvc = new LazyService(DIFF_METHODS);
  server.addService(snapshotsSvc.definition, inflight.track(gate.handlers(snapshotsSvc.definition, (s) => s.snapshots, snapshotsSvc)));
  // containerd.services.diff.v1.Diff for containerd ≥ 2 proxy differs (docs/applier.md).
  server.addService(diffSvc.definition, inflight.track(gate.handlers(diffSvc.definition, (s) => s.diff, diffSvc)));
  let acceptor: NetServer | undefined;
  try {
    if (activated) acceptor = await listenOnFd(server, fd);
    else await listenUnix(server, opts.socket, { mode: opts.socketMode, gid: opts.socketGid });
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
  ilog.info({ socket: opts.socket, ...(activated && !isFdAddress(opts.socket) ? { fd } : {}), ms: Date.now() - started }, 'answering; opening the store');

  let closing: Promise<void> | undefined;
  /** close stops accepting, lets running calls finish and ends the sessions (see stop below). */
  const close = () =>
    (closing ??= (async () => {
      // Stop accepting first (an activated socket stays open in systemd's
      // hands, so containerd's next connect queues until we are back). Only
      // stop listening: net.Server.close's callback waits until every
      // connection it accepted has ended, and containerd keeps its own open,
      // so awaiting it hung the shutdown until SIGKILL. shutdownServer ends
      // the gRPC sessions, and with them those connections.
      acceptor?.close();
      await shutdownServer(server, 10_000, inflight);
      if (!activated) rmSync(opts.socket, { force: true });
    })());
  const abort = async (reason: string, cause?: unknown) => {
    gate.fail(reason, cause);
    await close();
  };

  const open = async (more: Pick<DaemonExtras, 'metrics'> = {}): Promise<Daemon> => {
    let opened: import('./open.js').OpenedSnapshotter | undefined;
    let served: Served;
    let target: MetricsTarget;
    try {
      const delay = Number((extras.env ?? process.env)[TEST_START_DELAY_ENV] ?? 0);
      if (delay > 0) {
        ilog.warn({ ms: delay }, `${TEST_START_DELAY_ENV}: delaying start-up (tests only)`);
        await new Promise((r) => setTimeout(r, delay));
      }
      const [{ loadSnapshotsService, loadDiffService }, { openSnapshotter }, { sweepTempMounts }, { coreLogger }, { snapshotsHandlers }, { diffHandlers }, { instrumentHandlers }] = await Promise.all([
        import('../proto/load.js'),
        import('./open.js'),
        import('./temp-mounts.js'),
        import('./log.js'),
        import('../server/service.js'),
        import('../server/diff-service.js'),
        import('../metrics/instrument.js'),
      ]);
      if (closing) throw new Error('stopped before the store was open');
      snapshotsSvc.load(loadSnapshotsService());
      diffSvc.load(loadDiffService());
      opened = await openSnapshotter(opts, coreLogger(ilog), { lockWaitMs: extras.lockWaitMs });
      const sn = opened.snapshotter;
      // Apply/Diff mount snapshots under <root>/mnt; a crash mid-apply left them mounted.
      const temp = sweepTempMounts(opts.root);
      if (temp.released.length > 0) ilog.warn({ released: temp.released }, 'unmounted temporary mounts a previous run left');
      served = {
        snapshots: instrumentHandlers(snapshotsHandlers(sn, (rec) => ilog.warn(rec, 'rpc failed')), name, more.metrics, ilog),
        diff: instrumentHandlers(
          diffHandlers({ blobDir: join(opts.root, 'content'), contentDirs: opts.contentDirs, mountParent: temp.dir, spaceShortage: () => sn.spaceShortage() }, (rec) => ilog.warn(rec, 'diff rpc failed')),
          name,
          more.metrics,
          ilog,
        ),
      };
      target = {
        instance: extras.instance ?? {
          name, backend: opts.backend, root: opts.root, socket: opts.socket, mountOptions: opts.mountOptions ?? [],
          baseSize: opts.baseSize, pool: opts.poolName, dataSize: opts.dataSize, metadataSize: opts.metadataSize, discard: opts.discardOnRemove ?? false,
        },
        store: sn.store,
        usage: (key) => sn.usage(key),
      };
    } catch (err) {
      await abort('tsblock failed to start', err);
      await opened?.close().catch((e: unknown) => ilog.error({ error: errorMessage(e) }, 'close failed'));
      throw err;
    }
    more.metrics?.addTarget(target);
    gate.open(served);
    ilog.info({ socket: opts.socket, root: opts.root, backend: opts.backend, ms: Date.now() - started }, 'serving');

    let stopping: Promise<void> | undefined;
    let resolveStopped!: () => void;
    const stopped = new Promise<void>((r) => (resolveStopped = r));
    const stop = () =>
      (stopping ??= (async () => {
        ilog.info({ socket: opts.socket }, 'shutting down');
        await close();
        more.metrics?.removeTarget(target);
        try {
          await opened!.close();
        } catch (err) {
          ilog.error({ error: errorMessage(err) }, 'close failed');
        }
        resolveStopped();
      })());
    return { stop, stopped };
  };
  return { open, abort: (reason) => abort(reason) };
}
