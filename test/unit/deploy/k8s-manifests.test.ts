// deploy/k8s/*.yaml and the YAML snippets of docs/kubernetes.md, decoded
// strictly into the Kubernetes API types by test/go/k8s-validate (client-go's
// scheme: unknown kinds, unknown or duplicate fields and wrongly typed values
// are errors; no cluster, no schema download). Also: the TOML table
// docs/kubernetes.md shows is exactly what configure-containerd.sh appends.

import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snippet } from '../../cri/lib/snippets.js';

const REPO = path.resolve(__dirname, '../../..');
const MOD = path.join(REPO, 'test/go/k8s-validate');
const TOOLS = process.env.TSBLOCK_TOOLS_DIR || '/var/cache/tsblock-tools';
const BIN = path.join(TOOLS, 'k8s-validate', 'k8s-validate');
const requireAll = process.env.CI === 'true' || process.env.TSBLOCK_REQUIRE_ALL === '1';

function findGo(): string | undefined {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/local/go/bin']) {
    const g = path.join(d, 'go');
    if (d && fs.existsSync(g)) return g;
  }
  return undefined;
}
const GO = findGo();
const why = GO ? undefined : 'needs Go (go on PATH or /usr/local/go/bin/go) to build test/go/k8s-validate';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-k8s-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function validate(...files: string[]): { code: number; out: string } {
  const r = spawnSync(BIN, files, { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

const manifests = fs
  .readdirSync(path.join(REPO, 'deploy/k8s'))
  .filter((f) => /\.ya?ml$/.test(f))
  .map((f) => path.join(REPO, 'deploy/k8s', f));

if (why && !requireAll) {
  describe.skip(`Kubernetes manifests (skipped: ${why})`, () => {
    it('needs Go', () => undefined);
  });
} else {
  describe('Kubernetes manifests', () => {
    beforeAll(async () => {
      if (why) throw new Error(why);
      // go build is quick on a warm build cache; cold it takes ~1.5-2.5 min (client-go).
      // Asynchronous: a blocked event loop would time out vitest's worker RPC.
      fs.mkdirSync(path.dirname(BIN), { recursive: true });
      await promisify(execFile)(GO!, ['build', '-trimpath', '-o', BIN, '.'], { cwd: MOD, maxBuffer: 16 << 20 });
    }, 600_000);

    it('deploy/k8s has manifests', () => {
      expect(manifests.map((m) => path.basename(m))).toContain('daemonset.yaml');
    });

    it('deploy/k8s/*.yaml decode strictly: a ConfigMap and a DaemonSet in kube-system', () => {
      const r = validate(...manifests);
      expect(r.out).toMatch(/ok .*daemonset\.yaml#1 ConfigMap kube-system\/tsblock-config/);
      expect(r.out).toMatch(/ok .*daemonset\.yaml#2 DaemonSet kube-system\/tsblock/);
      expect(r.code, r.out).toBe(0);
    });

    it("docs/kubernetes.md's RuntimeClass and probe Pod decode strictly", () => {
      const rc = path.join(tmp, 'runtimeclass.yaml');
      const pod = path.join(tmp, 'pod.yaml');
      fs.writeFileSync(rc, snippet('docs/kubernetes.md', 'k8s-runtimeclass'));
      fs.writeFileSync(pod, snippet('docs/kubernetes.md', 'k8s-probe-pod'));
      const r = validate(rc, pod);
      expect(r.out).toContain('RuntimeClass kata');
      expect(r.out).toContain('Pod tsblock-probe');
      expect(r.code, r.out).toBe(0);
    });

    it('rejects an unknown field, a wrongly typed value and an unknown kind (the check can fail)', () => {
      const ds = fs.readFileSync(path.join(REPO, 'deploy/k8s/daemonset.yaml'), 'utf8');
      const typo = path.join(tmp, 'typo.yaml');
      fs.writeFileSync(typo, ds.replace('terminationGracePeriodSeconds: 30', 'terminationGracePeriodSecond: 30'));
      const r1 = validate(typo);
      expect(r1.code).toBe(1);
      expect(r1.out).toMatch(/unknown field "spec\.template\.spec\.terminationGracePeriodSecond"/);
      const badType = path.join(tmp, 'type.yaml');
      fs.writeFileSync(badType, ds.replace('periodSeconds: 30', 'periodSeconds: "thirty"'));
      expect(validate(badType).code).toBe(1);
      const kind = path.join(tmp, 'kind.yaml');
      fs.writeFileSync(kind, 'apiVersion: apps/v1\nkind: DaemonSett\nmetadata: { name: x }\n');
      const r3 = validate(kind);
      expect(r3.code).toBe(1);
      expect(r3.out).toMatch(/no kind "DaemonSett"/);
    });
  });
}

describe('docs/kubernetes.md: the containerd config change', () => {
  it('is exactly the table configure-containerd.sh appends', () => {
    const conf = path.join(tmp, 'config.toml');
    fs.writeFileSync(conf, 'version = 3\n');
    const r = spawnSync('sh', [path.join(REPO, 'deploy/k8s/configure-containerd.sh')], {
      env: { PATH: process.env.PATH, CONTAINERD_CONFIG: conf, CONTAINERD_RESTART_CMD: 'true' },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const appended = fs.readFileSync(conf, 'utf8');
    expect(appended).toContain(snippet('docs/kubernetes.md', 'k8s-configure-containerd'));
  });
});

describe('test/go/k8s-validate pins', () => {
  it('requires k8s.io/client-go, apimachinery and api at test/versions.env K8S_API, with go.sum entries', () => {
    const env = fs.readFileSync(path.join(REPO, 'test/versions.env'), 'utf8');
    const want = /^K8S_API=(\S+)$/m.exec(env)?.[1];
    expect(want).toMatch(/^v\d+\.\d+\.\d+$/);
    const mod = fs.readFileSync(path.join(MOD, 'go.mod'), 'utf8');
    const sum = fs.readFileSync(path.join(MOD, 'go.sum'), 'utf8');
    for (const p of ['k8s.io/client-go', 'k8s.io/apimachinery', 'k8s.io/api']) {
      expect(mod).toMatch(new RegExp(`^\\s*${p.replace(/\./g, '\\.')} ${want}( //.*)?$`, 'm'));
      expect(sum).toContain(`${p} ${want}/go.mod h1:`);
    }
  });
});
