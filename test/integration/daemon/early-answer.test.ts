// A restarting daemon answers containerd's HTTP/2 handshake before its store
// is open (containerd's proxy client gives a connection ~1 s to see it, then
// fails calls for up to 3 s of reconnect backoff). A real `tsblock serve`
// with a slow start (TSBLOCK_TEST_START_DELAY_MS) on a socket passed as
// fd 3 — given by its path, as tsblock.socket's ListenStream= is the
// default socket — and a real grpc client that connected while no daemon ran
// (its connect queued in the socket's backlog, like containerd's reconnect):
// the handshake completes while the store is still closed, and the call made
// then waits and succeeds once the store opens. A start-up that fails after
// the socket answers refuses the waiting call with UNAVAILABLE and the cause.
// SIGHUP (systemctl reload) hands over to a new daemon on the same sockets.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { closeFd, listenNotify, listeningUnixSocketFd } from '../../helpers/systemd.js';
import { lockExclusive } from '../../../src/sys/lock.js';
import { Client } from '../cli/helpers.js';

const REPO = resolve(import.meta.dirname, '../../..');
const VITE_NODE = join(REPO, 'node_modules/.bin/vite-node');
const MAIN = join(REPO, 'src/cli/main.ts');
const DIST = join(REPO, 'dist/cli.js');
const DELAY_MS = 3000;

async function until<T>(fn: () => T | Promise<T>, what: string, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function exited(p: ChildProcess): Promise<number | null> {
  return new Promise((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))));
}

function ready(c: grpc.Client, ms: number): Promise<void> {
  return new Promise((res, rej) => c.waitForReady(Date.now() + ms, (e) => (e ? rej(e) : res())));
}

