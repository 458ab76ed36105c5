// Security: the socket is 0660 and root-owned with a configurable group, the
// root and its directories are 0700, no file under the root is readable by
// others, nothing a request names escapes the root (image paths and device
// names come from numeric ids, never from keys), and no code path runs a
// shell (subprocesses only through execa with argument arrays).

import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { TestClient, failure, grpc } from '../../helpers/client.js';
import { ServerProc, REPO, distReason, tail } from '../../helpers/server.js';

const reason = rootReason ?? distReason;

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) walk(p, out);
  }
  return out;
}

describe('no shell anywhere in src/ and ffi/', () => {
  it('runs subprocesses only through execa with argument arrays', () => {
    const offenders: string[] = [];
    const files = [...walk(join(REPO, 'src')), ...walk(join(REPO, 'ffi'))].filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(20);
    for (const f of files) {
      const lines = readFileSync(f, 'utf8').split('\n');
      lines.forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, '');
        const where = `${relative(REPO, f)}:${i + 1}: ${line.trim()}`;
        if (/\bshell\s*:\s*(true|['"`])/.test(code)) offenders.push(where);
        if (/['"]node:child_process['"]|['"]child_process['"]/.test(code)) offenders.push(where);
        if (/\bexecaCommand(Sync)?\b|(?:^|[\s=(,])\$\s*`|\bexecSync\s*\(|\bspawnSync\s*\(/.test(code)) offenders.push(where);
        if (/\bexeca\s*\(/.test(code) && !/\bexeca\s*\(\s*[A-Za-z_]\w*\s*,\s*[A-Za-z_[]/.test(code)) offenders.push(where);
      });
    }
    expect(offenders).toEqual([]);
  });
});

describe.skipIf(reason)(`file modes and confinement on a real server${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('socket 0660 root:group, root 0700, nothing world-readable, paths from ids only', async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-sec-');
    const socket = join(dir, 'run', 's.sock');
    const root = join(dir, 'root');
    const log = join(dir, 'serve.log');
    const { proc, state } = await ServerProc.start({ root, socket, log, args: ['--socket-group', '4242'] });
    const c = new TestClient(socket);
    try {
      expect(state, tail(log)).toBe('up');
      const s = statSync(socket);
      expect(s.isSocket()).toBe(true);
      expect((s.mode & 0o777).toString(8)).toBe('660');
      expect(s.uid).toBe(0);
      expect(s.gid).toBe(4242);
      // Hostile-looking but valid keys, and invalid ones.
      const keys = ['default/1/sha256:abc', 'a b/c', '.hidden', 'x/./y', '-rf', '$(reboot)', '`id`', 'k'.repeat(4000)];
      for (const k of keys) {
        const m = await c.prepare(k);
        expect(m).toHaveLength(1);
        const src = m[0]!.source;
        expect(src.startsWith(`${root}/`), src).toBe(true);
        expect(basename(src)).toMatch(/^[0-9]+$/); // named by id, never by key
        await c.commit(`${k}-c`.slice(-4000), k).catch(() => c.remove(k));
      }
      for (const k of ['../escape', 'a/../../b', '/..', 'a\0b']) {
        expect((await failure(c.prepare(k))).code).toBe(grpc.status.INVALID_ARGUMENT);
      }
      expect(readdirSync(dir).sort()).toEqual(['root', 'run', 'serve.log']);
      // Modes: directories 0700, files without any group/other access.
      expect((statSync(root).mode & 0o777).toString(8)).toBe('700');
      const loose = walk(root)
        .map((p) => ({ p, mode: statSync(p).mode }))
        .filter(({ mode }) => (mode & 0o077) !== 0)
        .map(({ p, mode }) => `${relative(root, p)} ${(mode & 0o777).toString(8)}`);
      expect(loose).toEqual([]);
    } finally {
      c.close();
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
