// The daemon under systemd, as systemd runs it: a real `tsblock serve`
// process with NOTIFY_SOCKET pointing at a fake systemd receiver (READY=1
// must come only once the socket answers, STOPPING=1 on SIGTERM), and with
// a listening socket passed in as fd 3 (LISTEN_FDS/LISTEN_PID socket
// activation), which tsblock serves and leaves in place when it stops.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { closeFd, listenNotify, listeningUnixSocketFd, type NotifyReceiver } from '../../helpers/systemd.js';
import { listenFds, resolveFd } from '../../../src/daemon/activation.js';
import { Client } from '../cli/helpers.js';

const REPO = resolve(import.meta.dirname, '../../..');
const VITE_NODE = join(REPO, 'node_modules/.bin/vite-node');
const MAIN = join(REPO, 'src/cli/main.ts');

function answers(path: string): Promise<boolean> {
  return new Promise((r) => {
    const s = connect({ path });
    s.once('connect', () => (s.destroy(), r(true)));
    s.once('error', () => r(false));
  });
}

async function until<T>(fn: () => T | Promise<T>, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function exited(p: ChildProcess): Promise<number | null> {
  return new Promise((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))));
}

describe('socket activation environment (sd_listen_fds)', () => {
  it('takes descriptors only when LISTEN_PID is this process, numbered from 3 with names', () => {
    expect(listenFds({ LISTEN_FDS: '2', LISTEN_PID: '42', LISTEN_FDNAMES: 'a:b' }, 42)).toEqual([{ fd: 3, name: 'a' }, { fd: 4, name: 'b' }]);
    expect(listenFds({ LISTEN_FDS: '1', LISTEN_PID: '41' }, 42)).toEqual([]);
    expect(listenFds({}, 42)).toEqual([]);
    // a handoff: the parent that passed them, named as the predecessor too (run.ts spawnSuccessor)
    expect(listenFds({ LISTEN_FDS: '1', LISTEN_PID: '41', TSBLOCK_HANDOFF_FROM: '41' }, 42, 41)).toEqual([{ fd: 3, name: 'unknown' }]);
    expect(listenFds({ LISTEN_FDS: '1', LISTEN_PID: '41' }, 42, 41)).toEqual([]);
    expect(listenFds({ LISTEN_FDS: '1', LISTEN_PID: '41', TSBLOCK_HANDOFF_FROM: '41' }, 42, 40)).toEqual([]);
  });
  it('resolves fd://, fd://N and fd://NAME, and explains what is missing', () => {
    const two = [{ fd: 3, name: 'blockfile' }, { fd: 4, name: 'dm' }];
    expect(resolveFd('fd://', [{ fd: 3, name: 'x' }])).toBe(3);
    expect(resolveFd('fd://4', two)).toBe(4);
    expect(resolveFd('fd://dm', two)).toBe(4);
    expect(() => resolveFd('fd://', two)).toThrow(/ambiguous/);
    expect(() => resolveFd('fd://zz', two)).toThrow(/passed: 3=blockfile, 4=dm/);
    expect(() => resolveFd('fd://', [])).toThrow(/no sockets were passed/);
  });
});

describe.skipIf(rootReason)(`tsblock serve under systemd${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  let dir: string;
  let child: ChildProcess | undefined;
  let receiver: NotifyReceiver | undefined;
  let stderr: string;

  beforeEach(() => {
    dir = mkdtempSync('/var/tmp/tsblock-systemd-');
    stderr = '';
  });

  afterEach(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    receiver?.close();
    const leaks = leaksUnder(dir);
    rmSync(dir, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  });

  function serve(args: string[], env: NodeJS.ProcessEnv, stdio: (number | 'ignore' | 'pipe')[] = ['ignore', 'ignore', 'pipe']): ChildProcess {
    const p = spawn(VITE_NODE, [MAIN, '--', 'serve', '--root', join(dir, 'root'), '--base-size', '32M', '--metrics-address', '', ...args], {
      cwd: REPO,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio,
    });
    p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    return p;
  }

  it('sends READY=1 only after the socket listens, and STOPPING=1 on SIGTERM', async () => {
    const notify = join(dir, 'notify.sock');
    receiver = listenNotify(notify);
    const sock = join(dir, 'tsblock.sock');
    child = serve(['--socket', sock], { NOTIFY_SOCKET: notify });
    const got: string[] = [];
    let answeredAtReady: boolean | undefined;
    await until(async () => {
      const msgs = receiver!.take();
      got.push(...msgs);
      if (msgs.some((m) => m.split('\n').includes('READY=1'))) answeredAtReady = await answers(sock);
      return answeredAtReady !== undefined || child!.exitCode !== null;
    }, `READY=1 (stderr: ${stderr})`);
    expect(answeredAtReady).toBe(true);
    const ready = got.find((m) => m.includes('READY=1'))!;
    expect(ready).toMatch(/^STATUS=serving tsblock$/m);
    expect(ready).toMatch(new RegExp(`^MAINPID=${child.pid}$`, 'm'));
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0);
    expect(receiver.take()).toContain('STOPPING=1');
    expect(existsSync(sock)).toBe(false);
    expect(stderr).toMatch(/"msg":"signal received; leaving containers' mounts in place"/);
  });

  it('serves a socket passed as fd 3 (LISTEN_FDS/LISTEN_PID) and leaves it in place on exit', async () => {
    const path = join(dir, 'activated.sock');
    const fd = listeningUnixSocketFd(path);
    const notify = join(dir, 'notify.sock');
    receiver = listenNotify(notify);
    try {
      // systemd sets LISTEN_PID to the service's pid after fork; `exec` keeps sh's pid.
      child = spawn('/bin/sh', ['-c', `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=tsblock exec "$0" "$@"`, VITE_NODE, MAIN, '--', 'serve',
        '--root', join(dir, 'root'), '--base-size', '32M', '--metrics-address', '', '--socket', 'fd://tsblock'], {
        cwd: REPO,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, NOTIFY_SOCKET: notify },
        stdio: ['ignore', 'ignore', 'pipe', fd],
      });
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    } finally {
      closeFd(fd); // the child holds its copy, as after systemd's fork
    }
    await until(() => receiver!.take().some((m) => m.includes('READY=1')) || child!.exitCode !== null, `READY=1 (stderr: ${stderr})`);
    expect(child.exitCode).toBeNull();
    const client = new Client(path);
    try {
      const res = await client.prepare('k1');
      expect(res.mounts[0]).toMatchObject({ type: 'ext4', options: expect.arrayContaining(['loop', 'rw']) });
    } finally {
      client.close();
    }
    expect(stderr).toMatch(/"socket":"fd:\/\/tsblock".*"msg":"serving"/);
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0);
    expect(existsSync(path)).toBe(true); // the socket belongs to systemd's .socket unit
  });

  it('refuses fd:// when nothing was passed, naming the fix', async () => {
    child = serve(['--socket', 'fd://'], {});
    expect(await exited(child)).toBe(1);
    expect(stderr).toMatch(/no sockets were passed.*tsblock.socket/);
  });
});
