// listen binds a grpc-js server to a unix socket the way a proxy snapshotter
// must: never steal the socket of a live instance (two tsblock processes over
// one root would corrupt it), but do replace the stale socket a crash left
// behind, and leave the socket readable only by root (and one group).

import { chmod, chown, lstat, mkdir, mkdtemp, rename, rmdir, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Inflight } from './inflight.js';
import { FailedPreconditionError, UnavailableError } from '../errdefs.js';

/** ListenOptions shape the socket file: mode (default 0660) and an optional owning gid. */
export interface ListenOptions {
  mode?: number;
  gid?: number;
}

/**
 * listenUnix binds server to socketPath. A socket someone answers on is
 * UnavailableError; a dead one is removed; any other file there is
 * FailedPreconditionError (we never delete what we did not create).
 */
export async function listenUnix(server: grpc.Server, socketPath: string, opts: ListenOptions = {}): Promise<void> {
  await clearStaleSocket(socketPath);
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  // Bind inside a private 0700 directory, narrow the socket's mode and group
  // there, then rename it into place: at no moment does the public path name
  // a socket anyone could connect to under a loose umask. A listening unix
  // socket follows its inode, so it keeps accepting under the new name.
  // The private path is at most 9 bytes longer than the public one; when it
  // would not fit in sun_path, bind in place and narrow the mode right after.
  // (A template string, not join(): join(dir, '.') is dir itself, and
  // mkdtemp would make a sibling of dir, on another filesystem when dir is a
  // mount point, where the rename fails with EXDEV.)
  const priv = await mkdtemp(`${dirname(socketPath)}/.`);
  const tmp = join(priv, 's');
  const bind = (at: string) =>
    new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${at}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
  const narrow = async (at: string) => {
    await chmod(at, opts.mode ?? 0o660);
    if (opts.gid !== undefined) await chown(at, -1, opts.gid);
  };
  try {
    if (Buffer.byteLength(tmp) > UNIX_PATH_MAX) {
      await bind(socketPath);
      await narrow(socketPath);
      return;
    }
    await bind(tmp);
    await narrow(tmp);
    await rename(tmp, socketPath);
  } finally {
    await unlink(tmp).catch(() => {});
    await rmdir(priv).catch(() => {});
  }
}

/** UNIX_PATH_MAX is the longest socket path Linux takes (sun_path is 108 bytes with its NUL). */
export const UNIX_PATH_MAX = 107;

/**
 * ensureSocketFree fails like listenUnix would when another server answers on
 * socketPath (or a non-socket file is there), before any storage is opened.
 */
export async function ensureSocketFree(socketPath: string): Promise<void> {
  await clearStaleSocket(socketPath);
}

/** clearStaleSocket removes a socket file nobody listens on; see listenUnix for the other cases. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new FailedPreconditionError(`${socketPath} exists and is not a socket; refusing to replace it`);
  if (await answers(socketPath)) throw new UnavailableError(`another server is listening on ${socketPath}`);
  try {
    await unlink(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** answers tells whether something accepts connections on a unix socket. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ path: socketPath });
    const done = (live: boolean): void => {
      sock.destroy();
      resolve(live);
    };
    sock.once('connect', () => done(true));
    // ECONNREFUSED is the stale case; ENOENT means it vanished meanwhile.
    sock.once('error', () => done(false));
    sock.setTimeout(2000, () => done(true)); // a listener too busy to accept is still alive
  });
}

/**
 * shutdownServer lets in-flight RPCs finish, then cuts the rest after
 * timeoutMs. With an Inflight tracker it stops waiting as soon as no call is
 * running: what is left then are idle connections (containerd keeps one
 * open), and closing them loses nothing.
 */
export function shutdownServer(server: grpc.Server, timeoutMs: number, inflight?: Inflight): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (force: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (force) server.forceShutdown();
      resolve();
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    server.tryShutdown(() => finish(false));
    // the grace lets the last answers' frames leave before sessions are cut
    inflight?.idle().then(() => setTimeout(() => finish(true), 100));
  });
}
