#!/usr/bin/env node
// launch.mjs: socket activation without systemd, for scripts/up.sh on a
// machine whose PID 1 is not systemd (containers, WSL, CI runners). It does
// what tsblock.socket + tsblock.service do: it holds the listening unix
// socket and starts `tsblock serve` on it (fd 3, LISTEN_FDS=1, LISTEN_PID,
// LISTEN_FDNAMES=tsblock), so the socket outlives every daemon restart and
// containerd's connects wait in its backlog for the next daemon.
//
//   node scripts/launch.mjs SOCKET -- node dist/cli.js serve --socket SOCKET …
//
// SIGHUP restarts the daemon by handoff (an upgrade after a rebuild): a new
// daemon starts with TSBLOCK_HANDOFF_FROM=<old pid>, answers on the socket,
// then stops the old one and takes its root over, so containerd's connection
// moves to a process that already answers (if the new one fails, the old one
// keeps serving); a daemon that exits by itself is started again after 100 ms,
// unless it did so 5 times within 10 s (systemd's default start limit), and
// then the launcher exits 1. SIGTERM/SIGINT stop the daemon, close and remove
// the socket, and exit with the daemon's status.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, bindUnix, close, listen, socket } = await import(path.join(repo, 'dist/ffi/socket.js'));

const [sockPath, sep, ...cmd] = process.argv.slice(2);
if (!sockPath || sep !== '--' || cmd.length === 0) {
  console.error('usage: launch.mjs SOCKET -- COMMAND [ARG…]');
  process.exit(2);
}
const say = (msg, extra = {}) => console.error(JSON.stringify({ time: new Date().toISOString(), svc: 'tsblock-launch', pid: process.pid, ...extra, msg }));

function answers(p) {
  return new Promise((resolve) => {
    const s = net.connect({ path: p });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

// A socket file nobody answers on is a killed launcher's: replace it. A live one is not ours.
if (fs.existsSync(sockPath)) {
  if (!fs.lstatSync(sockPath).isSocket()) { say(`${sockPath} exists and is not a socket; refusing to replace it`); process.exit(1); }
  if (await answers(sockPath)) { say(`another server is listening on ${sockPath}`); process.exit(1); }
  fs.rmSync(sockPath, { force: true });
}
fs.mkdirSync(path.dirname(sockPath), { recursive: true, mode: 0o755 });
// CLOEXEC: only the daemon gets it (spawn's dup2 onto fd 3 clears the flag there).
const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
const umask = process.umask(0o117); // the socket file is born 0660, as tsblock.socket's SocketMode=
try {
  bindUnix(fd, sockPath);
  listen(fd, 4096);
} finally {
  process.umask(umask);
}
say('holding the socket', { socket: sockPath });

let child;
let stopping = false;
const starts = [];
const running = (p) => p && p.exitCode === null && p.signalCode === null;

function start(predecessor) {
  starts.push(Date.now());
  const env = { ...process.env, ...(predecessor ? { TSBLOCK_HANDOFF_FROM: String(predecessor.pid) } : {}) };
  // LISTEN_PID must be the daemon's pid: `exec` keeps sh's.
  child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=tsblock exec "$0" "$@"', ...cmd], { stdio: ['ignore', 'inherit', 'inherit', fd], env });
  const me = child;
  say('started tsblock', { child: me.pid, ...(predecessor ? { handoffFrom: predecessor.pid } : {}) });
  me.once('exit', (code, signal) => {
    say('tsblock exited', { child: me.pid, code, signal });
    if (me !== child) return; // a predecessor the handoff stopped
    if (stopping) return finish(code ?? 1);
    if (running(predecessor)) {
      say('handoff failed; the previous daemon keeps serving', { child: predecessor.pid });
      child = predecessor;
      return;
    }
    const recent = starts.filter((t) => Date.now() - t < 10_000);
    if (recent.length >= 5) { say('tsblock exited 5 times within 10 s; giving up'); return finish(1); }
    setTimeout(() => { if (!stopping) start(); }, 100);
  });
}

function finish(code) {
  close(fd);
  fs.rmSync(sockPath, { force: true });
  say('released the socket', { socket: sockPath });
  process.exit(code);
}

process.on('SIGHUP', () => {
  if (stopping || !running(child)) return;
  say('restarting tsblock by handoff (SIGHUP)', { child: child.pid });
  start(child);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    if (!running(child)) return finish(0);
    child.kill('SIGTERM');
    // like TimeoutStopSec=30
    setTimeout(() => child.kill('SIGKILL'), 30_000).unref();
  });
}
start();
