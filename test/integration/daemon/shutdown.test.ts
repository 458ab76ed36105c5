// Graceful shutdown leaves containers' mounts alone: a snapshot mounted
// (as containerd mounts it, through a loop device) stays mounted and
// writable after the daemon stops, and a new daemon serves the same root.

import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder, mountsUnder } from '../../helpers/leaks.js';
import { merge } from '../../../src/config/index.js';
import { startConfig } from '../../../src/daemon/run.js';
import { mountOne, releaseMount, type MountHandle } from '../../../src/sys/mount.js';
import { Client, recordingLogger } from '../cli/helpers.js';

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
      expect(mountsUnder(dir)).toEqual([mnt]);
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
      const leaks = leaksUnder(dir);
      rmSync(dir, { recursive: true, force: true });
      expect(leaks).toEqual([]);
    }
  });
});
