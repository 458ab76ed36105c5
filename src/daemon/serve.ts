// serve runs the daemon: open the snapshotter for a root (reconciling what a
// crash left), register the gRPC services, listen on the unix socket, and on
// SIGTERM/SIGINT stop accepting, finish in-flight calls and close cleanly.
// Containers' mounts are containerd's, not ours: shutdown leaves them alone.

import * as grpc from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
import type { Logger } from 'pino';
import { openSnapshotter } from './open.js';
import { coreLogger } from './log.js';
import type { BackendSettings } from '../backends/registry.js';
import { loadSnapshotsService, snapshotsHandlers } from '../server/service.js';
import { listenUnix, shutdownServer } from '../server/listen.js';
import { errorMessage } from '../errdefs.js';

/** ServeOptions is everything `tsblock serve` needs. */
export interface ServeOptions extends BackendSettings {
  socket: string;
  socketMode?: number;
  socketGid?: number;
}

/** Daemon is a running server; stop() is idempotent. */
export interface Daemon {
  stop(): Promise<void>;
  readonly stopped: Promise<void>;
}

/** startDaemon brings up one snapshotter instance and returns once it listens. */
export async function startDaemon(opts: ServeOptions, log: Logger): Promise<Daemon> {
  const started = Date.now();
  const opened = await openSnapshotter(opts, coreLogger(log));
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService(loadSnapshotsService(), snapshotsHandlers(opened.snapshotter, (rec) => log.warn(rec, 'rpc failed')));
  try {
    await listenUnix(server, opts.socket, { mode: opts.socketMode, gid: opts.socketGid });
  } catch (err) {
    server.forceShutdown();
    await opened.close();
    throw err;
  }
  log.info({ socket: opts.socket, root: opts.root, backend: opts.backend, ms: Date.now() - started }, 'serving');

  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const stop = () =>
    (stopping ??= (async () => {
      log.info({ socket: opts.socket }, 'shutting down');
      await shutdownServer(server, 10_000);
      try {
        await opened.close();
      } catch (err) {
        log.error({ error: errorMessage(err) }, 'close failed');
      }
      rmSync(opts.socket, { force: true });
      resolveStopped();
    })());
  return { stop, stopped };
}

/** runDaemon starts the daemon and stops it on SIGTERM/SIGINT. */
export async function runDaemon(opts: ServeOptions, log: Logger): Promise<void> {
  const daemon = await startDaemon(opts, log);
  const onSignal = (sig: NodeJS.Signals) => {
    log.info({ signal: sig }, 'signal received');
    void daemon.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await daemon.stopped;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
}
