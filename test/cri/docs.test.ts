// docs/containerd.md's and the README's containerd command blocks, run as written against a private
// containerd (1.x block: Debian's 1.6; 2.x blocks: TSBLOCK_CRI_CONTAINERD or
// install-tools.sh's 2.4) configured with the docs' own config snippet, and a
// `tsblock serve`. What differs from a real node is substituted, and only that:
//   - `systemctl restart containerd` (re)starts the private containerd;
//   - `ctr` talks to its socket, and `ctr images pull` gets --plain-http (the
//     images come from a local docker-registry on 127.0.0.1);
//   - docker.io/library/busybox:latest is that registry's copy of a
//     busybox-based image; tsblock's metrics port 9465 is a free port;
//   - `tsblock VERB` is `node dist/cli.js VERB --root R --socket S`.
// A `# text` line after a command is its expected output (a line matching it,
// spaces collapsed, `/dev/loopN` any loop device, `←…` a remark); `# error: text`
// means the command must fail with text in its output.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxMissing, helloImage } from '../e2e/lib/images.js';
import { registryMissing, startRegistry, type LocalRegistry } from '../e2e/lib/registry.js';
import { mergeToml, snippet, withSocket } from './lib/snippets.js';
import { freePort, leaks, releaseAll, startContainerd, startTsblock, type Containerd, type Tsblock } from './lib/stack.js';
import { CLI, containerdAt, cri2, missing, printDir, requireAll, rootMissing, type ContainerdTools } from './lib/tools.js';

const DEFAULT_DOC = 'docs/containerd.md';
const IMAGE = 'docker.io/library/busybox:latest';

interface Step {
  cmd: string;
  expect: string[];
  error?: string;
}

/** stripComment drops a trailing ` # …` outside quotes. */
function stripComment(line: string): string {
  let q = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (q) {
      if (c === q) q = '';
    } else if (c === "'" || c === '"') q = c;
    else if (c === '#' && i > 0 && /\s/.test(line[i - 1]!)) return line.slice(0, i).trimEnd();
  }
  return line.trimEnd();
}

export function parseSteps(text: string): Step[] {
  const steps: Step[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#')) {
      const last = steps[steps.length - 1];
      if (!last) throw new Error(`expectation before any command: ${line}`);
      const e = line.slice(1).split('←')[0]!.trim();
      const m = /^error:\s*(.*)$/.exec(e);
      if (m) last.error = m[1]!;
      else last.expect.push(e);
      continue;
    }
    steps.push({ cmd: stripComment(line), expect: [] });
  }
  return steps;
}

function expectRe(e: string): RegExp {
  const esc = e.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\/dev\/loopN/g, '/dev/loop\\d+').replace(/\s+/g, '\\s+');
  return new RegExp(`^${esc}$`);
}

interface Env {
  dir: string;
  reg: LocalRegistry;
  ts: Tsblock;
  cd?: Containerd;
  tools: ContainerdTools;
  config: string;
  bin: string;
  port: number;
}

/** setup fills env step by step, so that teardown(env) releases whatever a failed setup started */
async function setup(env: Env, tools: ContainerdTools, tag: string, docConfig: string, v2: boolean): Promise<Env> {
  const dir = fs.mkdtempSync(path.join('/var/tmp', `tsblock-docs-${tag}-`));
  env.dir = dir;
  env.tools = tools;
  fs.mkdirSync(path.join(dir, 'registry'));
  env.reg = await startRegistry(path.join(dir, 'registry'));
  await env.reg.push(await helloImage({ ref: IMAGE }));
  env.port = await freePort();
  env.ts = await startTsblock(dir, { metrics: `127.0.0.1:${env.port}` });
  const base = [
    `version = ${v2 ? 3 : 2}`,
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    // no CRI for ctr's commands (and no machine-wide NRI socket on 2.x)
    `disabled_plugins = ["io.containerd.grpc.v1.cri"${v2 ? ', "io.containerd.nri.v1.nri"' : ''}]`,
    '[grpc]',
    `  address = "${dir}/containerd.sock"`,
    '[ttrpc]',
    `  address = "${dir}/containerd.sock.ttrpc"`,
    '',
  ].join('\n');
  // the docs' snippet decides the config version; the base only adds paths
  env.config = mergeToml(base.replace(/^version = \d\n/, ''), withSocket(docConfig, env.ts.socket));
  env.bin = path.join(dir, 'bin');
  fs.mkdirSync(env.bin);
  const address = path.join(dir, 'containerd.sock');
  fs.writeFileSync(
    path.join(env.bin, 'ctr'),
    `#!/bin/sh\nif [ "$1" = images ] && [ "$2" = pull ]; then shift 2; exec ${tools.ctr} --address ${address} images pull --plain-http "$@"; fi\nexec ${tools.ctr} --address ${address} "$@"\n`,
    { mode: 0o755 },
  );
  fs.writeFileSync(
    path.join(env.bin, 'tsblock'),
    `#!/bin/sh\nv=$1; shift\nexec ${process.execPath} ${CLI} "$v" --root ${env.ts.root} --socket ${env.ts.socket} "$@"\n`,
    { mode: 0o755 },
  );
  return env;
}

