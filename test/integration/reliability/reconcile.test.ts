// Start-up reconciliation and Cleanup: orphan images, rm-* leftovers, partial
// clones and loop devices on images no snapshot owns are reclaimed when the
// server starts, and online by the Cleanup RPC (containerd's GC); live
// snapshots and the loop devices of live images are never touched.

import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { TestClient } from '../../helpers/client.js';
import { loopsUnder } from '../../helpers/leaks.js';
import { attachLoop, detachLoop, releaseLoop } from '../../../src/sys/loop.js';
import { ServerProc, distReason, tail } from '../../helpers/server.js';
import { recordFigures } from './figures.js';
import { imagesDirOf } from '../../../src/backends/blockfile/layout.js';
import { releaseStore } from '../../helpers/store.js';

/** imageLoops are loop devices on images under dir (the store's own device left out). */
const imageLoops = (dir: string): string[] => loopsUnder(dir).filter((l) => !l.endsWith('/store.xfs'));

const reason = rootReason ?? distReason;

describe.skipIf(reason)(`reconciliation and Cleanup${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('reclaims orphans at start-up and on Cleanup, keeping everything live', async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-reconcile-');
    const root = join(dir, 'root');
    const socket = join(dir, 's.sock');
    const log = join(dir, 'serve.log');
    let snaps = '';
    const held: string[] = [];
    let proc: ServerProc | undefined;
    let c: TestClient | undefined;
    try {
      ({ proc } = await ServerProc.start({ root, socket, log }));
      snaps = join(imagesDirOf(root), 'snapshots');
      c = new TestClient(socket);
      await c.prepare('a');
      await c.commit('layer', 'a');
      await c.prepare('live', 'layer');
      const live = readdirSync(snaps).sort();
      expect(live).toHaveLength(2);
      c.close();
      await proc.kill9();

      // Plant what crashes and a careless operator leave behind.
      const plant = (): string[] => {
        const files = ['9001', 'rm-9002', '9003.tmp'];
        for (const f of files) copyFileSync(join(imagesDirOf(root), 'base.img'), join(snaps, f));
        writeFileSync(join(snaps, 'not-ours'), 'x'); // unknown names are left alone
        // A loop device on an orphan image, and one on a live image (containerd's).
        const orphanLoop = attachLoop(join(snaps, '9001'), { readOnly: true });
        held.push(orphanLoop.path);
        releaseLoop(orphanLoop);
        const liveLoop = attachLoop(join(snaps, live[0]!), { readOnly: true });
        held.push(liveLoop.path);
        releaseLoop(liveLoop);
        return [orphanLoop.path, liveLoop.path];
      };
      const [orphanDev] = plant();
      ({ proc } = await ServerProc.start({ root, socket, log }));
      c = new TestClient(socket);
      expect(readdirSync(snaps).sort()).toEqual([...live, 'not-ours'].sort());
      const loops = imageLoops(dir);
      expect(loops.some((l) => l.startsWith(`${orphanDev} `)), loops.join()).toBe(false);
      expect(loops).toHaveLength(1); // the live image's device stays
      expect((await c.list()).map((i) => i.name).sort()).toEqual(['layer', 'live']);

      // Online: the same leftovers appear while the server runs; Cleanup reclaims them.
      for (const d of held.splice(0)) detachLoop(d);
      const [orphanDev2] = plant();
      await c.cleanup();
      expect(readdirSync(snaps).sort()).toEqual([...live, 'not-ours'].sort());
      expect(imageLoops(dir).some((l) => l.startsWith(`${orphanDev2} `))).toBe(false);
      expect(imageLoops(dir)).toHaveLength(1);
      await c.prepare('next', 'layer'); // the next call works
      recordFigures('reconcile', { plantedFiles: 3, plantedLoops: 1, reclaimedAtStart: true, reclaimedByCleanup: true });
    } catch (err) {
      throw new Error(`${(err as Error).message}\nlog:\n${tail(log)}`, { cause: err });
    } finally {
      c?.close();
      await proc?.stop();
      for (const d of held) detachLoop(d);
      // The store stayed mounted while a loop device (the planted "containerd" one) used an image in it.
      releaseStore(root);
      expect(loopsUnder(dir)).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
