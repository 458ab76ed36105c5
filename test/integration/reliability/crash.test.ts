// Crash consistency: SIGKILL a real `tsblock serve` at fault points inside
// Prepare, View, Commit, Remove, Cleanup, base creation and start-up
// reconciliation, restart it, and check that nothing committed is lost and
// metadata, image files and kernel objects agree (see crash-run.ts).
// npm test runs a bounded campaign; scripts/reliability.sh a long one
// (TSBLOCK_REL_KILLS, TSBLOCK_REL_SEED).

import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { rootReason } from '../../helpers/env.js';
import { FAULT_POINTS } from '../../../src/base/faults.js';
import { cleanDir, runCrashCampaign } from './crash-run.js';
import { distReason } from '../../helpers/server.js';
import { recordFigures } from './figures.js';

const reason = rootReason ?? distReason;
const KILLS = Number(process.env.TSBLOCK_REL_KILLS ?? 40);
const SEED = Number(process.env.TSBLOCK_REL_SEED ?? 20261125);

describe.skipIf(reason)(`crash consistency under SIGKILL${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it(`survives ${KILLS} kills at fault points with nothing lost or leaked (seed ${SEED})`, async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-crash-');
    let leaks: string[] = [];
    try {
      const f = await runCrashCampaign({ dir, kills: KILLS, seed: SEED });
      recordFigures('crash', f);
      expect(f.kills).toBeGreaterThanOrEqual(KILLS);
      expect(f.leaks).toBe(0);
      // Every operation's steps were hit: Prepare/View, Commit, Remove, base creation.
      const hit = Object.keys(f.byPoint);
      for (const prefix of ['core:create:', 'blockfile:create:', 'core:commit:', 'core:flush:', 'core:remove:', 'blockfile:base:', 'apply:']) {
        expect(hit.some((p) => p.startsWith(prefix)), `no kill in ${prefix}* (hit: ${hit.join(', ')})`).toBe(true);
      }
      for (const p of hit) expect(FAULT_POINTS as readonly string[]).toContain(p);
    } finally {
      leaks = cleanDir(dir);
    }
    expect(leaks).toEqual([]);
  }, 600_000);
});
