#!/usr/bin/env node
// start-answer: how long a fresh `tsblock serve` takes from exec to the first
// answer containerd's proxy client waits for (the server's HTTP/2 SETTINGS
// frame), and to "serving" (store open). containerd 1.6 reconnects the moment
// a daemon goes away and gives the handshake ~1 s (docs/reliability.md).
//
//   sudo node test/bench/start-answer.mjs [--runs 12] [--root DIR] [--node-arg ARG]…
//
// Each run does what a stop + start under tsblock.socket does: this process
// holds the listening socket; a client connects into its backlog and sends the
// HTTP/2 preface and an empty SETTINGS frame (as grpc-go does) before the
// daemon exists; then `sh -c 'LISTEN_PID=$$ … exec node dist/cli.js serve
// --socket fd://tsblock …'` is spawned and the time to the client's first
// bytes is taken. Then SIGTERM, wait for the exit, next run. The root is
// made by a first, unmeasured start. Prints each run and the medians
// (also of a bare `node -e ''` start and exit, for comparison) and the load.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, bindUnix, close, listen, socket } = await import(path.join(REPO, 'dist/ffi/socket.js'));

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '12' },
    root: { type: 'string' },
    'node-arg': { type: 'string', multiple: true, default: [] },
    keep: { type: 'boolean', default: false },
    // --cli FILE (repeatable): the cli.js of each tree to compare, measured in turn (default dist/cli.js)
    cli: { type: 'string', multiple: true },
    // --script FILE [--script-arg A]: time FILE (it answers on fd 3) instead of tsblock serve, to answer only
    script: { type: 'string' },
    'script-arg': { type: 'string', multiple: true, default: [] },
  },
});
const runs = Number(values.runs);
const work = fs.mkdtempSync('/var/tmp/tsblock-start-answer-');
const root = values.root ?? path.join(work, 'root');
const sock = path.join(work, 'tsblock.sock');
const log = path.join(work, 'tsblock.log');
const cfg = path.join(work, 'config.toml');
fs.writeFileSync(cfg, '');

const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
bindUnix(fd, sock);
listen(fd, 128);

const PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (ns) => Number(ns) / 1e6;

function readFrom(from) {
  const b = fs.readFileSync(log);
  return b.subarray(from).toString('utf8');
}

async function once(measure, cli) {
  // the client is in the backlog and has sent its preface before the daemon exists
  const client = net.connect({ path: sock });
  await new Promise((r, j) => (client.once('connect', r), client.once('error', j)));
  client.write(PREFACE);
  let answered;
  const gotAnswer = new Promise((r) => client.once('data', () => r((answered = process.hrtime.bigint()))));
  const from = fs.existsSync(log) ? fs.statSync(log).size : 0;
  const out = fs.openSync(log, 'a');
  const t0 = process.hrtime.bigint();
  const args = values.script
    ? [values.script, ...values['script-arg']]
    : [cli, 'serve', '--config', cfg, '--root', root, '--socket', 'fd://tsblock', '--base-size', '512M', '--metrics-address', ''];
  const proc = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=tsblock exec "$0" "$@"', process.execPath, ...values['node-arg'], ...args], {
    stdio: ['ignore', out, out, fd],
    env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/root' },
  });
  fs.closeSync(out);
  const exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  let serving;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (values.script ? answered !== undefined : /"msg":"serving"/.test(readFrom(from))) {
      serving = process.hrtime.bigint();
      break;
    }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`tsblock did not serve: ${readFrom(from).slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await gotAnswer;
  client.destroy();
  proc.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`tsblock exited ${code}`);
  if (!measure) return undefined;
  return { answer: ms(answered - t0), serving: ms(serving - t0), load: os.loadavg()[0] };
}

function bareNode() {
  const t0 = process.hrtime.bigint();
  spawnSync(process.execPath, ['-e', '']);
  return ms(process.hrtime.bigint() - t0);
}

const clis = values.cli ?? [path.join(REPO, 'dist/cli.js')];
try {
  if (!values.script) await once(false, clis[0]); // makes the root (and its store)
  const rows = clis.map(() => []);
  const bare = [];
  for (let i = 0; i < runs; i++) {
    bare.push(bareNode());
    // the trees take turns, so that a change of load hits them alike
    for (const [j, cli] of clis.entries()) {
      const r = await once(true, cli);
      rows[j].push(r);
      console.log(`run ${i + 1}${clis.length > 1 ? ` ${cli}` : ''}: answer ${r.answer.toFixed(0)} ms, serving ${r.serving.toFixed(0)} ms (load ${r.load.toFixed(2)})`);
    }
  }
  for (const [j, cli] of clis.entries()) {
    const a = rows[j].map((r) => r.answer);
    console.log(
      `${values.script ?? cli}: median of ${runs}: answer ${median(a).toFixed(0)} ms (min ${Math.min(...a).toFixed(0)}, max ${Math.max(...a).toFixed(0)}), serving ${median(rows[j].map((r) => r.serving)).toFixed(0)} ms`,
    );
  }
  console.log(`bare node -e '': median ${median(bare).toFixed(0)} ms; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; node ${process.version}${values['node-arg'].length ? `; node args ${values['node-arg'].join(' ')}` : ''}`);
} finally {
  close(fd);
  if (!values.keep) fs.rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
}
