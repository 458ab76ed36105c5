// figures collects the numbers the reliability tests measure (kills
// survived, requests fuzzed, operations under load, errors, leaks) and
// prints them as one JSON line each, and appends them to
// $TSBLOCK_REL_FIGURES when set (scripts/reliability.sh reads that file).

import { appendFileSync } from 'node:fs';

/** recordFigures prints `RELIABILITY <name> {json}` and appends it to $TSBLOCK_REL_FIGURES. */
export function recordFigures(name: string, figures: object): void {
  const line = `RELIABILITY ${name} ${JSON.stringify(figures)}`;
  console.log(line);
  const file = process.env.TSBLOCK_REL_FIGURES;
  if (file) appendFileSync(file, `${line}\n`);
}
