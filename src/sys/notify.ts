// notify implements systemd's sd_notify protocol (sd_notify(3)): one
// datagram of "KEY=VALUE\n" lines sent to the unix socket named by
// $NOTIFY_SOCKET ("@name" = abstract namespace). With Type=notify, systemd
// considers tsblock started only after READY=1, i.e. after every socket
// listens, so `Before=containerd.service` really orders containerd after a
// usable snapshotter. Without NOTIFY_SOCKET every call is a no-op. The
// receiving side (a fake systemd) is test-only: test/helpers/systemd.ts.

import { AF_UNIX, SOCK_CLOEXEC, SOCK_DGRAM, close, sendtoUnix, socket } from '../../ffi/socket.js';

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
