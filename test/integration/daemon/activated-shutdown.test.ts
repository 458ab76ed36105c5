// A socket-activated daemon (socket passed as fd 3) must stop on SIGTERM
// while a client still holds its connection open, as containerd always
// does. It used to wait for net.Server.close's callback, which only fires
// once every accepted connection has ended: the daemon never exited and
// systemd (or the e2e suite's tsblock restart) had to SIGKILL it.

import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { closeFd, listeningUnixSocketFd } from '../../helpers/systemd.js';
import { Client } from '../cli/helpers.js';

const REPO = resolve(import.meta.dirname, '../../..');
const VITE_NODE = join(REPO, 'node_modules/.bin/vite-node');
const MAIN = join(REPO, 'src/cli/main.ts');

describe.skipIf(!!rootReason)(`socket-activated shutdown${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  let dir = '';
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
    if (dir) {
      expect(leaksUnder(dir)).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits 0 on SIGTERM while a client keeps its connection open', async () => {
    dir = mkdtempSync('/var/tmp/tsblock-activated-');
    const path = join(dir, 'activated.sock');
    const fd = listeningUnixSocketFd(path);
    let stderr = '';
    try {
      child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=tsblock exec "$0" "$@"', VITE_NODE, MAIN, '--', 'serve',
        '--root', join(dir, 'root'), '--base-size', '32M', '--metrics-address', '', '--socket', 'fd://tsblock'], {
        cwd: REPO,
        env: { PATH: process.env.PATH, HOME: process.env.HOME },
        stdio: ['ignore', 'ignore', 'pipe', fd],
      });
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const client = new Client(path);
      try {
        // Answered once the daemon is up (the connect waits in the backlog until then).
        await client.prepare('k1');
        await client.remove('k1');
        const exit = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
        const t0 = Date.now();
        child.kill('SIGTERM');
        const code = await Promise.race([exit, new Promise<string>((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
        expect(code, stderr).toBe(0);
        expect(Date.now() - t0).toBeLessThan(15_000);
      } finally {
        client.close();
      }
    } finally {
      closeFd(fd);
    }
  }, 90_000);
});
