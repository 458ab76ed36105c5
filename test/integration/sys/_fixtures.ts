// Shared set-up for the sys integration tests: root detection, sparse image
// files under /var/tmp, and a leak check over loop devices and mounts.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findLoopsUnder } from '../../../src/sys/loop.js';
import { mountsUnder } from '../../../src/sys/mount.js';

/** isRoot tells whether the tests can create loop devices and mounts. */
export const isRoot = process.getuid?.() === 0;
/** rootReason is the visible skip reason for non-root runs. */
export const rootReason = 'needs root (loop devices and mounts)';
if (!isRoot) console.warn(`sys integration tests skipped: ${rootReason}`);

/** makeWorkDir creates a per-suite directory under /var/tmp (big sparse files). */
export function makeWorkDir(tag: string): string {
  const base = fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, `tsblock-sys-${tag}-`));
}

/** sparseFile creates a sparse file of size bytes. */
export function sparseFile(file: string, size: number): string {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size);
  return file;
}

/** leaksUnder lists loop devices and mounts still referring to dir. */
export function leaksUnder(dir: string): string[] {
  return [...findLoopsUnder(dir), ...mountsUnder(dir)];
}
