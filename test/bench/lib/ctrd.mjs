// ctrd: a local registry (Debian's docker-registry on 127.0.0.1) and private
// containerd instances for the real-image benchmark, in plain JS (the bench
// runs under node without a TS loader; test/e2e/lib/{registry,containerd}.ts
// are the e2e's equivalents, with the same config shapes).

import { spawn, execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { nowMs, sleep } from './util.mjs';

export const REGISTRY_BIN = '/usr/bin/docker-registry';
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

function stopper(proc, graceMs) {
  const exited = new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', () => r())));
  return async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    }
  };
}

/** startRegistry runs docker-registry with config and storage under dir; {host, stop, push(image, repo, tag)}. */
export async function startRegistry(dir) {
  if (!existsSync(REGISTRY_BIN)) throw new Error(`${REGISTRY_BIN} not found (apt-get install docker-registry)`);
  mkdirSync(join(dir, 'storage'), { recursive: true });
  const log = join(dir, 'registry.log');
  for (let attempt = 0; attempt < 3; attempt++) {
    const host = `127.0.0.1:${await freePort()}`;
    const cfg = join(dir, 'config.yml');
    writeFileSync(cfg, ['version: 0.1', 'log:', '  level: warn', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'storage')}`,
      '  delete:', '    enabled: true', 'http:', `  addr: ${host}`, ''].join('\n'));
    const fd = openSync(log, 'a');
    const proc = spawn(REGISTRY_BIN, ['serve', cfg], { stdio: ['ignore', fd, fd], env: { PATH: SYSTEM_PATH } });
    closeSync(fd);
    const stop = stopper(proc, 10000);
    const base = `http://${host}`;
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline && proc.exitCode === null) {
      try {
        if ((await fetch(`${base}/v2/`)).status === 200) return { host, log, stop, push: (img, repo, tag) => push(base, img, repo, tag) };
      } catch {
        /* not listening yet */
      }
      await sleep(100);
    }
    await stop();
  }
  throw new Error(`docker-registry did not come up: ${readFileSync(log, 'utf8').slice(-1500)}`);
}

async function ok(res, what, want) {
  if (!want.includes(res.status)) throw new Error(`registry: ${what}: HTTP ${res.status} ${(await res.text().catch(() => '')).slice(0, 500)}`);
  return res;
}