async function teardown(env: Env | undefined): Promise<void> {
  if (!env?.dir) return;
  const address = env.cd?.address;
  if (env.cd) {
    for (const c of (await env.cd.ctr(['containers', 'ls', '-q']).catch(() => '')).split('\n').filter(Boolean)) {
      await env.cd.ctr(['tasks', 'rm', '-f', c]).catch(() => undefined);
      await env.cd.ctr(['containers', 'rm', c]).catch(() => undefined);
    }
    await env.cd.stop();
  }
  // tsblock first: releasing under a running tsblock would pull its store away
  await env.ts?.stop();
  await releaseAll(env.dir, address);
  await env.reg?.stop();
  if (leaks(env.dir).length === 0) fs.rmSync(env.dir, { recursive: true, force: true });
  else console.error(`[docs] left ${env.dir}: ${leaks(env.dir).join(', ')}`);
}

async function runStep(env: Env, s: Step): Promise<void> {
  if (s.cmd === 'systemctl restart containerd') {
    if (env.cd) await env.cd.restart();
    else env.cd = await startContainerd(env.tools, env.dir, env.config);
    return;
  }
  if (!env.cd) env.cd = await startContainerd(env.tools, env.dir, env.config);
  const cmd = s.cmd.split(IMAGE).join(`${env.reg.host}/library/busybox:latest`).split('127.0.0.1:9465').join(`127.0.0.1:${env.port}`);
  const r = spawnSync('bash', ['-c', cmd], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, PATH: `${env.bin}:${env.tools.dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` },
  });
  const out = `${r.stdout}${r.stderr}`;
  if (s.error !== undefined) {
    expect(r.status, `${s.cmd} should fail:\n${out}`).not.toBe(0);
    expect(out).toContain(s.error);
    return;
  }
  expect(r.status, `${s.cmd}:\n${out}`).toBe(0);
  const lines = r.stdout.split('\n').map((l) => l.trim());
  for (const e of s.expect) {
    const re = expectRe(e);
    expect(lines.some((l) => re.test(l)), `${s.cmd}: no line matching "${e}" in:\n${r.stdout}`).toBe(true);
  }
}

function block(name: string, tools: ContainerdTools | string, configName: string, v2: boolean, extra?: (env: Env) => Promise<void>, DOC = DEFAULT_DOC): void {
  const why = missing(rootMissing(), typeof tools === 'string' ? tools : undefined, registryMissing(), busyboxMissing());
  if (why && !requireAll) {
    describe.skip(`${DOC} ${name} (skipped: ${why})`, () => {
      it('needs its tools', () => undefined);
    });
    return;
  }
  describe.sequential(`${DOC} ${name}${typeof tools === 'string' ? '' : ` on containerd ${tools.version}`}`, () => {
    if (why) {
      it('has its tools (CI)', () => {
        throw new Error(why);
      });
      return;
    }
    const env = {} as Env;
    beforeAll(async () => {
      // configName may name another file's snippet: "docs/containerd.md#2.x-config"
      const [cfgDoc, cfgName] = configName.includes('#') ? configName.split('#') as [string, string] : [DOC, configName];
      await setup(env, tools as ContainerdTools, name, snippet(cfgDoc, cfgName), v2);
    });
    afterAll(() => teardown(env));
    for (const s of parseSteps(snippet(DOC, name))) {
      it(`$ ${s.cmd}`, () => runStep(env, s));
    }
    if (extra) it('leaves tsblock empty once the images are gone, and nothing mounted', () => extra(env));
  });
}

/** after a block: remove what it made, and containerd's GC must reach tsblock. */
async function drained(env: Env): Promise<void> {
  const cd = env.cd!;
  for (const c of (await cd.ctr(['containers', 'ls', '-q'])).split('\n').filter(Boolean)) {
    await cd.ctr(['tasks', 'rm', '-f', c]).catch(() => undefined);
    await cd.ctr(['containers', 'rm', c]);
  }
  for (const i of (await cd.ctr(['images', 'ls', '-q'])).split('\n').filter(Boolean)) await cd.ctr(['images', 'rm', '--sync', i]);
  const deadline = Date.now() + 30_000;
  let keys = await env.ts.keys();
  while (keys.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    keys = await env.ts.keys();
  }
  expect(keys).toEqual([]);
  const address = cd.address;
  await cd.stop();
  env.cd = undefined;
  // tsblock still runs here: its own store is allowed, nothing else
  expect(leaks(env.dir, address, { storeOf: env.ts.root })).toEqual([]);
}

const d16 = printDir('containerd-1.6');
const t16: ContainerdTools | string = (d16 && containerdAt(d16)) || 'Debian containerd 1.6 not installed (scripts/install-deps.sh --test)';
const t2 = cri2();

block('1.x-commands', t16, '1.x-config', false, drained);
block('2.x-commands', t2, '2.x-config', true, drained);
block('2.x-without-unpack-config', t2, '1.x-config', true, drained);
// The README's containerd section: the proxy table on containerd 1.6, and the
// same commands on 2.x with the unpack_config docs/containerd.md adds there.
block('readme-commands', t16, 'readme-config', false, drained, 'README.md');
block('readme-commands', t2, 'docs/containerd.md#2.x-config', true, drained, 'README.md');
