// oci reads an OCI image layout (image-spec image-layout.md) from a
// directory or from a tar archive of one (what `ctr images export` and
// `docker save` ≥ 25 write): index.json → image index or manifest →
// config (rootfs.diff_ids) and layer descriptors. Blobs are addressed as
// blobs/<alg>/<hex>. A tar archive is first unpacked into a temporary
// directory (only index.json, oci-layout and blobs/), because layers must be
// read by digest in chain order while a tar can only be read front to back.

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { InvalidArgumentError, NotFoundError } from '../errdefs.js';
import { assertDigest, chainIds } from '../apply/chain.js';

/** Descriptor is an OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture?: string; os?: string; variant?: string };
}

/** ImageLayer is one layer of an image, with everything unpacking needs. */
export interface ImageLayer {
  descriptor: Descriptor;
  diffId: string;
  chainId: string;
  /** blobPath is the layer blob's file inside the layout. */
  blobPath: string;
}

/** Image is one manifest of the layout resolved to its layers. */
export interface Image {
  /** name is the image reference from the index annotations ("" when none). */
  name: string;
  manifestDigest: string;
  layers: ImageLayer[];
}

/** OciLayout is an opened layout; close() removes the temporary copy of an archive. */
export interface OciLayout {
  dir: string;
  images: Image[];
  close(): Promise<void>;
}

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const MANIFEST_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);
const NAME_ANNOTATIONS = ['io.containerd.image.name', 'org.opencontainers.image.ref.name'];

const GO_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** hostPlatform is this machine's OCI os/architecture. */
export function hostPlatform(): { os: string; architecture: string } {
  return { os: 'linux', architecture: GO_ARCH[process.arch] ?? process.arch };
}

/** blobPath is where a digest lives inside a layout directory. */
export function blobPath(dir: string, digest: string): string {
  assertDigest(digest, 'blob digest');
  const [alg, hex] = digest.split(':') as [string, string];
  return path.join(dir, 'blobs', alg, hex);
}

async function readJson<T>(file: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${what} not found (${file})`);
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new InvalidArgumentError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/** extractLayoutArchive unpacks the layout files of a tar archive into dir (names are checked, never followed). */
export async function extractLayoutArchive(archive: string, dir: string): Promise<void> {
  const ex = tar.extract();
  ex.on('entry', (header, stream, next) => {
    const name = path.posix.normalize(header.name).replace(/^\.\//, '');
    const wanted = header.type === 'file' && (name === 'index.json' || name === 'oci-layout' || /^blobs\/[a-z0-9]+\/[0-9a-f]{64}$/.test(name));
    if (!wanted) {
      stream.on('end', next).resume();
      return;
    }
    const out = path.join(dir, name);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    pipeline(stream, fs.createWriteStream(out, { flags: 'wx' })).then(() => next(), next);
  });
  await pipeline(fs.createReadStream(archive), ex);
}

/**
 * openLayout opens a layout directory or archive and resolves every image in
 * its index (nested indexes are narrowed to the host platform). name selects
 * images whose reference annotation equals it (or ends with ":"+name).
 */
export async function openLayout(source: string, opts: { name?: string; tmpParent?: string } = {}): Promise<OciLayout> {
  const st = await fsp.stat(source).catch((err) => {
    throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? new NotFoundError(`${source} does not exist`) : err;
  });
  let dir = source;
  let tmp: string | undefined;
  if (!st.isDirectory()) {
    tmp = await fsp.mkdtemp(path.join(opts.tmpParent ?? os.tmpdir(), 'tsblock-import-'));
    dir = tmp;
    try {
      await extractLayoutArchive(source, dir);
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw new InvalidArgumentError(`${source}: not a readable OCI archive: ${(err as Error).message}`, { cause: err });
    }
  }
  const close = async (): Promise<void> => {
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  };
  try {
    const index = await readJson<{ manifests?: Descriptor[] }>(path.join(dir, 'index.json'), `${source}: index.json`);
    const images: Image[] = [];
    for (const d of index.manifests ?? []) {
      const name = NAME_ANNOTATIONS.map((a) => d.annotations?.[a]).find((v) => v !== undefined) ?? '';
      if (opts.name !== undefined && name !== opts.name && !name.endsWith(`:${opts.name}`)) continue;
      const m = await resolveManifest(dir, d);
      if (m) images.push(await loadImage(dir, name, m));
    }
    if (images.length === 0) {
      throw new NotFoundError(opts.name !== undefined ? `${source}: no image named ${opts.name}` : `${source}: no image for ${hostPlatform().os}/${hostPlatform().architecture}`);
    }
    return { dir, images, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function resolveManifest(dir: string, d: Descriptor): Promise<Descriptor | undefined> {
  if (MANIFEST_TYPES.has(d.mediaType)) return d;
  if (!INDEX_TYPES.has(d.mediaType)) return undefined;
  const idx = await readJson<{ manifests?: Descriptor[] }>(blobPath(dir, d.digest), `index ${d.digest}`);
  const host = hostPlatform();
  for (const m of idx.manifests ?? []) {
    const p = m.platform;
    if (p && (p.os !== host.os || p.architecture !== host.architecture)) continue;
    const r = await resolveManifest(dir, m);
    if (r) return r;
  }
  return undefined;
}

async function loadImage(dir: string, name: string, d: Descriptor): Promise<Image> {
  const manifest = await readJson<{ config?: Descriptor; layers?: Descriptor[] }>(blobPath(dir, d.digest), `manifest ${d.digest}`);
  if (!manifest.config) throw new InvalidArgumentError(`manifest ${d.digest} has no config`);
  const config = await readJson<{ rootfs?: { diff_ids?: string[] } }>(blobPath(dir, manifest.config.digest), `config ${manifest.config.digest}`);
  const diffIds = config.rootfs?.diff_ids ?? [];
  const layers = manifest.layers ?? [];
  if (diffIds.length !== layers.length) {
    throw new InvalidArgumentError(`image ${name || d.digest}: ${layers.length} layers but ${diffIds.length} diff_ids`);
  }
  const chain = chainIds(diffIds);
  return {
    name,
    manifestDigest: d.digest,
    layers: layers.map((l, i) => ({ descriptor: l, diffId: diffIds[i]!, chainId: chain[i]!, blobPath: blobPath(dir, l.digest) })),
  };
}
