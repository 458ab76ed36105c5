/**
 * images builds the e2e test images in memory from test/fixtures/layers, with
 * the expected listing of /data computed from the layers themselves (a small
 * model of how OCI layers stack: whiteouts, opaque dirs, hard links).
 *
 * API:
 * - `helloImage({busybox?, ref?})`: one gzip layer: static busybox at
 *   /bin/busybox, a /bin/<applet> symlink per applet, /etc/{hello,passwd,group},
 *   /tmp, /bin/list-data (the listing script below).
 * - `manyImage({layers = 130, busybox?, ref?})`: the hello base plus /data in
 *   layer 0, then one layer per step: /data/layers/fNNN added in each, every
 *   third deletes the previous one by whiteout; single layers add a symlink
 *   and a hard link, delete a whole dir (.wh.gone), make /data/opq opaque
 *   while adding to it, delete then re-create a file with a new mode, change
 *   a file's owner/mode and create a dir owned by 1234:5678, overwrite a file
 *   (top layer). Layer i: i % 10 == 5 uncompressed, else i % 3 == 1 zstd, else
 *   gzip (so every N >= 10 has all three).
 *   `expected` is what `/bin/list-data /data` prints inside a container.
 * - `BuiltImage`: {ref, layers (blob, mediaType, diffId), diffIds, chainIds,
 *   chainId (the top layer's, what the snapshotter must hold committed),
 *   expected?}. `imageFiles(img)` is its OCI layout (path → bytes) and
 *   `writeImageArchive(img, file)` writes the tar `ctr images import` reads.
 * - `busyboxMissing(path)`: why the static busybox is unusable (undefined when fine).
 * - `LIST_DATA`: the busybox sh script (also in the images at /bin/list-data).
 */

import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { buildTar, diffIdOf, gzipTar, zstdTar, type LayerEntry } from '../../fixtures/layers/build.js';
import { layoutFiles, writeLayoutArchive, type OciLayerBlob } from '../../fixtures/layers/oci.js';

/** DEFAULT_BUSYBOX is Debian busybox-static's binary. */
export const DEFAULT_BUSYBOX = '/bin/busybox';

/**
 * LIST_DATA lists a tree one line per path, sorted bytewise:
 *   D <path> <mode> <uid>:<gid>
 *   F <path> <mode> <uid>:<gid> <links> <sha256 of content>
 *   L <path> <uid>:<gid> -> <target>
 * (mode as `stat -c %a`: octal, special bits included, no leading zeros).
 */
export const LIST_DATA = `#!/bin/sh
# list-data: the tree under \$1 (default /data), one line per path, sorted.
root=\${1:-/data}
find "\$root" | LC_ALL=C sort | while read -r p; do
  if [ -L "\$p" ]; then
    echo "L \$p \$(stat -c '%u:%g' "\$p") -> \$(readlink "\$p")"
  elif [ -d "\$p" ]; then
    echo "D \$p \$(stat -c '%a %u:%g' "\$p")"
  elif [ -f "\$p" ]; then
    echo "F \$p \$(stat -c '%a %u:%g %h' "\$p") \$(sha256sum < "\$p" | cut -d' ' -f1)"
  else
    echo "? \$p"
  fi
done
`;

/** BuiltImage is one image, built in memory. */
export interface BuiltImage {
  ref: string;
  layers: OciLayerBlob[];
  diffIds: string[];
  chainIds: string[];
  chainId: string;
  /** expected output of `/bin/list-data /data` in a container (many image only). */
  expected?: string;
}

const MT = {
  tar: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
} as const;

