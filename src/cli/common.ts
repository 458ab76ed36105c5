// common holds what the operator verbs share: the config flags every verb
// accepts (so `tsblock ls` finds the same root and socket as `tsblock
// serve`), output (aligned tables on a terminal, JSON with --json), and how
// to reach a live daemon or, when none runs, the root under its lock.

import { connect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { findInstance, type InstanceConfig } from '../config/index.js';
import { snapshotsClientConstructor } from '../proto/load.js';
import { lockExclusive } from '../sys/lock.js';
import { join } from 'node:path';
import { UnavailableError } from '../errdefs.js';
import { formatSize } from '../base/size.js';

export { CONFIG_HELP, CONFIG_OPTIONS, parseVerb, stdio, type Io, type Parsed } from './args.js';
import type { Io, Parsed } from './args.js';

/** selectInstances returns the --snapshotter one, or every configured one. */
export function selectInstances(p: Parsed<Record<string, any>>): InstanceConfig[] {
  return p.values.snapshotter !== undefined || p.config.snapshotters.length === 1
    ? [findInstance(p.config, p.values.snapshotter)]
    : p.config.snapshotters;
}

/** table renders rows as aligned columns (TTY) or tab-separated lines (pipes). */
export function table(header: string[], rows: string[][], tty: boolean): string {
  if (!tty) return [header, ...rows].map((r) => r.join('\t')).join('\n') + '\n';
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** json writes a value as pretty JSON. */
export function printJson(io: Io, v: unknown): void {
  io.out(JSON.stringify(v, null, 2) + '\n');
}

/** socketAnswers tells whether something accepts connections on a unix socket path. */
export function socketAnswers(path: string, timeoutMs = 2000): Promise<boolean> {
  if (path.startsWith('fd://')) return Promise.resolve(false);
  return new Promise((resolve) => {
    const sock = connect({ path });
    const done = (v: boolean): void => {
      sock.destroy();
      resolve(v);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(timeoutMs, () => done(false));
  });
}

/**
 * daemonHoldsRoot tells whether a daemon owns the root, by trying its lock:
 * the flock is the truth (a socket path can be stale or activated). The
 * probe releases at once; callers that then open the root take it again and
 * handle losing that race as "a daemon started meanwhile".
 */
export function daemonHoldsRoot(root: string): boolean {
  try {
    lockExclusive(join(root, 'tsblock.lock')).release();
    return false;
  } catch (err) {
    if (err instanceof UnavailableError) return true;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** SnapshotsClient is the generated gRPC client (untyped methods). */
export type SnapshotsClient = grpc.Client & Record<string, any>;

/** dial connects to an instance's socket. */
export function dial(socketPath: string): SnapshotsClient {
  const Ctor = snapshotsClientConstructor();
  return new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure()) as SnapshotsClient;
}

/** unaryCall calls one unary method with a deadline and returns the response. */
export function unaryCall<T>(client: SnapshotsClient, method: string, req: object, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

/** daemonSocket is the socket to reach a live daemon, or an explanation of why it cannot be reached. */
export function daemonSocket(inst: InstanceConfig): string {
  if (inst.socket.startsWith('fd://')) {
    throw new Error(`snapshotter ${inst.name} listens on a systemd-activated socket (${inst.socket}); pass its path with --socket (see tsblock.socket)`);
  }
  return inst.socket;
}

/**
 * refineActiveUsage asks a live daemon for the exact usage of active
 * snapshots on devmapper (the store only knows committed ones; measuring a
 * thin device needs it active, which only the daemon knows). Best effort:
 * without a daemon the store's figure stays.
 */
export async function refineActiveUsage(inst: InstanceConfig, entries: { key: string; kind: string; usage: number }[]): Promise<void> {
  if (inst.backend !== 'devmapper' || !entries.some((e) => e.kind === 'active') || inst.socket.startsWith('fd://')) return;
  if (!daemonHoldsRoot(inst.root)) return;
  const client = dial(inst.socket);
  try {
    for (const e of entries) {
      if (e.kind !== 'active') continue;
      try {
        const u = await unaryCall<{ size: number }>(client, 'Usage', { snapshotter: inst.name, key: e.key }, 10_000);
        e.usage = Number(u.size);
      } catch {
        // removed meanwhile, or the daemon is busy: keep the store's figure
      }
    }
  } finally {
    client.close();
  }
}

/** human renders a byte count for tables ("-" when unknown). */
export function human(n: number | undefined): string {
  return n === undefined ? '-' : formatSize(n);
}
