/**
 * figures prints one `FAULTS <test> {json}` line of counts per test (faults
 * tried, survived, bytes checked, …) and appends it to
 * .tmp/faults/figures.txt, for docs/reliability.md.
 */

import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './rig.js';

export function figures(test: string, data: Record<string, unknown>): void {
  const line = `FAULTS ${test} ${JSON.stringify({ at: new Date().toISOString(), ...data })}`;
  console.log(line);
  const dir = path.join(REPO, '.tmp', 'faults');
  fs.mkdirSync(dir, { recursive: true });
  fs.appendFileSync(path.join(dir, 'figures.txt'), `${line}\n`);
}
