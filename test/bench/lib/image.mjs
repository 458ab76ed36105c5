// image: builds (once, cached under /var/tmp) an OCI image-layout tar of 16
// gzip layers of mixed content for `ctr images import`: a static busybox as
// /bin/sh in the first layer, then per layer many small files, a few 1 MiB
// files, directories, symlinks, a hardlink, and whiteouts of earlier files.

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';

const sha = (b) => createHash('sha256').update(b).digest('hex');

function packTar(entries) {
  return new Promise((resolve, reject) => {
    const pack = tarStream.pack();
    const chunks = [];
    pack.on('data', (c) => chunks.push(c));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
    for (const e of entries) {
      const { body, ...header } = e;
      pack.entry({ mode: header.type === 'directory' ? 0o755 : 0o644, mtime: new Date(1700000000000), uid: 0, gid: 0, ...header }, body);
    }
    pack.finalize();
  });
}

function layerEntries(i, busybox) {
  const e = [];
  const d = `data/l${i}`;
  e.push({ name: 'data/', type: 'directory' });
  e.push({ name: `${d}/`, type: 'directory' });
  if (i === 0) {
    e.push({ name: 'bin/', type: 'directory' });
    e.push({ name: 'bin/busybox', body: busybox, mode: 0o755 });
    for (const app of ['sh', 'echo', 'ls', 'cat', 'true']) e.push({ name: `bin/${app}`, type: 'symlink', linkname: 'busybox' });
    for (const dir of ['etc/', 'proc/', 'sys/', 'dev/', 'tmp/', 'root/']) e.push({ name: dir, type: 'directory' });
    e.push({ name: 'etc/passwd', body: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') });
  }
  for (let s = 0; s < 4; s++) {
    e.push({ name: `${d}/sub${s}/`, type: 'directory' });
    for (let f = 0; f < 60; f++) e.push({ name: `${d}/sub${s}/small-${f}.txt`, body: randomBytes(512 + ((f * 97) % 7680)) });
  }
  for (let f = 0; f < 2; f++) e.push({ name: `${d}/big-${f}.bin`, body: randomBytes(1024 * 1024) });
  e.push({ name: `${d}/text.log`, body: Buffer.from('log line\n'.repeat(20000)) }); // compressible
  e.push({ name: `${d}/link`, type: 'symlink', linkname: `sub0/small-0.txt` });
  e.push({ name: `${d}/hard`, type: 'link', linkname: `${d}/sub0/small-1.txt` });
  if (i > 0) {
    e.push({ name: `data/l${i - 1}/sub1/.wh.small-0.txt`, body: Buffer.alloc(0) });
    e.push({ name: `data/l${i - 1}/sub2/.wh..wh..opq`, body: Buffer.alloc(0) });
  }
  return e;
}

/** IMAGE_NAME is the name `ctr images import` gives the bench image. */
export const IMAGE_NAME = 'docker.io/library/tsbench:v1';

/** buildImage returns the path of the cached image tar, building it when missing. */
export async function buildImage(path = '/var/tmp/tsbench-image-v1.tar', layers = 16) {
  if (existsSync(path)) return path;
  const busybox = readFileSync('/usr/bin/busybox');
  const blobs = new Map();
  const diffIds = [];
  const layerDescs = [];
  for (let i = 0; i < layers; i++) {
    const tar = await packTar(layerEntries(i, busybox));
    const gz = gzipSync(tar, { level: 6 });
    diffIds.push(`sha256:${sha(tar)}`);
    blobs.set(sha(gz), gz);
    layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha(gz)}`, size: gz.length });
  }
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux',
    config: { Cmd: ['/bin/sh', '-c', 'echo ready'], Env: ['PATH=/bin'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
  }));
  blobs.set(sha(config), config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
    layers: layerDescs,
  }));
  blobs.set(sha(manifest), manifest);
  const index = {
    schemaVersion: 2,
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length,
      annotations: { 'io.containerd.image.name': IMAGE_NAME, 'org.opencontainers.image.ref.name': 'v1' },
    }],
  };
  const outer = [
    { name: 'oci-layout', body: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { name: 'index.json', body: Buffer.from(JSON.stringify(index)) },
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    ...[...blobs].map(([h, b]) => ({ name: `blobs/sha256/${h}`, body: b })),
  ];
  writeFileSync(`${path}.tmp`, await packTar(outer));
  renameSync(`${path}.tmp`, path);
  return path;
}
