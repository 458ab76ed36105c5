// `containerd config dump` of every containerd version here (Debian's 1.6,
// and the 2.x builds of scripts/install-tools.sh) on every config snippet of
// docs/containerd.md and deploy/containerd/*.toml, taken from those files:
// the config loads, and the setting the snippet is for is in the merged
// config containerd would run with (or, on 1.6, is shown to be ignored).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mergeToml, repoFile, snippet, snippets, tomlOf, withSocket } from './lib/snippets.js';
import { allContainerds, requireAll, type ContainerdTools } from './lib/tools.js';

const DOC = 'docs/containerd.md';
const SOCK = '/run/tsblock-test/tsblock.sock';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsblock-cfgdump-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

type Obj = Record<string, unknown>;
const get = (o: unknown, ...keys: string[]): unknown => keys.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Obj)[k] : undefined), o);

let n = 0;
/** dump runs `containerd --config F config dump` on a config text: the parsed dump and stderr. */
function dump(t: ContainerdTools, text: string): { cfg: Obj; stderr: string } {
  const f = path.join(tmp, `c${n++}.toml`);
  fs.writeFileSync(f, text);
  const r = spawnSync(t.containerd, ['--config', f, 'config', 'dump'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`containerd ${t.version} config dump of\n${text}\nfailed (${r.status}): ${r.stderr}`);
  return { cfg: tomlOf(r.stdout), stderr: r.stderr };
}

const proxyOf = (cfg: Obj) => get(cfg, 'proxy_plugins', 'tsblock') as Obj | undefined;

describe('config snippets are named in docs/containerd.md', () => {
  it('has every snippet the tests use', () => {
    const names = [...snippets(DOC).keys()];
    for (const want of ['1.x-config', '1.x-commands', '2.x-config', '2.x-commands', '2.x-without-unpack-config', 'cri-2.x-default', 'cri-2.x-kata', 'cri-2.x-runc-handler', 'cri-1.7-kata']) {
      expect(names).toContain(want);
    }
  });
  it('every TOML snippet parses, and deploy/containerd/config-*.toml repeat the docs snippets', () => {
    for (const [name, s] of snippets(DOC)) if (s.lang === 'toml') expect(() => tomlOf(s.text), name).not.toThrow();
    // the deploy files hold the docs' blocks (same values)
    const d1 = tomlOf(repoFile('deploy/containerd/config-1.x.toml'));
    const d2 = tomlOf(repoFile('deploy/containerd/config-2.x.toml'));
    expect(get(d1, 'proxy_plugins')).toEqual(get(tomlOf(snippet(DOC, '1.x-config')), 'proxy_plugins'));
    const s2 = tomlOf(snippet(DOC, '2.x-config'));
    expect(get(d2, 'proxy_plugins')).toEqual(get(s2, 'proxy_plugins'));
    expect(get(d2, 'plugins', 'io.containerd.transfer.v1.local')).toEqual(get(s2, 'plugins', 'io.containerd.transfer.v1.local'));
    const kata2 = tomlOf(snippet(DOC, 'cri-2.x-kata'));
    expect(get(d2, 'plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes', 'kata')).toMatchObject(
      get(kata2, 'plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes', 'kata') as Obj,
    );
    const kata1 = tomlOf(snippet(DOC, 'cri-1.7-kata'));
    expect(get(d1, 'plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'runtimes', 'kata')).toMatchObject(
      get(kata1, 'plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'runtimes', 'kata') as Obj,
    );
  });
});

for (const { name, tools } of allContainerds()) {
  const why = typeof tools === 'string' ? tools : undefined;
  if (why && !requireAll) {
    describe.skip(`containerd config dump, ${name} (skipped: ${why})`, () => {
      it('needs that containerd', () => undefined);
    });
    continue;
  }
  const t = tools as ContainerdTools;
  const v2 = !why && t.version.startsWith('2.');
  describe(`containerd config dump, ${name}${why ? '' : ` (${t.version})`}`, () => {
    if (why) {
      it('is installed (CI)', () => {
        throw new Error(String(why));
      });
      return;
    }

    it('loads the 1.x snippet (version 2) with the proxy plugin', () => {
      const { cfg, stderr } = dump(t, withSocket(snippet(DOC, '1.x-config'), SOCK));
      expect(proxyOf(cfg)).toMatchObject({ type: 'snapshot', address: SOCK });
      // 2.x reads version 2 and migrates it, with a warning
      if (v2) expect(stderr).toMatch(/Configuration migrated from version 2/);
    });

    it('loads deploy/containerd/config-1.x.toml', () => {
      const { cfg } = dump(t, withSocket(repoFile('deploy/containerd/config-1.x.toml'), SOCK));
      expect(proxyOf(cfg)).toMatchObject({ address: SOCK });
      if (v2) {
        // migrated to the 2.x plugin ids, per-runtime snapshotter kept
        expect(get(cfg, 'plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes', 'kata', 'snapshotter')).toBe('tsblock');
        expect(get(cfg, 'plugins', 'io.containerd.cri.v1.images', 'discard_unpacked_layers')).toBe(false);
      } else {
        // 1.6: the runtime is there, its snapshotter key silently dropped
        const kata = get(cfg, 'plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'runtimes', 'kata') as Obj;
        expect(kata.runtime_type).toBe('io.containerd.kata.v2');
        expect(kata).not.toHaveProperty('snapshotter');
        expect(get(cfg, 'plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'discard_unpacked_layers')).toBe(false);
      }
    });

    it('loads docs/containerd-config.toml (the README points at it)', () => {
      expect(proxyOf(dump(t, withSocket(repoFile('docs/containerd-config.toml'), SOCK)).cfg)).toMatchObject({ type: 'snapshot', address: SOCK });
    });

    it('loads the 1.7 per-runtime snippet (cri-1.7-kata)', () => {
      const { cfg } = dump(t, mergeToml(withSocket(snippet(DOC, '1.x-config'), SOCK), snippet(DOC, 'cri-1.7-kata')));
      if (v2) expect(get(cfg, 'plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes', 'kata', 'snapshotter')).toBe('tsblock');
      else expect(get(cfg, 'plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'runtimes', 'kata')).not.toHaveProperty('snapshotter');
    });

    if (!v2) {
      it('takes a version 3 file without complaint but ignores its 2.x plugin sections (only the proxy plugin applies)', () => {
        const { cfg } = dump(t, mergeToml(withSocket(snippet(DOC, '2.x-config'), SOCK), snippet(DOC, 'cri-2.x-default')));
        expect(cfg.version).toBe(2);
        expect(proxyOf(cfg)).toMatchObject({ address: SOCK });
        expect(get(cfg, 'plugins', 'io.containerd.grpc.v1.cri', 'containerd', 'snapshotter')).toBe('overlayfs');
        expect(get(cfg, 'plugins', 'io.containerd.cri.v1.images')).toBeUndefined();
      });
      return;
    }

    it('loads the 2.x snippet (version 3): proxy plugin and unpack_config for tsblock and overlayfs', () => {
      const { cfg, stderr } = dump(t, withSocket(snippet(DOC, '2.x-config'), SOCK));
      expect(proxyOf(cfg)).toMatchObject({ type: 'snapshot', address: SOCK });
      // 2.3+ know config version 4 and migrate a version 3 file (docs/containerd.md says so)
      if (!/^2\.[012]\./.test(t.version)) {
        expect(stderr).toMatch(/Configuration migrated from version 3/);
        expect(cfg.version).toBe(4);
      }
      const uc = get(cfg, 'plugins', 'io.containerd.transfer.v1.local', 'unpack_config') as Obj[];
      expect(uc.map((u) => `${u.platform}/${u.snapshotter}`)).toEqual(['linux/amd64/tsblock', 'linux/amd64/overlayfs']);
    });

    it('loads deploy/containerd/config-2.x.toml, with and without its commented default-snapshotter line', () => {
      const text = withSocket(repoFile('deploy/containerd/config-2.x.toml'), SOCK);
      const { cfg } = dump(t, text);
      expect(get(cfg, 'plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes', 'kata', 'snapshotter')).toBe('tsblock');
      expect(get(cfg, 'plugins', 'io.containerd.cri.v1.images', 'snapshotter')).toBe('overlayfs');
      const on = dump(t, text.replace('  # snapshotter = "tsblock"', '  snapshotter = "tsblock"')).cfg;
      expect(get(on, 'plugins', 'io.containerd.cri.v1.images', 'snapshotter')).toBe('tsblock');
    });

    it('loads the CRI snippets (cri-2.x-default, cri-2.x-kata, cri-2.x-runc-handler)', () => {
      const base = withSocket(snippet(DOC, '2.x-config'), SOCK);
      expect(get(dump(t, mergeToml(base, snippet(DOC, 'cri-2.x-default'))).cfg, 'plugins', 'io.containerd.cri.v1.images', 'snapshotter')).toBe('tsblock');
      const kata = dump(t, mergeToml(base, snippet(DOC, 'cri-2.x-kata'))).cfg;
      expect(get(kata, 'plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes', 'kata')).toMatchObject({ runtime_type: 'io.containerd.kata.v2', snapshotter: 'tsblock' });
      const runc = dump(t, mergeToml(base, snippet(DOC, 'cri-2.x-runc-handler'))).cfg;
      expect(get(runc, 'plugins', 'io.containerd.cri.v1.runtime', 'containerd', 'runtimes', 'runc-tsblock')).toMatchObject({ runtime_type: 'io.containerd.runc.v2', snapshotter: 'tsblock' });
    });
  });
}

