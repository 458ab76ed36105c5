// notify implements systemd's sd_notify protocol (sd_notify(3)): one
// datagram of "KEY=VALUE\n" lines sent to the unix socket named by
// $NOTIFY_SOCKET ("@name" = abstract namespace). With Type=notify, systemd
// considers tsblock started only after READY=1, i.e. after every socket
// listens, so `Before=containerd.service` really orders containerd after a
// usable snapshotter. Without NOTIFY_SOCKET every call is a no-op.

import { AF_UNIX, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_STREAM, bindUnix, close, listen, recv, sendtoUnix, socket } from '../../ffi/socket.js';
import { isErrno } from '../../ffi/errno.js';

/** sdNotify sends state (e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET; returns false when not under systemd. */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const target = env.NOTIFY_SOCKET;
  if (!target) return false;
  if (!target.startsWith('/') && !target.startsWith('@')) {
    // vsock: addresses (systemd ≥ 254) are not used on a host daemon.
    throw new Error(`NOTIFY_SOCKET ${JSON.stringify(target)} is not a unix socket address`);
  }
  const fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC);
  try {
    sendtoUnix(fd, Buffer.from(state), target);
  } finally {
    close(fd);
  }
  return true;
}

/** NotifyReceiver is a bound datagram socket collecting notifications (tests, a fake systemd). */
export interface NotifyReceiver {
  /** take returns the datagrams received so far. */
  take(): string[];
  close(): void;
}

/** listenNotify binds a unix datagram socket at path, the receiving side of sdNotify. */
export function listenNotify(path: string): NotifyReceiver {
  const fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC);
  try {
    bindUnix(fd, path);
  } catch (err) {
    close(fd);
    throw err;
  }
  let open = true;
  return {
    take(): string[] {
      const out: string[] = [];
      for (;;) {
        try {
          out.push(recv(fd, 4096).toString());
        } catch (err) {
          if (isErrno(err, 'EAGAIN', 'EWOULDBLOCK')) return out;
          throw err;
        }
      }
    },
    close(): void {
      if (open) close(fd);
      open = false;
    },
  };
}

/**
 * listeningUnixSocketFd creates, binds and listens a unix stream socket the
 * way systemd does for a .socket unit, and returns the raw descriptor (for
 * tests of socket activation; the caller closes it with closeFd).
 */
export function listeningUnixSocketFd(path: string): number {
  const fd = socket(AF_UNIX, SOCK_STREAM);
  try {
    bindUnix(fd, path);
    listen(fd);
  } catch (err) {
    close(fd);
    throw err;
  }
  return fd;
}

/** closeFd closes a descriptor made by listeningUnixSocketFd. */
export function closeFd(fd: number): void {
  close(fd);
}
