// CLI plumbing: table/JSON output, sizes for people, `tsblock help VERB`,
// and config errors reported all at once with exit status 2.

import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { human, table } from '../../../src/cli/common.js';
import { sdNotify } from '../../../src/sys/notify.js';

const REPO = resolve(import.meta.dirname, '../../..');
const run = (...args: string[]) =>
  spawnSync(join(REPO, 'node_modules/.bin/vite-node'), [join(REPO, 'src/cli/main.ts'), '--', ...args], {
    cwd: REPO,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TSBLOCK_CONFIG: '/dev/null' /* an empty config: the host's /etc/tsblock never leaks in */ },
    encoding: 'utf8',
  });

describe('output', () => {
  it('aligns columns on a terminal and uses tabs in pipes', () => {
    expect(table(['KEY', 'KIND'], [['a-long-key', 'active'], ['b', 'view']], true)).toBe('KEY         KIND\na-long-key  active\nb           view\n');
    expect(table(['KEY', 'KIND'], [['a', 'active']], false)).toBe('KEY\tKIND\na\tactive\n');
  });
  it('renders sizes in binary units', () => {
    expect(human(undefined)).toBe('-');
    expect(human(512)).toBe('512 B');
    expect(human(1536)).toBe('1.5 KiB');
    expect(human(10 * 1024 ** 3)).toBe('10 GiB');
  });
  it('sd_notify is a no-op outside systemd', () => {
    expect(sdNotify('READY=1', {})).toBe(false);
    expect(() => sdNotify('READY=1', { NOTIFY_SOCKET: 'vsock:2:1' })).toThrow(/not a unix socket/);
  });
});

describe('tsblock entry point', () => {
  it('lists every verb, and `help VERB` prints that verb\'s usage', () => {
    const all = run('--help');
    expect(all.status).toBe(0);
    for (const verb of ['serve', 'ls', 'info', 'usage', 'rm', 'gc', 'doctor', 'pool', 'config']) expect(all.stdout).toMatch(new RegExp(`^  ${verb} `, 'm'));
    const h = run('help', 'gc');
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/^usage: tsblock gc \[--yes\]/);
    expect(h.stdout).toContain('--json');
  });
  it('reports every config problem at once with status 2', () => {
    const r = run('config', 'dump', '--root', 'relative', '--backend', 'zfs', '--base-size', 'huge');
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(3);
  });
  it('config default prints a file that config dump accepts', () => {
    const text = execFileSync(join(REPO, 'node_modules/.bin/vite-node'), [join(REPO, 'src/cli/main.ts'), '--', 'config', 'default'], { cwd: REPO, encoding: 'utf8' });
    expect(text).toMatch(/^\[snapshotters\.tsblock\]$/m);
  });
});