/** chainIdsOf computes the chain IDs of a diffID list (OCI image spec). */
export function chainIdsOf(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

/** busyboxMissing explains why `bb` cannot be the images' busybox. */
export function busyboxMissing(bb = DEFAULT_BUSYBOX): string | undefined {
  if (!fs.existsSync(bb)) return `${bb} not found (apt-get install busybox-static)`;
  try {
    const out = execFileSync('file', ['-L', bb], { encoding: 'utf8' });
    if (/dynamically linked/.test(out)) return `${bb} is dynamically linked (apt-get install busybox-static)`;
  } catch {
    // no file(1): check the ELF header for a PT_INTERP the slow way below
    const b = fs.readFileSync(bb);
    if (b.includes(Buffer.from('/lib64/ld-linux'))) return `${bb} is dynamically linked (apt-get install busybox-static)`;
  }
  return undefined;
}

// ---------------------------------------------------------------- the model

interface Inode {
  type: 'F' | 'D' | 'L';
  mode: number;
  uid: number;
  gid: number;
  content?: Buffer;
  target?: string;
}

/** Model is a root filesystem built from layers in order, as an applier must leave it. */
class Model {
  readonly fs = new Map<string, Inode>();
  remove(p: string): void {
    for (const k of [...this.fs.keys()]) if (k === p || k.startsWith(`${p}/`)) this.fs.delete(k);
  }
  clearBelow(d: string): void {
    for (const k of [...this.fs.keys()]) if (k.startsWith(`${d}/`)) this.fs.delete(k);
  }
  listing(root: string): string {
    const lines: string[] = [];
    const paths = [...this.fs.keys()].filter((k) => k === root || k.startsWith(`${root}/`));
    paths.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const p of paths) {
      const n = this.fs.get(p)!;
      const owner = `${n.uid}:${n.gid}`;
      if (n.type === 'L') lines.push(`L ${p} ${owner} -> ${n.target}`);
      else if (n.type === 'D') lines.push(`D ${p} ${(n.mode & 0o7777).toString(8)} ${owner}`);
      else {
        let links = 0;
        for (const v of this.fs.values()) if (v === n) links++;
        const sum = createHash('sha256').update(n.content ?? Buffer.alloc(0)).digest('hex');
        lines.push(`F ${p} ${(n.mode & 0o7777).toString(8)} ${owner} ${links} ${sum}`);
      }
    }
    return lines.join('\n') + '\n';
  }
}

/** Layer collects one layer's entries and applies each to the model as it goes. */
class Layer {
  readonly entries: LayerEntry[] = [];
  private readonly here = new Set<string>();
  constructor(private readonly m: Model) {}
  private parents(p: string): void {
    const parts = p.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const d = `/${parts.slice(0, i).join('/')}`;
      if (!this.m.fs.has(d) && !this.here.has(d)) this.dir(d);
    }
  }
  private put(p: string, e: LayerEntry, node: Inode | undefined): void {
    this.parents(p);
    this.entries.push({ ...e, name: e.type === 'directory' ? `${p.slice(1)}/` : p.slice(1) });
    this.here.add(p);
    if (node) {
      const old = this.m.fs.get(p);
      if (old && !(old.type === 'D' && node.type === 'D')) this.m.remove(p);
      if (old && old.type === 'D' && node.type === 'D') Object.assign(old, node);
      else this.m.fs.set(p, node);
    }
  }
  dir(p: string, mode = 0o755, uid = 0, gid = 0): this {
    this.put(p, { name: p, type: 'directory', mode, uid, gid }, { type: 'D', mode, uid, gid });
    return this;
  }
  file(p: string, content: Buffer | string, mode = 0o644, uid = 0, gid = 0): this {
    const c = Buffer.from(content);
    this.put(p, { name: p, type: 'file', content: c, mode, uid, gid }, { type: 'F', mode, uid, gid, content: c });
    return this;
  }
  symlink(p: string, target: string): this {
    this.put(p, { name: p, type: 'symlink', linkname: target, mode: 0o777 }, { type: 'L', mode: 0o777, uid: 0, gid: 0, target });
    return this;
  }
  hardlink(p: string, to: string): this {
    const n = this.m.fs.get(to);
    if (!n || n.type !== 'F') throw new Error(`hardlink ${p}: ${to} is not a file`);
    this.parents(p);
    this.entries.push({ name: p.slice(1), type: 'link', linkname: to.slice(1) });
    this.here.add(p);
    this.m.remove(p);
    this.m.fs.set(p, n);
    return this;
  }
  whiteout(p: string): this {
    const i = p.lastIndexOf('/');
    this.entries.push({ name: `${p.slice(1, i + 1)}.wh.${p.slice(i + 1)}` });
    this.m.remove(p);
    return this;
  }
  /** opaque hides what lower layers hold below d; the marker comes before this layer's own children. */
  opaque(d: string): this {
    this.entries.push({ name: `${d.slice(1)}/.wh..wh..opq` });
    this.m.clearBelow(d);
    return this;
  }
}

async function encode(entries: LayerEntry[], kind: keyof typeof MT): Promise<OciLayerBlob> {
  const t = await buildTar(entries);
  const blob = kind === 'gzip' ? gzipTar(t) : kind === 'zstd' ? zstdTar(t) : t;
  return { blob, mediaType: MT[kind], diffId: diffIdOf(t) };
}

function applets(bb: string): string[] {
  const out = execFileSync(bb, ['--list'], { encoding: 'utf8' });
  return [...new Set(out.split(/\s+/).filter((a) => a && a !== 'busybox' && !a.includes('/')))].sort();
}

