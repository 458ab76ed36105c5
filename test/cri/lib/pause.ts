/**
 * pause pushes the CRI tests' sandbox ("pause") image to the local registry:
 * one gzip layer (static busybox as /bin/busybox, /bin/sleep, /etc/cri-pause)
 * and a config whose Cmd is `/bin/sleep inf`, so the sandbox container keeps
 * running like registry.k8s.io/pause does (unreachable here). Its layer
 * differs from the test images' so its snapshots are told apart.
 *
 * `hostsDir(dir, host)` writes the containerd `config_path` directory
 * (dir/<host>/hosts.toml) that sends pulls from host over plain HTTP.
 */

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildTar, diffIdOf, gzipTar, type LayerEntry } from '../../fixtures/layers/build.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function check(res: Response, what: string, want: number): Promise<Response> {
  if (res.status !== want) throw new Error(`registry: ${what}: HTTP ${res.status} ${(await res.text().catch(() => '')).slice(0, 400)}`);
  return res;
}

async function putBlob(base: string, repo: string, body: Buffer): Promise<string> {
  const digest = sha(body);
  const start = await check(await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' }), 'start upload', 202);
  const loc = new URL(start.headers.get('location') ?? '', `${base}/`);
  loc.searchParams.set('digest', digest);
  await check(await fetch(loc, { method: 'PUT', body, headers: { 'Content-Type': 'application/octet-stream' } }), `upload ${digest}`, 201);
  return digest;
}

/** pushPause pushes the pause image as host/library/cri-pause:1 and returns that reference. */
export async function pushPause(host: string, busybox = '/bin/busybox'): Promise<string> {
  const entries: LayerEntry[] = [
    { name: 'bin/', type: 'directory', mode: 0o755 },
    { name: 'bin/busybox', type: 'file', content: fs.readFileSync(busybox), mode: 0o755 },
    { name: 'bin/sleep', type: 'symlink', linkname: 'busybox' },
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
    { name: 'etc/', type: 'directory', mode: 0o755 },
    { name: 'etc/cri-pause', type: 'file', content: 'tsblock CRI tests sandbox image\n', mode: 0o644 },
    ...['dev/', 'proc/', 'sys/'].map((n): LayerEntry => ({ name: n, type: 'directory', mode: 0o755 })),
  ];
  const t = await buildTar(entries);
  const layer = gzipTar(t);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sleep', 'inf'] },
      rootfs: { type: 'layers', diff_ids: [diffIdOf(t)] },
    }),
  );
  const base = `http://${host}`;
  const repo = 'library/cri-pause';
  const layerDigest = await putBlob(base, repo, layer);
  const configDigest = await putBlob(base, repo, config);
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
  });
  await check(await fetch(`${base}/v2/${repo}/manifests/1`, { method: 'PUT', body: manifest, headers: { 'Content-Type': mediaType } }), 'put manifest', 201);
  return `${host}/${repo}:1`;
}

/** hostsDir writes dir/<host>/hosts.toml (plain HTTP to host) and returns dir. */
export function hostsDir(dir: string, host: string): string {
  fs.mkdirSync(path.join(dir, host), { recursive: true });
  fs.writeFileSync(
    path.join(dir, host, 'hosts.toml'),
    [`server = "http://${host}"`, '', `[host."http://${host}"]`, '  capabilities = ["pull", "resolve"]', ''].join('\n'),
  );
  return dir;
}
