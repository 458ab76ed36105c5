// itableZeroed reads an ext4 filesystem's block groups with dumpe2fs (a test
// tool, off every product path) and counts those whose inode table is marked
// zeroed (ITABLE_ZEROED), i.e. that the kernel's lazy init thread leaves alone.
import { execFileSync } from 'node:child_process';

export interface GroupCounts {
  groups: number;
  zeroed: number;
}

export function itableZeroed(target: string): GroupCounts {
  const out = execFileSync('dumpe2fs', [target], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const lines = out.split('\n').filter((l) => /^Group \d+:/.test(l));
  return { groups: lines.length, zeroed: lines.filter((l) => l.includes('ITABLE_ZEROED')).length };
}
