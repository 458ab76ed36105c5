// run serves a whole configuration from one process: every configured
// snapshotter on its own socket (own root, store and backend), one /metrics
// endpoint, READY=1 to systemd once every store is open, STOPPING=1 on the
// way down. Every socket answers first (calls wait, server/gated.ts), then
// the stores open one by one. A failure to start any instance stops the ones
// already started.

import type { Logger } from 'pino';
import { listenDaemon, type Daemon, type ListeningDaemon } from './serve.js';
import { listenFds } from './activation.js';
import type { MetricsServer } from '../metrics/http.js';
import { errorMessage } from '../errdefs.js';
import { tuneDaemonHeap } from './heap.js';
import type { InstanceConfig, TsblockConfig } from '../config/types.js';

/** RunningConfig is a started configuration. */
export interface RunningConfig {
  daemons: Daemon[];
  metrics?: MetricsServer;
  stop(): Promise<void>;
  readonly stopped: Promise<void>;
}

/** RunOptions override the process environment (tests). */
export interface RunOptions {
  env?: NodeJS.ProcessEnv;
}

/** instanceServeOptions maps a configured instance onto startDaemon's options. */
export function instanceServeOptions(s: InstanceConfig) {
  return {
    name: s.name,
    backend: s.backend,
    root: s.root,
    socket: s.socket,
    socketGid: s.socketGroup,
    baseSize: s.baseSize,
    mountOptions: s.mountOptions,
    poolName: s.pool,
    dataSize: s.dataSize,
    metadataSize: s.metadataSize,
    discardOnRemove: s.discard,
    minFree: s.minFree,
    contentDirs: s.contentDirs,
    store: s.store,
  };
}

/** startConfig starts every instance and the metrics endpoint, then notifies systemd. */
export async function startConfig(config: TsblockConfig, log: Logger, opts: RunOptions = {}): Promise<RunningConfig> {
  const env = opts.env ?? process.env;
  const passedFds = listenFds(env);
  if (opts.env === undefined) {
    // Like sd_listen_fds(unset_environment=1): children must not take them for theirs.
    delete process.env.LISTEN_FDS;
    delete process.env.LISTEN_PID;
    delete process.env.LISTEN_FDNAMES;
  }
  const listening: ListeningDaemon[] = [];
  try {
    for (const s of config.snapshotters) listening.push(await listenDaemon(instanceServeOptions(s), log, { passedFds, instance: s, env }));
  } catch (err) {
    await Promise.all(listening.map((l) => l.abort('tsblock failed to start')));
    throw err;
  }
  // What serving needs beyond answering loads now, after every socket answers.
  const [{ TsblockMetrics }, { serveMetrics }, { sdNotify }] = await Promise.all([
    import('../metrics/metrics.js'),
    import('../metrics/http.js'),
    import('../sys/notify.js'),
  ]);
  const metrics = new TsblockMetrics();
  let metricsServer: MetricsServer | undefined;
  const daemons: Daemon[] = [];
  try {
    if (config.metricsAddress !== '') {
      try {
        metricsServer = await serveMetrics(config.metricsAddress, metrics.registry, () => metrics.scrape());
        log.info({ address: metricsServer.address }, 'metrics listening');
      } catch (err) {
        // The built-in default port may be taken (a second daemon, a test run);
        // only an address the operator asked for is worth refusing to start.
        if (config.metricsAddressExplicit) throw err;
        log.warn({ address: config.metricsAddress, error: errorMessage(err) }, 'metrics endpoint disabled: default address unavailable');
      }
    }
    for (const l of listening) daemons.push(await l.open({ metrics }));
  } catch (err) {
    // open() refused its own waiting calls; refuse the rest's and stop the started ones.
    await Promise.all([...listening.slice(daemons.length).map((l) => l.abort('tsblock failed to start')), ...daemons.map((d) => d.stop())]);
    await metricsServer?.close();
    throw err;
  }
  try {
    sdNotify(`READY=1\nSTATUS=serving ${config.snapshotters.map((s) => s.name).join(', ')}\nMAINPID=${process.pid}`, env);
  } catch (err) {
    log.warn({ error: errorMessage(err) }, 'sd_notify failed');
  }
  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const stop = () =>
    (stopping ??= (async () => {
      try {
        sdNotify('STOPPING=1', env);
      } catch {
        // systemd gone: nothing to tell
      }
      await Promise.all(daemons.map((d) => d.stop()));
      await metricsServer?.close();
      resolveStopped();
    })());
  return { daemons, metrics: metricsServer, stop, stopped };
}

/** runConfig serves until SIGTERM/SIGINT. */
export async function runConfig(config: TsblockConfig, log: Logger): Promise<void> {
  // Handlers go in before start-up: a signal that lands while the socket is
  // just listening (a supervisor that stops us at once) must still get the
  // clean stop that releases an owned pool, not Node's default exit.
  let running: RunningConfig | undefined;
  let requested = false;
  const onSignal = (sig: NodeJS.Signals) => {
    log.info({ signal: sig }, 'signal received; leaving containers\' mounts in place');
    requested = true;
    if (running) void running.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    running = await startConfig(config, log);
    // A process that only serves: keep the heap at the size start-up reached (heap.ts).
    const flags = tuneDaemonHeap();
    if (flags.length > 0) log.debug({ flags }, 'v8 heap flags set');
    if (requested) void running.stop();
    await running.stopped;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
