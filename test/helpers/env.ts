// env tells tests what this machine can do, so tests that need root, loop
// devices or device-mapper skip with a visible reason instead of failing.

import { openSync, closeSync, mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

/** isRoot is true when the tests run as uid 0. */
export const isRoot = process.getuid?.() === 0;

/** hasLoop is true when /dev/loop-control can be opened. */
export const hasLoop = (() => {
  try {
    closeSync(openSync('/dev/loop-control', 'r+'));
    return true;
  } catch {
    return false;
  }
})();

/** rootReason explains why root-only tests are skipped (undefined when they run). */
export const rootReason = !isRoot
  ? 'needs root (run the suite with sudo)'
  : !hasLoop
    ? 'needs loop devices (/dev/loop-control)'
    : undefined;

/** XfsScratch is a loop-mounted XFS (reflink=1) for reflink tests. */
export interface XfsScratch {
  dir: string;
  release(): void;
}

/** makeXfsScratch creates a sparse XFS image with reflink and mounts it (released by release()). */
export function makeXfsScratch(sizeGiB = 8): XfsScratch {
  const base = mkdtempSync('/var/tmp/tsblock-xfs-');
  const img = join(base, 'xfs.img');
  const dir = join(base, 'mnt');
  execFileSync('mkdir', ['-p', dir]);
  writeFileSync(img, '');
  execFileSync('truncate', ['-s', `${sizeGiB}G`, img]);
  execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', img]);
  // Test setup, not a tsblock code path: mount(8) keeps this helper independent
  // of the code under test.
  execFileSync('mount', ['-o', 'loop', img, dir]);
  return {
    dir,
    release() {
      if (existsSync(dir)) {
        try {
          execFileSync('umount', ['-d', dir]);
        } catch {
          execFileSync('umount', ['-l', '-d', dir]);
        }
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/**
 * requireAll is true under CI (CI=true) or TSBLOCK_REQUIRE_ALL=1: there a
 * test that cannot run is a failure, never a skip (scripts/test.sh also
 * counts any skipped test as failed then).
 */
export const requireAll = process.env.CI === 'true' || process.env.TSBLOCK_REQUIRE_ALL === '1';

/**
 * skipOrFail skips the running test with its reason on a developer machine,
 * and fails it under CI (requireAll), where every test must run.
 */
export function skipOrFail(ctx: { skip(note?: string): never }, reason: string): never {
  if (requireAll) throw new Error(`cannot run under CI: ${reason}`);
  console.warn(`skipped: ${reason}`);
  return ctx.skip(reason);
}
