// VM runtimes' rules against tsblock's real blockfile mounts (issue 17):
// a real `tsblock serve --backend blockfile` (dist/cli.js), its Prepare and
// View mounts held against Kata's Go runtime, Kata runtime-rs and
// firecracker-containerd (test/runtimes/rules.ts: the conditions, with the
// source files and commits they were read from), every disk a runtime would
// hand over read with O_DIRECT and mounted with that runtime's guest options
// in a private mount namespace. The table docs/kata.md shows is written to
// .tmp/runtimes/blockfile.md from this run.
// Needs root and loop devices; skipped with the reason otherwise (a failure
// under CI).

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.js';
import { hasLoop, isRoot, requireAll } from '../helpers/env.js';
import { leaksUnder } from '../helpers/leaks.js';
import { CLI, REPO, ServerProc } from '../helpers/server.js';
import { probe, table, type Row } from '../runtimes/probe.js';

const missing = !isRoot ? 'needs root' : !hasLoop ? 'needs loop devices' : !fs.existsSync(CLI) ? 'dist/cli.js is not built (npm run build)' : undefined;
if (missing && requireAll) throw new Error(`runtime rules test cannot run under CI: ${missing}`);

describe.skipIf(missing !== undefined)(`VM runtimes' rules on blockfile${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let work: string;
  let proc: ServerProc | undefined;
  let client: TestClient;
  let rows: Row[] = [];
  const row = (snapshot: string, runtime: string) => {
    const r = rows.find((x) => x.snapshot === snapshot && x.verdict.runtime === runtime);
    if (!r) throw new Error(`no row for ${snapshot}/${runtime}`);
    return r;
  };

  beforeAll(async () => {
    work = fs.mkdtempSync('/var/tmp/tsblock-runtimes-');
    const sock = path.join(work, 'tsblock.sock');
    const log = path.join(work, 'serve.log');
    const started = await ServerProc.start({ root: path.join(work, 'root'), socket: sock, log, backendArgs: ['--backend', 'blockfile', '--base-size', '256M'] });
    proc = started.proc;
    if (started.state === 'died') throw new Error(`tsblock serve did not start: ${fs.readFileSync(log, 'utf8').slice(-1500)}`);
    client = new TestClient(sock, 'tsblock', 'runtimes');
    await client.ready();
    rows = await probe(client, work);
    const md = table('blockfile', rows);
    fs.mkdirSync(path.join(REPO, '.tmp', 'runtimes'), { recursive: true });
    fs.writeFileSync(path.join(REPO, '.tmp', 'runtimes', 'blockfile.md'), md);
    console.log(md);
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await proc?.stop();
    const leaks = work ? leaksUnder(work) : [];
    if (work) fs.rmSync(work, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  }, 60_000);

  it('Prepare and View each return exactly one ext4 mount: a regular image file with the loop option', () => {
    for (const s of ['Prepare', 'View']) {
      const r = row(s, 'kata-rs');
      expect(r.mounts).toHaveLength(1);
      expect(r.mounts[0]!.type).toBe('ext4');
      expect(r.sourceKind).toBe('file');
      expect(r.mounts[0]!.options).toContain('loop');
    }
    expect(row('Prepare', 'kata-rs').mounts[0]!.options).toContain('rw');
    expect(row('View', 'kata-rs').mounts[0]!.options).toEqual(expect.arrayContaining(['ro', 'noload']));
  });

  it('runtime-rs attaches the image file itself, "loop" dropped; the guest sees the layer, rw for Prepare, ro for View', () => {
    for (const [s, state] of [['Prepare', 'rw'], ['View', 'ro']] as const) {
      const r = row(s, 'kata-rs');
      expect(r.verdict.outcome).toBe('block');
      expect(r.verdict.disk).toBe(r.mounts[0]!.source);
      expect(r.verdict.guestOptions).not.toContain('loop');
      expect(r.disk).toMatchObject({ directRead: true, ext4Magic: true, guestMount: state, markerSeen: true });
      expect(r.disk!.fsBytes).toBe(r.disk!.diskBytes);
    }
  });

  it('firecracker-containerd attaches the image file as its drive and mounts it ext4 rw, View included (options ignored)', () => {
    for (const s of ['Prepare', 'View']) {
      const r = row(s, 'firecracker-containerd');
      expect(r.verdict.outcome).toBe('block');
      expect(r.verdict.disk).toBe(r.mounts[0]!.source);
      expect(r.verdict.guestOptions).toEqual(['rw']);
      expect(r.disk).toMatchObject({ directRead: true, ext4Magic: true, guestMount: 'rw', markerSeen: true });
    }
  });

  it("Kata's Go runtime mounts the file on the host (not S_IFBLK) and then hot-plugs the loop device under that mount", () => {
    for (const s of ['Prepare', 'View']) {
      const r = row(s, 'kata-go');
      expect(r.verdict.hostMounted).toBe(true);
      expect(r.verdict.outcome).toBe('block');
      expect(r.verdict.disk).toMatch(/^\/dev\/loop\d+$/);
      expect(r.verdict.guestFsType).toBe('ext4');
      expect(r.disk).toMatchObject({ directRead: true, ext4Magic: true, markerSeen: true, readOnlyDevice: s === 'View' });
    }
  });
});
