// The daemon's temporary mount points (<root>/mnt) are swept at start-up: a
// mount a killed daemon left there is unmounted and its directory removed,
// while a directory holding files is kept (rmdir never deletes data).

import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { mountsUnder } from '../../helpers/leaks.js';
import { mountOne, unmount } from '../../../src/sys/mount.js';
import { sweepTempMounts } from '../../../src/daemon/temp-mounts.js';

describe.skipIf(rootReason)(`daemon temporary mounts${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  let dir: string | undefined;
  afterEach(() => {
    if (!dir) return;
    for (const m of mountsUnder(dir)) unmount(m, { detach: true, ignoreNotMounted: true });
    rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('unmounts and removes leftovers under <root>/mnt, keeps non-empty directories', () => {
    dir = mkdtempSync('/var/tmp/tsblock-tmpmnt-');
    const root = join(dir, 'root');
    const left = join(root, 'mnt', 'tsblock-mnt-left');
    mkdirSync(left, { recursive: true });
    mountOne({ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }, left);
    writeFileSync(join(left, 'inside'), 'x');
    const kept = join(root, 'mnt', 'not-empty');
    mkdirSync(kept);
    writeFileSync(join(kept, 'data'), 'y');
    expect(mountsUnder(root)).toEqual([left]);

    const res = sweepTempMounts(root);
    expect(res.dir).toBe(join(root, 'mnt'));
    expect(res.released).toEqual([left]);
    expect(mountsUnder(root)).toEqual([]);
    expect(existsSync(left)).toBe(false);
    expect(readdirSync(kept)).toEqual(['data']);
    expect(statSync(res.dir).mode & 0o777).toBe(0o700);
    // Nothing left: a second sweep is a no-op.
    expect(sweepTempMounts(root).released).toEqual([]);
  });
});
