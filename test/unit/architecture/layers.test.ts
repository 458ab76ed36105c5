// The import layers (docs/architecture.md, .dependency-cruiser.mjs): src/ and
// ffi/ import only downwards and have no cycle, and the check itself catches
// an upward import, a cycle and an ffi import from outside sys on a small
// tree made to break each rule.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const REPO = new URL('../../..', import.meta.url).pathname;
const DEPCRUISE = join(REPO, 'node_modules', '.bin', 'depcruise');
const CONFIG = join(REPO, '.dependency-cruiser.mjs');

function cruise(cwd: string): { status: number | null; out: string } {
  const r = spawnSync(DEPCRUISE, ['--config', CONFIG, '--no-progress', 'src', 'ffi'], { cwd, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('import layers', { timeout: 150_000 }, () => {
  it('src/ and ffi/ import only downwards, with no cycle', () => {
    const { status, out } = cruise(REPO);
    expect(out).toContain('no dependency violations found');
    expect(status).toBe(0);
  });

  it('the check fails on an upward import, a cycle and an ffi import outside sys', () => {
    const dir = mkdtempSync(join(tmpdir(), 'arch-layers-'));
    try {
      const files: Record<string, string> = {
        // core → daemon is upward, and daemon → core closes a cycle.
        'src/core/a.ts': "import { b } from '../daemon/b.js';\nexport const a = (): number => b + 1;\n",
        'src/daemon/b.ts': "import { a } from '../core/a.js';\nexport const b = 1;\nexport const c = a;\n",
        // apply may not reach the raw bindings: only sys may.
        'src/apply/c.ts': "import { x } from '../../ffi/x.js';\nexport const c = x;\n",
        'ffi/x.ts': 'export const x = 1;\n',
        // A legal import, to show the check is not failing on everything.
        'src/sys/d.ts': "import { x } from '../../ffi/x.js';\nexport const d = x;\n",
      };
      for (const [p, text] of Object.entries(files)) {
        mkdirSync(dirname(join(dir, p)), { recursive: true });
        writeFileSync(join(dir, p), text);
      }
      const { status, out } = cruise(dir);
      expect(status).not.toBe(0);
      expect(out).toMatch(/layer-core: src\/core\/a\.ts → src\/daemon\/b\.ts/);
      expect(out).toMatch(/no-circular: src\/(core\/a|daemon\/b)\.ts/);
      expect(out).toMatch(/ffi-only-from-sys: src\/apply\/c\.ts → ffi\/x\.ts/);
      expect(out).not.toMatch(/src\/sys\/d\.ts →/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
