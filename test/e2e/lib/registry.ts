/**
 * registry runs a real OCI distribution registry (Debian's `docker-registry`
 * package: github.com/distribution/distribution v2) on 127.0.0.1 with a free
 * port, its own config and storage under a directory the caller owns, and
 * pushes BuiltImages to it through the distribution API (blob upload
 * POST + PUT, manifest PUT) with Node's fetch. Plain HTTP: pull with
 * `ctr images pull --plain-http` (crictl/CRI: a registry mirror or
 * `config_path` hosts.toml with `http://` for the host).
 *
 * API:
 * - `registryMissing()`: why no registry can run here (undefined when it can).
 * - `startRegistry(dir)`: starts it (config `dir/config.yml`, storage
 *   `dir/storage`, log `dir/registry.log`); resolves once `GET /v2/` answers.
 *   Returns {host ("127.0.0.1:PORT"), log, push(img, ref?), stop()}.
 * - `push(img, ref?)`: uploads the config and layer blobs, then the manifest
 *   under ref's tag (default: img.ref's path and tag re-homed on host) and
 *   returns the reference to pull ("127.0.0.1:PORT/library/e2e-hello:latest").
 * - `stop()`: SIGTERM (SIGKILL after 10 s), waits for the process; idempotent.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { imageFiles, type BuiltImage } from './images.js';

/** REGISTRY_BIN is the Debian package's binary. */
export const REGISTRY_BIN = '/usr/bin/docker-registry';

/** LocalRegistry is a running registry. */
export interface LocalRegistry {
  host: string;
  log: string;
  push(img: BuiltImage, ref?: string): Promise<string>;
  stop(): Promise<void>;
}

/** registryMissing explains why startRegistry cannot work here. */
export function registryMissing(): string | undefined {
  if (!fs.existsSync(REGISTRY_BIN)) return `${REGISTRY_BIN} not found (apt-get install docker-registry)`;
  return undefined;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** repoPath turns "docker.io/library/x:tag" or "x:tag" into ["library/x", "tag"]. */
export function repoPath(ref: string): [string, string] {
  let rest = ref;
  const first = rest.split('/')[0]!;
  if (rest.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) rest = rest.slice(first.length + 1);
  const at = rest.lastIndexOf(':');
  const [name, tag] = at > rest.lastIndexOf('/') ? [rest.slice(0, at), rest.slice(at + 1)] : [rest, 'latest'];
  return [name.includes('/') ? name : `library/${name}`, tag];
}

async function ok(res: Response, what: string, want: number[]): Promise<Response> {
  if (!want.includes(res.status)) throw new Error(`registry: ${what}: HTTP ${res.status} ${await res.text().catch(() => '')}`.slice(0, 600));
  return res;
}

/** pushImage pushes img to the registry at base ("http://host") as repo:tag. */
export async function pushImage(base: string, repo: string, tag: string, img: BuiltImage): Promise<void> {
  const files = imageFiles(img);
  const index = JSON.parse(files.get('index.json')!.toString()) as { manifests: { digest: string; mediaType: string }[] };
  const { digest: mdigest, mediaType } = index.manifests[0]!;
  for (const [rel, body] of files) {
    if (!rel.startsWith('blobs/sha256/')) continue;
    const digest = `sha256:${rel.slice('blobs/sha256/'.length)}`;
    if (digest === mdigest) continue;
    const head = await fetch(`${base}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
    if (head.status === 200) continue;
    const start = await ok(await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' }), `start upload of ${digest}`, [202]);
    const loc = new URL(start.headers.get('location') ?? '', `${base}/`);
    loc.searchParams.set('digest', digest);
    await ok(
      await fetch(loc, { method: 'PUT', body: body, headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(body.length) } }),
      `upload ${digest}`,
      [201],
    );
  }
  const manifest = files.get(`blobs/sha256/${mdigest.slice(7)}`)!;
  await ok(await fetch(`${base}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { 'Content-Type': mediaType } }), `put manifest ${repo}:${tag}`, [201]);
}

/** startRegistry starts a registry with its config and storage under dir. */
export async function startRegistry(dir: string): Promise<LocalRegistry> {
  const why = registryMissing();
  if (why) throw new Error(why);
  fs.mkdirSync(path.join(dir, 'storage'), { recursive: true });
  const log = path.join(dir, 'registry.log');
  let lastErr = '';
  // A free port can be taken between freePort() and the registry's bind: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const cfg = path.join(dir, 'config.yml');
    fs.writeFileSync(
      cfg,
      [
        'version: 0.1',
        'log:',
        '  level: info',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(dir, 'storage')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${host}`,
        '',
      ].join('\n'),
    );
    const fd = fs.openSync(log, 'a');
    const proc: ChildProcess = spawn(REGISTRY_BIN, ['serve', cfg], { stdio: ['ignore', fd, fd], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    fs.closeSync(fd);
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    const stop = async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
    };
    const base = `http://${host}`;
    const deadline = Date.now() + 20_000;
    let up = false;
    while (Date.now() < deadline && proc.exitCode === null) {
      try {
        const r = await fetch(`${base}/v2/`);
        if (r.status === 200) {
          up = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (up) {
      return {
        host,
        log,
        stop,
        async push(img, ref) {
          const [repo, tag] = repoPath(ref ?? img.ref);
          await pushImage(base, repo, tag, img);
          return `${host}/${repo}:${tag}`;
        },
      };
    }
    await stop();
    lastErr = fs.readFileSync(log, 'utf8').slice(-1500);
  }
  throw new Error(`docker-registry did not come up: ${lastErr}`);
}
