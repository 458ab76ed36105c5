// activation serves on sockets systemd passes in (socket activation,
// sd_listen_fds(3)): LISTEN_PID must be ours, LISTEN_FDS counts descriptors
// from 3, LISTEN_FDNAMES names them (FileDescriptorName= in the .socket
// unit). A snapshotter configured with `socket = "fd://"` (the only passed
// fd), "fd://3" or "fd://tsblock" (by name) takes its listener from there.
// grpc-js cannot bind a descriptor, so a net.Server accepts on it and hands
// every connection to the gRPC server through a connection injector.

import { fstatSync, readFileSync } from 'node:fs';
import { createServer, type Server as NetServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { InvalidArgumentError } from '../errdefs.js';

/** SD_LISTEN_FDS_START is the first passed descriptor. */
export const SD_LISTEN_FDS_START = 3;

/** PassedFd is one descriptor systemd handed over. */
export interface PassedFd {
  fd: number;
  name: string;
}

/**
 * listenFds reads the passed descriptors from env (empty when none are for
 * this process): LISTEN_PID is this process, or — a handoff (run.ts) — the
 * parent that passed them, named by TSBLOCK_HANDOFF_FROM too.
 */
export function listenFds(env: NodeJS.ProcessEnv = process.env, pid = process.pid, ppid = process.ppid): PassedFd[] {
  if (!env.LISTEN_FDS || !env.LISTEN_PID) return [];
  const byParent = Number(env.LISTEN_PID) === ppid && env.TSBLOCK_HANDOFF_FROM === env.LISTEN_PID;
  if (Number(env.LISTEN_PID) !== pid && !byParent) return [];
  const n = Number(env.LISTEN_FDS);
  if (!Number.isInteger(n) || n < 1) return [];
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  return Array.from({ length: n }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: names[i] || 'unknown' }));
}

/** isFdAddress tells whether a socket setting asks for socket activation. */
export function isFdAddress(socket: string): boolean {
  return socket.startsWith('fd://');
}

/** resolveFd picks the descriptor an fd:// address names among the passed ones. */
export function resolveFd(address: string, passed: PassedFd[]): number {
  const want = address.slice('fd://'.length);
  if (passed.length === 0) {
    throw new InvalidArgumentError(`socket ${address}: no sockets were passed (LISTEN_FDS/LISTEN_PID unset); start tsblock from tsblock.socket or use a socket path`);
  }
  if (want === '') {
    if (passed.length !== 1) throw new InvalidArgumentError(`socket fd:// is ambiguous: ${passed.length} sockets were passed; use fd://<name> or fd://<number>`);
    return passed[0]!.fd;
  }
  const byNumber = /^\d+$/.test(want) ? passed.find((p) => p.fd === Number(want)) : undefined;
  const found = byNumber ?? passed.find((p) => p.name === want);
  if (!found) throw new InvalidArgumentError(`socket ${address}: no passed socket by that number or name (passed: ${passed.map((p) => `${p.fd}=${p.name}`).join(', ')})`);
  return found.fd;
}

/**
 * passedFdFor returns the passed socket bound to path, if any. The path a
 * unix socket was bound to is not in its fstat; /proc/net/unix lists each
 * socket's inode (the one fstat of its descriptor reports) with its path.
 */
export function passedFdFor(path: string, passed: PassedFd[], netUnix = '/proc/net/unix'): number | undefined {
  if (passed.length === 0) return undefined;
  let table: string;
  try {
    table = readFileSync(netUnix, 'utf8');
  } catch {
    return undefined;
  }
  const paths = unixSocketPaths(table);
  for (const p of passed) {
    let ino: number;
    try {
      ino = fstatSync(p.fd).ino;
    } catch {
      continue;
    }
    if (paths.get(ino) === path) return p.fd;
  }
  return undefined;
}

/** unixSocketPaths parses /proc/net/unix into inode → bound path (sockets with a filesystem path only). */
export function unixSocketPaths(table: string): Map<number, string> {
  const out = new Map<number, string>();
  // Num RefCount Protocol Flags Type St Inode Path
  for (const line of table.split('\n').slice(1)) {
    const m = /^\s*\S+:\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\d+)\s+(\/.*)$/.exec(line);
    if (m) out.set(Number(m[1]), m[2]!);
  }
  return out;
}

/** listenOnFd makes server accept gRPC connections from an already-listening descriptor; returns the acceptor to close. */
export async function listenOnFd(server: grpc.Server, fd: number): Promise<NetServer> {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const acceptor = createServer((conn) => injector.injectConnection(conn));
  await new Promise<void>((resolve, reject) => {
    acceptor.once('error', reject);
    acceptor.listen({ fd }, () => {
      acceptor.off('error', reject);
      resolve();
    });
  });
  return acceptor;
}
