// Graceful shutdown leaves containers' mounts alone: a snapshot mounted
// (as containerd mounts it, through a loop device) stays mounted and
// writable after the daemon stops, and a new daemon serves the same root.

import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder, mountsUnder } from '../../helpers/leaks.js';
import { merge } from '../../../src/config/index.js';
import { startConfig } from '../../../src/daemon/run.js';
import { mountOne, releaseMount, type MountHandle } from '../../../src/sys/mount.js';
import { Client, recordingLogger } from '../cli/helpers.js';
import { spawn } from 'node:child_process';
import { releaseStore } from '../../helpers/store.js';
import { storeExists } from '../../../src/backends/blockfile/store.js';
import { CLI, distReason } from '../../helpers/server.js';

describe.skipIf(rootReason)(`graceful shutdown${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  it('keeps a container\'s mount in place across a daemon stop and restart', async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-shutdown-');
    const config = merge([{ metrics_address: '', snapshotters: { s: { root: join(dir, 'root'), socket: join(dir, 's.sock'), base_size: '32M' } } }]);
    let handle: MountHandle | undefined;
    try {
      const first = await startConfig(config, recordingLogger().log, { env: {} });
      const c1 = new Client(join(dir, 's.sock'), 's');
      const { mounts } = await c1.prepare('ctr-1');
      c1.close();
      const mnt = join(dir, 'rootfs');
      mkdirSync(mnt);
      handle = mountOne({ type: mounts[0]!.type, source: mounts[0]!.source, options: mounts[0]!.options }, mnt);
      writeFileSync(join(mnt, 'before'), 'x');
      const rec = recordingLogger();
      await first.stop();
      // The container's mount stays, and so does the store under it when the
      // root has one (an ext4 root): the daemon never unmounts a store in use.
      const store = storeExists(join(dir, 'root')) ? [join(dir, 'root', 'store')] : [];
      expect(mountsUnder(dir).sort()).toEqual([mnt, ...store].sort());
      writeFileSync(join(mnt, 'after-stop'), 'y'); // still a live, writable filesystem
      const second = await startConfig(config, rec.log, { env: {} });
      const c2 = new Client(join(dir, 's.sock'), 's');
      const again = await c2.prepare('ctr-1').catch((e: { code: number }) => e.code);
      expect(again).toBe(6); // ALREADY_EXISTS: the snapshot survived the restart
      c2.close();
      expect(readFileSync(join(mnt, 'before'), 'utf8')).toBe('x');
      await second.stop();
    } finally {
      if (handle) releaseMount(handle);
      releaseStore(join(dir, 'root'));
      const leaks = leaksUnder(dir);
      rmSync(dir, { recursive: true, force: true });
      expect(leaks).toEqual([]);
    }
  });

  it.skipIf(distReason !== undefined)(`a SIGTERM that lands during start-up still stops cleanly${distReason ? ` (skipped: ${distReason})` : ''}`, async () => {
    // A supervisor may stop us while the base image is still being made or
    // the socket has only just appeared: the stop must be the clean one
    // (exit 0, socket removed), not Node's default death by signal.
    const dir = mkdtempSync('/var/tmp/tsblock-earlystop-');
    const socket = join(dir, 's.sock');
    let proc: ReturnType<typeof spawn> | undefined;
    try {
      const child = spawn(process.execPath, [CLI, 'serve', '--root', join(dir, 'root'), '--socket', socket, '--base-size', '64M', '--metrics-address', ''], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      proc = child;
      let out = '';
      let sent = false;
      const signalled = new Promise<void>((resolve) => {
        const onData = (b: Buffer) => {
          out += b.toString();
          // First line of the start-up (before the base image and the socket).
          if (!sent && out.includes('low-space guard')) {
            sent = true;
            child.kill('SIGTERM');
            resolve();
          }
        };
        child.stdout!.on('data', onData);
        child.stderr!.on('data', onData); // the log goes to one of them
      });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
      await signalled;
      const res = await exited;
      expect(res, out).toEqual({ code: 0, signal: null });
      expect(out).toContain('signal received');
      expect(existsSync(socket)).toBe(false);
    } finally {
      if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      const leaks = leaksUnder(dir);
      rmSync(dir, { recursive: true, force: true });
      expect(leaks).toEqual([]);
    }
  }, 60_000);
});