function base(l: Layer, bb: string): void {
  l.dir('/bin');
  l.file('/bin/busybox', fs.readFileSync(bb), 0o755);
  for (const a of applets(bb)) l.symlink(`/bin/${a}`, 'busybox');
  l.file('/bin/list-data', LIST_DATA, 0o755);
  for (const d of ['/dev', '/proc', '/sys', '/root', '/etc', '/run']) l.dir(d, d === '/root' ? 0o700 : 0o755);
  l.dir('/tmp', 0o1777);
  l.file('/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  l.file('/etc/group', 'root:x:0:\n');
  l.file('/etc/hello', 'hello from the image layer\n');
}

function finish(ref: string, layers: OciLayerBlob[], expected?: string): BuiltImage {
  const diffIds = layers.map((l) => l.diffId);
  const chainIds = chainIdsOf(diffIds);
  return { ref, layers, diffIds, chainIds, chainId: chainIds[chainIds.length - 1]!, expected };
}

/** helloImage builds the one-layer image. */
export async function helloImage(opts: { busybox?: string; ref?: string } = {}): Promise<BuiltImage> {
  const m = new Model();
  const l = new Layer(m);
  base(l, opts.busybox ?? DEFAULT_BUSYBOX);
  return finish(opts.ref ?? 'docker.io/library/e2e-hello:latest', [await encode(l.entries, 'gzip')]);
}

/** manyImage builds the N-layer image (N >= 10) and its expected /data listing. */
export async function manyImage(opts: { layers?: number; busybox?: string; ref?: string } = {}): Promise<BuiltImage> {
  const n = opts.layers ?? 130;
  if (!Number.isInteger(n) || n < 10) throw new Error(`manyImage: layers must be an integer >= 10 (got ${n})`);
  const m = new Model();
  const blobs: OciLayerBlob[] = [];
  const l0 = new Layer(m);
  base(l0, opts.busybox ?? DEFAULT_BUSYBOX);
  l0.dir('/data');
  l0.file('/data/keep', 'base\n');
  l0.file('/data/opq/a', 'a\n').file('/data/opq/b', 'b\n').file('/data/opq/sub/c', 'c\n');
  l0.file('/data/gone/x', 'x\n').file('/data/gone/deeper/y', 'y\n');
  l0.file('/data/chown-me', 'perm\n', 0o644);
  blobs.push(await encode(l0.entries, 'gzip'));
  const phoenix = Math.max(3, Math.floor(n / 4));
  const rmdir = Math.max(phoenix + 3, Math.floor(n / 3));
  const opq = Math.max(rmdir + 1, Math.floor(n / 2));
  const chown = Math.max(opq + 1, n - 2);
  const special = new Map<number, string>([
    [2, 'links'],
    [phoenix, 'phoenix-1'],
    [phoenix + 1, 'phoenix-2'],
    [phoenix + 2, 'phoenix-3'],
    [rmdir, 'rmdir'],
    [opq, 'opaque'],
    [chown, 'chown'],
    [n - 1, 'overwrite'],
  ]);
  for (let i = 1; i < n; i++) {
    const l = new Layer(m);
    const what = special.get(i);
    if (what === 'opaque') l.dir('/data/opq').opaque('/data/opq').file('/data/opq/new', `new in layer ${i}\n`);
    const f = (k: number) => `/data/layers/f${String(k).padStart(3, '0')}`;
    l.file(f(i), `layer ${i}\n`);
    if (i % 3 === 0 && m.fs.has(f(i - 1))) l.whiteout(f(i - 1));
    switch (what) {
      case 'links':
        l.symlink('/data/link-to-keep', 'keep').file('/data/hl-src', 'hardlinked\n').hardlink('/data/hl-dst', '/data/hl-src');
        break;
      case 'phoenix-1':
        l.file('/data/phoenix', 'v1\n');
        break;
      case 'phoenix-2':
        l.whiteout('/data/phoenix');
        break;
      case 'phoenix-3':
        l.file('/data/phoenix', 'v2\n', 0o600);
        break;
      case 'rmdir':
        l.whiteout('/data/gone');
        break;
      case 'chown':
        l.file('/data/chown-me', 'perm\n', 0o640, 1000, 1000).dir('/data/owned', 0o750, 1234, 5678);
        break;
      case 'overwrite':
        l.file('/data/keep', `overwritten in top layer ${i}\n`);
        break;
    }
    blobs.push(await encode(l.entries, i % 10 === 5 ? 'tar' : i % 3 === 1 ? 'zstd' : 'gzip'));
  }
  return finish(opts.ref ?? 'docker.io/library/e2e-many:latest', blobs, m.listing('/data'));
}

/** imageFiles is the image's OCI layout: relative path → bytes (index.json names it ref). */
export function imageFiles(img: BuiltImage): Map<string, Buffer> {
  return layoutFiles(img.ref, img.layers);
}

/** writeImageArchive writes the OCI layout tar `ctr images import` reads. */
export async function writeImageArchive(img: BuiltImage, file: string): Promise<void> {
  await writeLayoutArchive(file, img.ref, img.layers);
}
