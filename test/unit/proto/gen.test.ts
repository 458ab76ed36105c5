// The committed types in src/proto/gen must be exactly what
// scripts/gen-proto.sh (npm run gen:proto) makes from proto/ today: a .proto
// edited without regenerating, or a hand edit of a generated file, fails here.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const REPO = new URL('../../..', import.meta.url).pathname;
const COMMITTED = join(REPO, 'src', 'proto', 'gen');

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}

describe('generated proto types', () => {
  it('regenerating from proto/ gives no diff', () => {
    const dir = mkdtempSync(join(tmpdir(), 'arch-proto-gen-'));
    try {
      const out = join(dir, 'gen');
      execFileSync('bash', [join(REPO, 'scripts', 'gen-proto.sh'), out], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
      const fresh = listFiles(out).map((f) => relative(out, f)).sort();
      const committed = listFiles(COMMITTED).map((f) => relative(COMMITTED, f)).sort();
      expect(committed).toEqual(fresh);
      expect(fresh.length).toBeGreaterThan(20);
      for (const f of fresh) expect(readFileSync(join(COMMITTED, f), 'utf8'), f).toBe(readFileSync(join(out, f), 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
