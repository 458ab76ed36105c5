// socket binds the few BSD socket calls Node lacks for unix *datagram*
// sockets (node:dgram is udp-only): systemd's sd_notify protocol sends one
// datagram to $NOTIFY_SOCKET. Only src/sys/notify.ts imports this.

import { DataType, buf, i32, syscall, u64 } from './call.js';
import { ErrnoError } from './errno.js';

/** AF_UNIX is the unix-domain address family. */
export const AF_UNIX = 1;
/** SOCK_DGRAM is a datagram socket (sd_notify). */
export const SOCK_DGRAM = 2;
/** SOCK_NONBLOCK and SOCK_CLOEXEC are socket() type flags (Linux values). */
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
/** MSG_DONTWAIT makes one recv/send non-blocking. */
export const MSG_DONTWAIT = 0x40;
/** MSG_NOSIGNAL keeps a send to a closed peer from raising SIGPIPE. */
export const MSG_NOSIGNAL = 0x4000;
/** SUN_PATH_SIZE is sizeof(sockaddr_un.sun_path) on Linux. */
export const SUN_PATH_SIZE = 108;

/** sockaddrUn encodes struct sockaddr_un; a leading "@" means the abstract namespace (NUL byte). Returns the buffer and its socklen. */
export function sockaddrUn(path: string): { addr: Buffer; len: number } {
  const p = Buffer.from(path.startsWith('@') ? `\0${path.slice(1)}` : path);
  if (p.length >= SUN_PATH_SIZE) throw new ErrnoError('sockaddr_un', 36 /* ENAMETOOLONG */, path);
  const addr = Buffer.alloc(2 + SUN_PATH_SIZE);
  addr.writeUInt16LE(AF_UNIX, 0);
  p.copy(addr, 2);
  // Abstract names are length-delimited; filesystem paths include their NUL.
  const len = 2 + p.length + (path.startsWith('@') ? 0 : 1);
  return { addr, len };
}

/** socket creates a socket and returns its fd. */
export function socket(domain: number, type: number, protocol = 0): number {
  return syscall('socket', DataType.I32, [i32(domain), i32(type), i32(protocol)]);
}

/** bind binds fd to a unix address. */
export function bindUnix(fd: number, path: string): void {
  const { addr, len } = sockaddrUn(path);
  syscall('bind', DataType.I32, [i32(fd), buf(addr), i32(len)]);
}

/** sendtoUnix sends one datagram to a unix address; returns bytes sent. */
export function sendtoUnix(fd: number, data: Buffer, path: string, flags = MSG_NOSIGNAL): number {
  const { addr, len } = sockaddrUn(path);
  return syscall('sendto', DataType.I64, [i32(fd), buf(data), u64(data.length), i32(flags), buf(addr), i32(len)]);
}

/** recv reads one datagram into a buffer of `max` bytes; returns the bytes read (throws EAGAIN when none with MSG_DONTWAIT). */
export function recv(fd: number, max: number, flags = MSG_DONTWAIT): Buffer {
  const b = Buffer.alloc(max);
  const n = syscall('recv', DataType.I64, [i32(fd), buf(b), u64(max), i32(flags)]);
  return b.subarray(0, n);
}

/** close closes a descriptor this module opened. */
export function close(fd: number): void {
  syscall('close', DataType.I32, [i32(fd)]);
}

/** SOCK_STREAM is a stream socket (what a .socket unit passes). */
export const SOCK_STREAM = 1;

/** listen marks a bound stream socket as accepting (what systemd does before passing it). */
export function listen(fd: number, backlog = 128): void {
  syscall('listen', DataType.I32, [i32(fd), i32(backlog)]);
}
