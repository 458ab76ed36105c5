// The test gate is the project's own: nothing that scripts/test.sh, .ci/run,
// the VM runner or any test runs may reach for the reference tools that sit
// beside a developer's checkout (../shared). A clean clone has no such
// folder, so a reference to it is a stage that silently cannot run there.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = join(__dirname, '../../..');
// What runs: the gate's scripts, the VM runner and provisioning, the tests and
// their fixtures, the benchmarks, the package's scripts. (docs/ may name the
// reference tools in prose.)
const RUN_PATHS = ['.ci', 'scripts', 'vm-tests', 'test', 'package.json', 'Vagrantfile'];
const SHARED_REF = /\.\.\/shared\b|TSBLOCK_SHARED|shared\/tools\//;

function tracked(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', ...RUN_PATHS], { cwd: REPO });
  return out.toString('utf8').split('\0').filter(Boolean);
}

describe('the test gate needs nothing beside the checkout', () => {
  it('no script, test, fixture or VM runner refers to ../shared', () => {
    const self = 'test/unit/gate/self-contained.test.ts';
    const hits: string[] = [];
    for (const f of tracked()) {
      if (f === self) continue;
      const text = readFileSync(join(REPO, f), 'utf8');
      text.split('\n').forEach((line, i) => {
        if (SHARED_REF.test(line)) hits.push(`${f}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(hits).toEqual([]);
  });

  it('finds a reference when there is one (the check itself can fail)', () => {
    expect(SHARED_REF.test('"$REPO/../shared/tools/e2e/e2e.sh" --snapshotter tsblock')).toBe(true);
    expect(SHARED_REF.test('SHARED=${TSBLOCK_SHARED:-x}')).toBe(true);
    expect(SHARED_REF.test('scripts/conformance.sh --suite 2.4')).toBe(false);
  });

  it('.ci/run runs the README\'s test command in its strict form', () => {
    const ci = readFileSync(join(REPO, '.ci/run'), 'utf8');
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    expect(ci).toMatch(/export CI=true TSBLOCK_REQUIRE_ALL=1/);
    expect(ci).toMatch(/^exec scripts\/test\.sh$/m);
    expect(readme).toMatch(/^scripts\/test\.sh\b/m);
  });

  it('scripts/test.sh refuses an unknown stage instead of running nothing', () => {
    let code = 0;
    let err = '';
    try {
      execFileSync('bash', [join(REPO, 'scripts/test.sh'), '--only', 'unit,nosuchstage'], { cwd: REPO, stdio: 'pipe' });
    } catch (e) {
      code = (e as { status: number }).status;
      err = String((e as { stderr: Buffer }).stderr);
    }
    expect(code).toBe(2);
    expect(err).toMatch(/unknown stage 'nosuchstage'/);
  });
});
