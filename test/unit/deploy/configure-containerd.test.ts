// deploy/k8s/configure-containerd.sh, the DaemonSet's init step, on config
// files in a temp dir (the restart command replaced by a marker file): it
// adds the proxy plugin once, recognises the table however it is spelled,
// and refuses to add a second table that would stop containerd from starting.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const SCRIPT = join(__dirname, '../../../deploy/k8s/configure-containerd.sh');
let dir: string;
let conf: string;
let restarted: string;

function run(): { code: number; out: string; err: string } {
  const r = spawnSync('sh', [SCRIPT], {
    env: { PATH: process.env.PATH, CONTAINERD_CONFIG: conf, TSBLOCK_SOCKET_PATH: '/run/tsblock/tsblock.sock', CONTAINERD_RESTART_CMD: `touch ${restarted}` },
    encoding: 'utf8',
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tsblock-cfgctrd-'));
  conf = join(dir, 'config.toml');
  restarted = join(dir, 'restarted');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('configure-containerd.sh', () => {
  it('appends the proxy plugin to a config without it, keeps a backup, restarts once; a second run changes nothing', () => {
    writeFileSync(conf, 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause:3.9"\n');
    expect(run()).toMatchObject({ code: 0 });
    const after = readFileSync(conf, 'utf8');
    expect(after).toContain('[proxy_plugins.tsblock]\n  type = "snapshot"\n  address = "/run/tsblock/tsblock.sock"\n');
    expect(readFileSync(`${conf}.pre-tsblock`, 'utf8')).toBe('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause:3.9"\n');
    expect(existsSync(restarted)).toBe(true);
    rmSync(restarted);
    expect(run()).toMatchObject({ code: 0, out: expect.stringMatching(/already configured/) });
    expect(readFileSync(conf, 'utf8')).toBe(after);
    expect(existsSync(restarted)).toBe(false);
  });

  it('recognises the table however it is spelled (quotes, spacing, nested under [proxy_plugins])', () => {
    for (const text of [
      "[proxy_plugins]\n  [proxy_plugins.\"tsblock\"]\n    type='snapshot'\n    address='/run/tsblock/tsblock.sock'\n",
      '[ proxy_plugins.tsblock ]\ntype="snapshot"\naddress   =   "/run/tsblock/tsblock.sock"   # ours\n',
    ]) {
      writeFileSync(conf, text);
      expect(run()).toMatchObject({ code: 0, out: expect.stringMatching(/already configured/) });
      expect(readFileSync(conf, 'utf8')).toBe(text);
      expect(existsSync(restarted)).toBe(false);
    }
  });

  it('refuses, leaving the file alone, when the table points at another socket', () => {
    const text = '[proxy_plugins.tsblock]\n  type = "snapshot"\n  address = "/run/other.sock"\n[proxy_plugins.stargz]\n  address = "/run/tsblock/tsblock.sock"\n';
    writeFileSync(conf, text);
    const r = run();
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/already has \[proxy_plugins.tsblock\] with address "\/run\/other.sock"/);
    expect(readFileSync(conf, 'utf8')).toBe(text);
    expect(existsSync(restarted)).toBe(false);
  });

  it('creates the config when there is none', () => {
    expect(run().code).toBe(0);
    expect(readFileSync(conf, 'utf8')).toContain('[proxy_plugins.tsblock]');
  });
});

