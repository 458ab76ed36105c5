// helpers for the VM-only device-mapper tests: the skip condition, sparse
// loop-backed scratch pools, and teardown that never throws.
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dmAvailable, listDevices, removeDevice } from '../../src/sys/dm.js';
import { attachLoop, detachLoop } from '../../src/sys/loop.js';

/** HAS_DM is true only where /dev/mapper/control opens (the VM, not the dev host). */
export const HAS_DM = dmAvailable();

/** SKIP_REASON names why the suite is skipped, shown as a skipped test. */
export const SKIP_REASON = 'devmapper tests need device-mapper (run vm-tests/run-in-vm.sh)';

/** scratchDir makes a temp dir on /var/tmp (tmpfs in the VM). */
export function scratchDir(prefix: string): string {
  return mkdtempSync(join(process.env.TSBLOCK_TEST_TMP ?? tmpdir(), prefix));
}

/** removeDevicesWithPrefix tears down every dm device whose name starts with prefix, children first. */
export async function removeDevicesWithPrefix(prefix: string): Promise<void> {
  const names = listDevices()
    .map((d) => d.name)
    .filter((n) => n.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
  for (const n of names) {
    try {
      await removeDevice(n);
    } catch (err) {
      console.error(`teardown: remove ${n}: ${String(err)}`);
    }
  }
}

/** LoopPool is a raw thin-pool made by a test on two loop devices. */
export interface LoopPool {
  dir: string;
  meta: string;
  data: string;
  dataSectors: number;
}

/** makeLoopFiles creates sparse meta/data files and attaches them. */
export function makeLoopFiles(dir: string, dataBytes: number, metaBytes: number): LoopPool {
  const metaFile = join(dir, 'meta');
  const dataFile = join(dir, 'data');
  writeFileSync(metaFile, Buffer.alloc(4096));
  truncateSync(metaFile, metaBytes);
  writeFileSync(dataFile, '');
  truncateSync(dataFile, dataBytes);
  const meta = attachLoop(metaFile).path;
  let data: string;
  try {
    data = attachLoop(dataFile).path;
  } catch (err) {
    detachLoop(meta);
    throw err;
  }
  return { dir, meta, data, dataSectors: dataBytes / 512 };
}

/** releaseLoopFiles detaches the loops and removes the dir, logging (not throwing) failures. */
export function releaseLoopFiles(p: LoopPool | undefined): void {
  if (!p) return;
  for (const dev of [p.meta, p.data]) {
    try {
      detachLoop(dev);
    } catch (err) {
      console.error(`teardown: detach ${dev}: ${String(err)}`);
    }
  }
  rmSync(p.dir, { recursive: true, force: true });
}