/** push uploads an image from realimage.mjs (blobs from files, monolithic PUT) and its manifest as repo:tag. */
async function push(base, img, repo, tag) {
  for (const b of img.blobs) {
    if ((await fetch(`${base}/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' })).status === 200) continue;
    const start = await ok(await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' }), `start upload ${b.digest}`, [202]);
    const loc = new URL(start.headers.get('location') ?? '', `${base}/`);
    loc.searchParams.set('digest', b.digest);
    const body = readFileSync(b.path);
    await ok(await fetch(loc, { method: 'PUT', body, headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(body.length) } }), `upload ${b.digest}`, [201]);
  }
  await ok(await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: img.manifest, headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' } }), `manifest ${repo}:${tag}`, [201]);
  return `${base.slice('http://'.length)}/${repo}:${tag}`;
}

/** containerdBins finds a release's binaries in dir: {dir, containerd, ctr, version, major} or {reason}. */
export function containerdBins(dir) {
  const p = (n) => join(dir, n);
  for (const n of ['containerd', 'ctr', 'containerd-shim-runc-v2']) if (!existsSync(p(n))) return { reason: `${p(n)} not found` };
  const out = execFileSync(p('containerd'), ['--version'], { encoding: 'utf8', timeout: 20000 });
  const m = /\bv?(\d+)\.(\d+)\.(\d+)/.exec(out.split(' ').slice(2).join(' ')) ?? /\bv?(\d+)\.(\d+)\.(\d+)/.exec(out);
  if (!m) return { reason: `no version in "${out.trim()}"` };
  return { bins: { dir, containerd: p('containerd'), ctr: p('ctr'), version: m[0].replace(/^v/, ''), major: Number(m[1]) } };
}

/** containerdConfig: version 2 (1.x) or 3 (2.x), CRI/NRI off, proxy plugins, 2.x unpack_config and diff order. */
export function containerdConfig({ major, root, state, address, proxies = [], unpack, diffOrder }) {
  const q = JSON.stringify;
  const v2 = major >= 2;
  const disabled = v2
    ? ['io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.images', 'io.containerd.cri.v1.runtime', 'io.containerd.nri.v1.nri', 'io.containerd.podsandbox.controller.v1.podsandbox']
    : ['io.containerd.grpc.v1.cri'];
  const lines = [`version = ${v2 ? 3 : 2}`, `root = ${q(root)}`, `state = ${q(state)}`, `disabled_plugins = [${disabled.map(q).join(', ')}]`, '',
    '[grpc]', `  address = ${q(address)}`, '[ttrpc]', `  address = ${q(`${address}.ttrpc`)}`, '', '[proxy_plugins]'];
  for (const p of proxies) lines.push(`  [proxy_plugins.${q(p.name)}]`, `    type = ${q(p.type)}`, `    address = ${q(p.address)}`);
  if (v2 && unpack?.length) {
    for (const u of unpack) {
      lines.push('', '[[plugins."io.containerd.transfer.v1.local".unpack_config]]', '  platform = "linux/amd64"', `  snapshotter = ${q(u.snapshotter)}`);
      if (u.differ) lines.push(`  differ = ${q(u.differ)}`);
    }
  }
  if (v2 && diffOrder?.length) lines.push('', '[plugins."io.containerd.service.v1.diff-service"]', `  default = [${diffOrder.map(q).join(', ')}]`);
  // TSBLOCK_BENCH_CONTAINERD_DEBUG=1: containerd logs at debug, e.g. its "diff applied" line with each layer's apply time (d=).
  if (process.env.TSBLOCK_BENCH_CONTAINERD_DEBUG === '1') lines.push('', '[debug]', '  level = "debug"');
  return lines.join('\n') + '\n';
}

/** Containerd is one private containerd under work (root and state given: they may live on another filesystem; env: added to its and ctr's environment). */
export class Containerd {
  constructor({ work, bins, root, namespace = 'bench', config, env = {} }) {
    this.bins = bins;
    this.extraEnv = env;
    this.namespace = namespace;
    this.root = root;
    this.state = join(work, 'state');
    this.address = join(work, 'containerd.sock');
    this.configFile = join(work, 'config.toml');
    this.log = join(work, 'containerd.log');
    this.tmp = join(work, 'tmp');
    mkdirSync(this.tmp, { recursive: true });
    mkdirSync(root, { recursive: true });
    writeFileSync(this.configFile, containerdConfig({ major: bins.major, root, state: this.state, address: this.address, ...config }));
  }

  get env() {
    return { PATH: `${this.bins.dir}:${SYSTEM_PATH}`, TMPDIR: this.tmp, HOME: process.env.HOME ?? '/root', ...this.extraEnv };
  }

  async start() {
    const fd = openSync(this.log, 'a');
    this.proc = spawn(this.bins.containerd, ['--config', this.configFile], { stdio: ['ignore', fd, fd], env: this.env });
    closeSync(fd);
    this.stop = stopper(this.proc, 20000);
    const deadline = Date.now() + 30000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`containerd exited: ${readFileSync(this.log, 'utf8').slice(-1500)}`);
      if (existsSync(this.address) && (await this.ctr(['version'], { check: false })).code === 0) return;
      if (Date.now() > deadline) throw new Error(`containerd did not answer in 30 s: ${readFileSync(this.log, 'utf8').slice(-1500)}`);
      await sleep(100);
    }
  }

  /** ctr runs this release's ctr; resolves {code, stdout, stderr, ms}; throws on failure unless check=false. */
  ctr(args, { check = true, timeoutMs = 600000 } = {}) {
    return new Promise((resolve, reject) => {
      const t0 = nowMs();
      const p = spawn(this.bins.ctr, ['--address', this.address, '--namespace', this.namespace, ...args], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(timer);
        const r = { code, stdout, stderr, ms: nowMs() - t0 };
        if (check && code !== 0) reject(new Error(`ctr ${args.join(' ')}: exit ${code}: ${`${stdout.split('\n').filter((l) => !/[|]|elapsed/.test(l)).join('\n')}\n${stderr}`.trim().slice(-1500)}`));
        else resolve(r);
      });
    });
  }

  /** removeAll kills and removes every container of the namespace (tasks first). */
  async removeAll() {
    const tasks = (await this.ctr(['tasks', 'ls', '-q'], { check: false })).stdout.split('\n').filter(Boolean);
    await Promise.all(tasks.map((t) => this.ctr(['tasks', 'rm', '-f', t], { check: false })));
    const cs = (await this.ctr(['containers', 'ls', '-q'], { check: false })).stdout.split('\n').filter(Boolean);
    if (cs.length) await this.ctr(['containers', 'rm', ...cs], { check: false });
  }
}
