// systemd plays the systemd side for the daemon's tests, through the same
// ffi/ sockets the daemon uses: a notify socket that collects sd_notify
// datagrams, and a listening unix socket passed as fd 3 the way a .socket
// unit does. Test-only, so it lives here and not in src/sys/notify.ts.

import { AF_UNIX, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_STREAM, bindUnix, close, listen, recv, socket } from '../../ffi/socket.js';
import { isErrno } from '../../ffi/errno.js';

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