describe.skipIf(!!rootReason)(`answering before the store is open${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  let dir = '';
  let child: ChildProcess | undefined;
  let stderr = '';
  beforeEach(() => {
    dir = mkdtempSync('/var/tmp/tsblock-restart-early-');
    stderr = '';
  });
  afterEach(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    const leaks = leaksUnder(dir);
    rmSync(dir, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  });

  // built: a successor re-runs this process's own command line, which under vite-node names a .ts file Node cannot run
  const serve = (socketArg: string, env: NodeJS.ProcessEnv, fd?: number, built = false, extra: string[] = []) => {
    const cmd = built ? [process.execPath, DIST] : [VITE_NODE, MAIN, '--'];
    const p = spawn('/bin/sh', ['-c', `${fd === undefined ? '' : 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=tsblock '}exec "$0" "$@"`, ...cmd, 'serve',
      '--root', join(dir, 'root'), '--base-size', '32M', '--metrics-address', '', '--socket', socketArg, ...extra], {
      cwd: REPO,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: fd === undefined ? ['ignore', 'ignore', 'pipe'] : ['ignore', 'ignore', 'pipe', fd],
    });
    p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    return p;
  };
  const logged = (msg: string) => stderr.includes(`"msg":"${msg}"`);

  it(`a client that connected while no daemon ran gets its handshake before the store opens (start delayed ${DELAY_MS} ms), and its call then succeeds`, async () => {
    const path = join(dir, 'tsblock.sock');
    const fd = listeningUnixSocketFd(path);
    // The client dials before the daemon exists: its connect waits in the backlog.
    const client = new Client(path);
    try {
      const early = ready(client.raw, 60_000);
      await new Promise((r) => setTimeout(r, 200));
      try {
        // a path, not fd://: the passed socket bound to that path is taken
        child = serve(path, { TSBLOCK_TEST_START_DELAY_MS: String(DELAY_MS) }, fd);
      } finally {
        closeFd(fd);
      }
      await until(() => logged('answering; opening the store') || child!.exitCode !== null, `"answering" (stderr: ${stderr})`);
      await early;
      const servingAtHandshake = logged('serving');
      expect(servingAtHandshake, 'the handshake waited for the store').toBe(false);
      // the call is made while the store is still closed: it waits on the gate
      const call = client.prepare('k1');
      expect(logged('serving')).toBe(false);
      const res = await call;
      expect(logged('serving')).toBe(true);
      expect(res.mounts[0]).toMatchObject({ type: 'ext4', options: expect.arrayContaining(['loop', 'rw']) });
      expect(stderr).toMatch(new RegExp(`"socket":"${path}","fd":3,.*"msg":"answering; opening the store"`));
      expect(stderr).toMatch(/TSBLOCK_TEST_START_DELAY_MS: delaying start-up \(tests only\)/);
      expect(stderr).not.toMatch(/"msg":"rpc failed"/);
    } finally {
      client.close();
    }
    child!.kill('SIGTERM');
    expect(await exited(child!)).toBe(0);
  }, 120_000);

  it('a start-up that fails after the socket answers refuses the waiting call with UNAVAILABLE and the cause, and exits 1', async () => {
    const path = join(dir, 'tsblock.sock');
    // Another holder of the root's lock makes the store's opening fail.
    rmSync(join(dir, 'root'), { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'root'), { recursive: true, mode: 0o700 });
    const lock = lockExclusive(join(dir, 'root', 'tsblock.lock'));
    try {
      child = serve(path, { TSBLOCK_TEST_START_DELAY_MS: '1500' });
      await until(() => logged('answering; opening the store') || child!.exitCode !== null, `"answering" (stderr: ${stderr})`);
      const client = new Client(path);
      try {
        const err = (await client.stat('k1').catch((e: unknown) => e)) as grpc.ServiceError;
        expect(err).toBeInstanceOf(Error);
        expect(err.code).toBe(14); // UNAVAILABLE
        expect(err.details).toMatch(/^tsblock failed to start: .*tsblock\.lock/);
      } finally {
        client.close();
      }
      expect(await exited(child)).toBe(1);
      expect(stderr).toMatch(/"msg":"tsblock serve failed"/);
    } finally {
      lock.release();
    }
  }, 120_000);

  it.skipIf(!existsSync(DIST))('SIGHUP hands over to a new daemon on the activated socket: it tells systemd its pid, stops the old one (exit 0), and serves the same store', async () => {
    const path = join(dir, 'tsblock.sock');
    const fd = listeningUnixSocketFd(path);
    const receiver = listenNotify(join(dir, 'notify.sock'));
    const port = await freePort();
    let successor = 0;
    try {
      try {
        // an explicit metrics address: the successor must take it over once the old daemon frees it
        child = serve('fd://tsblock', { NOTIFY_SOCKET: join(dir, 'notify.sock') }, fd, true, ['--metrics-address', `127.0.0.1:${port}`]);
      } finally {
        closeFd(fd);
      }
      const msgs: string[] = [];
      await until(() => (msgs.push(...receiver.take()), msgs.some((m) => m.includes('READY=1')) || child!.exitCode !== null), `READY=1 (stderr: ${stderr})`);
      const client = new Client(path);
      try {
        await client.prepare('k1');
        const old = child!;
        old.kill('SIGHUP');
        const timeout = new Promise<string>((r) => setTimeout(() => r(`the old daemon still runs after 60 s (stderr: ${stderr.slice(-1500)})`), 60_000).unref());
        expect(await Promise.race([exited(old), timeout]), 'the old daemon exits 0 on its successor\'s SIGTERM').toBe(0);
        msgs.push(...receiver.take());
        const mainpid = msgs.map((m) => /^MAINPID=(\d+)$/m.exec(m)?.[1]).filter(Boolean).map(Number).find((p) => p !== old.pid);
        expect(mainpid, `a MAINPID= other than ${old.pid} in ${JSON.stringify(msgs)}`).toBeGreaterThan(0);
        successor = mainpid!;
        // the first call after the handoff, on the same client
        expect(await client.stat('k1')).toMatchObject({ info: { name: 'k1' } });
        expect(stderr).toMatch(/"msg":"SIGHUP: handing over to a new daemon"/);
        await until(() => stderr.split('"msg":"metrics listening"').length === 3 || child!.exitCode !== null, `the successor's metrics (stderr: ${stderr.slice(-1500)})`);
        const scrape = await fetch(`http://127.0.0.1:${port}/metrics`);
        expect(scrape.status).toBe(200);
        expect(await scrape.text()).toMatch(/^tsblock_snapshots\{snapshotter="tsblock",kind="active"\} 1$/m);
        expect(stderr).toMatch(/"msg":"handoff: answering; asked the previous daemon to stop \(SIGTERM\), waiting for its root"/);
      } finally {
        client.close();
      }
    } finally {
      receiver.close();
      if (successor) {
        process.kill(successor, 'SIGTERM');
        await until(() => !alive(successor), `successor ${successor} to exit`);
      }
    }
  }, 120_000);
});

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => res(port));
    });
  });
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
