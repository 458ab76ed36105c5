// deploy/tsblock.service and deploy/tsblock.socket checked by systemd's own
// `systemd-analyze verify`, in an alternate root (a temp dir holding the
// system's unit directory, the units, and stand-ins for the two programs the
// service runs, /usr/local/bin/tsblock and /sbin/modprobe, which verify
// requires to exist). systemd reports problems but still exits 0 for many of
// them, so any output at all is a failure.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_SOCKET } from '../../../src/config/types.js';
import { afterEach, describe, expect, it } from 'vitest';

const REPO = path.resolve(__dirname, '../../..');
const requireAll = process.env.CI === 'true' || process.env.TSBLOCK_REQUIRE_ALL === '1';
const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => fs.existsSync(p));
const UNITS = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((p) => fs.existsSync(path.join(p, 'sysinit.target')));
const why = !ANALYZE ? 'needs systemd-analyze (apt-get install systemd)' : !UNITS ? 'needs the system unit directory (/usr/lib/systemd/system)' : undefined;

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

function verify(service: string, socket: string): { code: number; out: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-units-'));
  roots.push(root);
  fs.cpSync(UNITS!, path.join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  const etc = path.join(root, 'etc/systemd/system');
  fs.mkdirSync(etc, { recursive: true });
  fs.writeFileSync(path.join(etc, 'tsblock.service'), service);
  fs.writeFileSync(path.join(etc, 'tsblock.socket'), socket);
  for (const p of ['usr/local/bin/tsblock', 'sbin/modprobe', 'bin/kill']) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), '#!/bin/sh\n', { mode: 0o755 });
  }
  const r = spawnSync(ANALYZE!, ['verify', `--root=${root}`, '--man=no', 'tsblock.service', 'tsblock.socket'], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`.trim() };
}

const service = () => fs.readFileSync(path.join(REPO, 'deploy/tsblock.service'), 'utf8');
const socket = () => fs.readFileSync(path.join(REPO, 'deploy/tsblock.socket'), 'utf8');

if (why && !requireAll) {
  describe.skip(`systemd units (skipped: ${why})`, () => {
    it('needs systemd-analyze', () => undefined);
  });
} else {
  describe('systemd units: systemd-analyze verify', () => {
    it('deploy/tsblock.service and deploy/tsblock.socket verify without a word', () => {
      if (why) throw new Error(why);
      expect(verify(service(), socket())).toEqual({ code: 0, out: '' });
    });

    it('reports a broken unit (the check can fail)', () => {
      if (why) throw new Error(why);
      const bad = verify(service().replace('Type=notify', 'Type=notifyy'), socket().replace('ListenStream=', 'ListenStreem='));
      expect(bad.out).toMatch(/Failed to parse service type/);
      expect(bad.out).toMatch(/ListenStreem/);
    });
  });
}

describe('systemd units: socket activation is the default deployment', () => {
  it('tsblock.service requires tsblock.socket, whose ListenStream= is the default socket path (the daemon takes it by that path)', () => {
    expect(service()).toMatch(/^Requires=tsblock\.socket$/m);
    expect(service()).toMatch(/^After=.*\btsblock\.socket\b/m);
    expect(service()).toMatch(/^ExecStart=\/usr\/local\/bin\/tsblock serve --config \/etc\/tsblock\/config\.toml$/m);
    expect(socket()).toMatch(new RegExp(`^ListenStream=${DEFAULT_SOCKET}$`, 'm'));
    expect(socket()).toMatch(/^Service=tsblock\.service$/m);
    // reload is the handoff (run.ts spawnSuccessor): the successor's MAINPID= must be accepted
    expect(service()).toMatch(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    expect(service()).toMatch(/^NotifyAccess=all$/m);
  });
});

