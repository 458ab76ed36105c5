// run serves a whole configuration from one process: every configured
// snapshotter on its own socket (own root, store and backend), one /metrics
// endpoint, READY=1 to systemd once every store is open, STOPPING=1 on the
// way down. Every socket answers first (calls wait, server/gated.ts), then
// the stores open one by one. A failure to start any instance stops the ones
// already started.

import type { Logger } from 'pino';
import { listenDaemon, type Daemon, type ListeningDaemon } from './serve.js';
import { listenFds, type PassedFd } from './activation.js';
import type { MetricsServer } from '../metrics/http.js';
import { errorMessage } from '../errdefs.js';
import { tuneDaemonHeap } from './heap.js';
import type { InstanceConfig, TsblockConfig } from '../config/types.js';

/**
 * HANDOFF_ENV names the daemon a new one takes over from (a restart without a
 * gap, scripts/launch.mjs and the e2e): the new daemon answers on the shared
 * activated socket first, then sends the old one SIGTERM and waits for its
 * roots' locks. containerd's connection moves when the old daemon ends it,
 * to a process that already answers, whatever Node's start costs.
 */
export const HANDOFF_ENV = 'TSBLOCK_HANDOFF_FROM';
/** HANDOFF_LOCK_WAIT_MS is how long a handoff waits for the predecessor to release a root (its stop takes up to ~10 s). */
export const HANDOFF_LOCK_WAIT_MS = 60_000;

/** HANDOFF_METRICS_WAIT_MS is how long a handoff retries the metrics address the predecessor frees as it exits. */
export const HANDOFF_METRICS_WAIT_MS = 10_000;

/** handoffFrom reads HANDOFF_ENV: the predecessor's pid, or undefined. */
export function handoffFrom(env: NodeJS.ProcessEnv): number | undefined {
  const v = env[HANDOFF_ENV];
  if (v === undefined || v === '') return undefined;
  const pid = Number(v);
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) throw new Error(`${HANDOFF_ENV}=${v}: not the pid of another process`);
  return pid;
}

/** RunningConfig is a started configuration. */
export interface RunningConfig {
  daemons: Daemon[];
  /** passedFds are the activated sockets this process serves (a handoff passes them on). */
  passedFds: PassedFd[];
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
  const handoff = handoffFrom(env);
  if (opts.env === undefined) delete process.env[HANDOFF_ENV];
  const lockWaitMs = handoff !== undefined ? HANDOFF_LOCK_WAIT_MS : 0;
  const listening: ListeningDaemon[] = [];
  try {
    for (const s of config.snapshotters) listening.push(await listenDaemon(instanceServeOptions(s), log, { passedFds, instance: s, env, lockWaitMs }));
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
  if (handoff !== undefined) {
    // Every socket answers here: the predecessor may go. systemd learns the
    // new main pid first (NotifyAccess=all), so its exit is not the service's.
    try {
      sdNotify(`MAINPID=${process.pid}`, env);
    } catch (err) {
      log.warn({ error: errorMessage(err) }, 'sd_notify failed');
    }
    try {
      process.kill(handoff, 'SIGTERM');
      log.info({ predecessor: handoff }, 'handoff: answering; asked the previous daemon to stop (SIGTERM), waiting for its root');
    } catch (err) {
      log.warn({ predecessor: handoff, error: errorMessage(err) }, 'handoff: the previous daemon is gone');
    }
  }
  const metrics = new TsblockMetrics();
  let metricsServer: MetricsServer | undefined;
  const daemons: Daemon[] = [];
  const startMetrics = async () => {
    if (config.metricsAddress === '') return;
    // In a handoff the predecessor holds the address until it has stopped.
    const deadline = Date.now() + (handoff !== undefined ? HANDOFF_METRICS_WAIT_MS : 0);
    for (;;) {
      try {
        metricsServer = await serveMetrics(config.metricsAddress, metrics.registry, () => metrics.scrape());
        log.info({ address: metricsServer.address }, 'metrics listening');
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        // The built-in default port may be taken (a second daemon, a test run);
        // only an address the operator asked for is worth refusing to start.
        if (config.metricsAddressExplicit) throw err;
        log.warn({ address: config.metricsAddress, error: errorMessage(err) }, 'metrics endpoint disabled: default address unavailable');
        return;
      }
    }
  };
  try {
    if (handoff === undefined) await startMetrics();
    for (const l of listening) daemons.push(await l.open({ metrics }));
    if (handoff !== undefined) await startMetrics();
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
  return { daemons, passedFds, metrics: metricsServer, stop, stopped };
}

/**
 * spawnSuccessor starts this same command as the daemon that takes over
 * (SIGHUP: `systemctl reload tsblock`, an upgrade without a gap): it gets the
 * activated sockets as fds 3… with LISTEN_* naming this process as the one
 * that passed them and TSBLOCK_HANDOFF_FROM=<this pid>; once it answers it tells systemd it is the
 * main process and sends this one SIGTERM. If it fails, this one keeps serving.
 */
export async function spawnSuccessor(passedFds: PassedFd[], log: Logger): Promise<void> {
  const contiguous = passedFds.every((p, i) => p.fd === 3 + i);
  if (passedFds.length === 0 || !contiguous) {
    log.warn('SIGHUP: a handoff needs the sockets passed by socket activation (tsblock.socket); ignoring (restart instead)');
    return;
  }
  // LISTEN_PID names this process: the successor accepts the sockets because
  // its parent passed them and TSBLOCK_HANDOFF_FROM is that parent (activation.ts).
  const { execa } = await import('execa'); // not on the path to answering
  const node = process.execPath;
  const child = execa(node, [...process.execArgv, ...process.argv.slice(1)], {
    // fd i of the child is fd i here: the passed sockets are 3… (contiguous, checked above)
    stdio: ['ignore', 'inherit', 'inherit', ...passedFds.map(() => 'inherit' as const)],
    env: { LISTEN_FDS: String(passedFds.length), LISTEN_PID: String(process.pid), LISTEN_FDNAMES: passedFds.map((p) => p.name).join(':'), [HANDOFF_ENV]: String(process.pid) },
    reject: false,
    cleanup: false, // it outlives this process: that is the point
    buffer: false,
  });
  child.unref(); // this process exits when its successor stops it, not when the successor does
  log.info({ successor: child.pid }, 'SIGHUP: handing over to a new daemon');
  void child.then((r) => log.warn({ successor: child.pid, code: r.exitCode, signal: r.signal }, 'handoff: the new daemon exited before taking over; still serving'));
}

/** runConfig serves until SIGTERM/SIGINT; SIGHUP hands over to a new daemon (spawnSuccessor). */
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
  const onHup = () => {
    if (running && !requested) spawnSuccessor(running.passedFds, log).catch((err: unknown) => log.error({ error: errorMessage(err) }, 'SIGHUP: could not start a new daemon; still serving'));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHup);
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
    process.off('SIGHUP', onHup);
  }
}
