// test/versions.env pins every version the tests build; the Go modules under
// test/go must require exactly those (go.mod + go.sum for each containerd
// line), and the shared harness must stay stdlib-only so it builds with all.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const read = (rel: string) => readFileSync(new URL(`../../${rel}`, import.meta.url), 'utf8');

/** env parses the shell KEY=value lines of test/versions.env. */
function env(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of read('versions.env').split('\n')) {
    const m = /^([A-Z0-9_]+)=(\S+)\s*$/.exec(line);
    if (m) out[m[1]!] = m[2]!.replace(/^["']|["']$/g, '');
  }
  return out;
}

interface GoMod {
  module: string;
  require: Map<string, string>;
  replace: Map<string, string>;
}

/** parseGoMod reads module, require and replace directives (single-line and blocks). */
function parseGoMod(src: string): GoMod {
  const mod: GoMod = { module: '', require: new Map(), replace: new Map() };
  let block = '';
  for (const raw of src.split('\n')) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    if (!line) continue;
    if (block) {
      if (line === ')') block = '';
      else add(block, line);
      continue;
    }
    const m = /^(module|require|replace)\s+(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === 'module') mod.module = m[2]!.trim();
    else if (m[2]!.trim() === '(') block = m[1]!;
    else add(m[1]!, m[2]!);
  }
  function add(kind: string, rest: string): void {
    if (kind === 'require') {
      const [p, v] = rest.split(/\s+/);
      mod.require.set(p!, v!);
    } else if (kind === 'replace') {
      const [from, to] = rest.split('=>').map((x) => x.trim());
      mod.replace.set(from!.split(/\s+/)[0]!, to!);
    }
  }
  return mod;
}

const V = env();
const cases = [
  { file: 'go/ctrd2/go.mod', sum: 'go/ctrd2/go.sum', path: 'github.com/containerd/containerd/v2', key: 'CONTAINERD_2_4' },
  { file: 'go/ctrd2/go.2.3.mod', sum: 'go/ctrd2/go.2.3.sum', path: 'github.com/containerd/containerd/v2', key: 'CONTAINERD_2_3' },
  { file: 'go/ctrd1/go.mod', sum: 'go/ctrd1/go.sum', path: 'github.com/containerd/containerd', key: 'CONTAINERD_1_7' },
];

describe('test/versions.env and test/go agree', () => {
  it('versions.env has the containerd pins', () => {
    for (const k of ['CONTAINERD_2_4', 'CONTAINERD_2_3', 'CONTAINERD_1_7']) expect(V[k], k).toMatch(/^v\d+\.\d+\.\d+$/);
    expect(V.CONTAINERD_2_4!.startsWith('v2.4.')).toBe(true);
    expect(V.CONTAINERD_2_3!.startsWith('v2.3.')).toBe(true);
    expect(V.CONTAINERD_1_7!.startsWith('v1.7.')).toBe(true);
  });

  for (const c of cases) {
    it(`${c.file} requires ${c.path} at ${c.key}, and its sum file has it`, () => {
      const mod = parseGoMod(read(c.file));
      expect(mod.require.get(c.path)).toBe(V[c.key]);
      expect(mod.replace.get('tsblock.dev/test/harness')).toBe('../harness');
      const sum = read(c.sum);
      expect(sum).toContain(`${c.path} ${V[c.key]} h1:`);
      expect(sum).toContain(`${c.path} ${V[c.key]}/go.mod h1:`);
    });
  }

  it('go.2.3.mod is the same module as go.mod (one source, two containerd versions)', () => {
    expect(parseGoMod(read('go/ctrd2/go.2.3.mod')).module).toBe(parseGoMod(read('go/ctrd2/go.mod')).module);
  });

  it('no module needs a newer Go than GO_TOOLCHAIN (what scripts/ensure-go.sh provides)', () => {
    expect(V.GO_TOOLCHAIN, 'GO_TOOLCHAIN').toMatch(/^go\d+\.\d+(\.\d+)?$/);
    const num = (v: string) => v.split('.').map(Number);
    const le = (a: number[], b: number[]) => {
      for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0);
      return true;
    };
    for (const f of ['go/harness/go.mod', ...cases.map((c) => c.file)]) {
      const m = /^go\s+(\S+)\s*$/m.exec(read(f));
      expect(m, `${f} has a go directive`).not.toBeNull();
      expect(le(num(m![1]!), num(V.GO_TOOLCHAIN!.slice(2))), `${f}: go ${m![1]} <= ${V.GO_TOOLCHAIN}`).toBe(true);
    }
  });

  it('the harness needs nothing but the standard library', () => {
    const mod = parseGoMod(read('go/harness/go.mod'));
    expect(mod.module).toBe('tsblock.dev/test/harness');
    expect([...mod.require.keys()]).toEqual([]);
  });
});
