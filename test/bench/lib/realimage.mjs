// realimage: builds, offline and once, a realistic 5-layer Debian image as
// gzip layer blobs + config + manifest under /var/cache/tsblock-bench (never
// in the work tree), for test/bench/image.mjs to push to a local registry:
//
//   1. a debootstrap --variant=minbase bookworm root (the rootfs tarball is
//      cached as minbase-bookworm-amd64.tar; debootstrap needs Debian's
//      mirror once)
//   2. python3 installed with apt-get in a chroot on an overlay over layer 1;
//      the overlay's upper dir is the layer (whiteouts → .wh. entries,
//      opaque dirs → .wh..wh..opq)
//   3. deletions and links: an opaque whiteout of /usr/share/doc with one
//      file re-added, whiteouts of files of layers 1 and 2, 200 symlinks and
//      200 hardlinks
//   4. one 200 MiB file (random: it does not compress)
//   5. 5000 small files (1–16 KiB) in 50 directories
//
// The build needs root (chroot, overlay and proc mounts, all released in
// `finally`). The harness shells out to tar/mount/chroot: it is not a
// snapshotter code path.

import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tarStream from 'tar-stream';

export const CACHE = process.env.TSBLOCK_BENCH_CACHE || '/var/cache/tsblock-bench';
export const IMAGE_DIR = join(CACHE, 'image-v1');
const FULL_IMAGE_DIR = IMAGE_DIR;
/**
 * SMALL_IMAGE_DIR holds the small variant (buildRealImage({ small: true })), for machines where
 * the full image takes too long (the qemu VM of test/bench/image-devmapper.mjs): 4 layers from
 * the same builder: the minbase root, deletions and links (over minbase: no python3 layer), a
 * 32 MiB file instead of 200 MiB, the same 5000 small files. No apt-get in a chroot.
 */
export const SMALL_IMAGE_DIR = join(CACHE, 'image-small-v1');
const MIRROR = process.env.TSBLOCK_BENCH_MIRROR || 'http://deb.debian.org/debian';
const SUITE = 'bookworm';

const run = (cmd, args, opts = {}) => String(execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28, ...opts }) ?? '');
const sha = (b) => createHash('sha256').update(b).digest('hex');
const log = (m) => console.error(`[image] ${m}`);

/** minbaseTar returns the cached minbase rootfs tarball, running debootstrap when it is missing. */
export function minbaseTar() {
  const tar = join(CACHE, `minbase-${SUITE}-amd64.tar`);
  if (existsSync(tar)) return tar;
  mkdirSync(CACHE, { recursive: true });
  const dir = join(CACHE, 'minbase.tmp');
  rmSync(dir, { recursive: true, force: true });
  log(`debootstrap --variant=minbase ${SUITE} from ${MIRROR} (once; cached as ${tar})`);
  run('debootstrap', ['--variant=minbase', SUITE, dir, MIRROR], { stdio: ['ignore', 'ignore', 'inherit'] });
  run('tar', ['--numeric-owner', '--xattrs', "--xattrs-include=*", '-C', dir, '-cf', `${tar}.tmp`, '.']);
  renameSync(`${tar}.tmp`, tar);
  rmSync(dir, { recursive: true, force: true });
  return tar;
}

function hashing() {
  const h = createHash('sha256');
  let size = 0;
  const t = new Transform({
    transform(chunk, _enc, cb) {
      h.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  return { t, digest: () => h.digest('hex'), size: () => size };
}

/** writeLayer streams entries (async generator of [header, body]) into a gzip blob; returns its descriptor. */
async function writeLayer(blobsDir, gen) {
  const pack = tarStream.pack();
  const raw = hashing();
  const gz = hashing();
  const tmp = join(blobsDir, `layer-${process.pid}.tmp`);
  const done = pipeline(pack, raw.t, createGzip({ level: 6 }), gz.t, createWriteStream(tmp));
  for await (const [header, body] of gen) {
    await new Promise((res, rej) => pack.entry({ mtime: new Date(1700000000000), uid: 0, gid: 0, ...header }, body, (err) => (err ? rej(err) : res())));
  }
  pack.finalize();
  await done;
  const digest = gz.digest();
  renameSync(tmp, join(blobsDir, digest));
  return { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${digest}`, size: gz.size(), diffId: `sha256:${raw.digest()}` };
}

/**
 * dirEntries walks a directory tree (sorted, parents first) as tar entries.
 * With upper=true it is an overlay upper dir: char 0:0 → whiteout, and the
 * directories in `opaque` get a .wh..wh..opq entry.
 */
async function* dirEntries(root, { upper = false, opaque = new Set() } = {}) {
  const links = new Map();
  function* walk(rel) {
    const names = readdirSync(join(root, rel)).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const p = join(root, r);
      const st = lstatSync(p, { bigint: false });
      const base = { name: r, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
      if (st.isDirectory()) {
        yield [{ ...base, name: `${r}/`, type: 'directory' }, undefined];
        if (opaque.has(r)) yield [{ name: `${r}/.wh..wh..opq`, mode: 0o644 }, Buffer.alloc(0)];
        yield* walk(r);
      } else if (st.isSymbolicLink()) {
        yield [{ ...base, type: 'symlink', linkname: readlinkSync(p) }, undefined];
      } else if (st.isCharacterDevice() && upper && st.rdev === 0) {
        yield [{ name: rel ? `${rel}/.wh.${n}` : `.wh.${n}`, mode: 0o644 }, Buffer.alloc(0)];
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        // debootstrap's /dev nodes: image layers carry none (the runtime makes /dev)
        continue;
      } else if (st.isFIFO()) {
        yield [{ ...base, type: 'fifo' }, undefined];
      } else if (st.isFile()) {
        if (st.nlink > 1) {
          const first = links.get(st.ino);
          if (first) {
            yield [{ ...base, type: 'link', linkname: first }, undefined];
            continue;
          }
          links.set(st.ino, r);
        }
        yield [base, readFileSync(p)];
      }
      // sockets are not stored in layers
    }
  }
  yield* walk('');
}

/** opaqueDirs lists an overlay upper dir's opaque directories (trusted.overlay.opaque=y). */
function opaqueDirs(upper) {
  let out = '';
  try {
    out = run('getfattr', ['-R', '-P', '--absolute-names', '-n', 'trusted.overlay.opaque', upper]);
  } catch (err) {
    out = String(err.stdout ?? ''); // getfattr exits 1 when some file lacks the attribute
  }
  const dirs = new Set();
  let file;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) file = line.slice(8);
    else if (/^trusted\.overlay\.opaque="y"/.test(line) && file) dirs.add(file.slice(upper.length + 1));
  }
  return dirs;
}

/** packageLayer installs python3 in a chroot on an overlay over base; returns the upper dir's opaque set. */
function installPython(base, work) {
  const up = join(work, 'up');
  const wk = join(work, 'wk');
  const merged = join(work, 'merged');
  for (const d of [up, wk, merged]) mkdirSync(d, { recursive: true });
  run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${base},upperdir=${up},workdir=${wk}`, merged]);
  let procMounted = false;
  try {
    copyFileSync('/etc/resolv.conf', join(merged, 'etc', 'resolv.conf'));
    run('mount', ['-t', 'proc', 'proc', join(merged, 'proc')]);
    procMounted = true;
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' };
    log('chroot apt-get install python3');
    run('chroot', [merged, 'apt-get', 'update', '-qq'], { env });
    run('chroot', [merged, 'apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'python3'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    run('chroot', [merged, 'apt-get', 'clean'], { env });
    rmSync(join(merged, 'var', 'lib', 'apt', 'lists'), { recursive: true, force: true });
    mkdirSync(join(merged, 'var', 'lib', 'apt', 'lists', 'partial'), { recursive: true });
  } finally {
    if (procMounted) run('umount', [join(merged, 'proc')]);
    run('umount', [merged]);
  }
  return { up, opaque: opaqueDirs(up) };
}

/** deletionsLayer: whiteouts of files that exist below, an opaque dir, symlinks and hardlinks. */
async function* deletionsEntries(base, up) {
  const exists = (r) => existsSync(join(base, r)) || existsSync(join(up, r));
  yield [{ name: 'usr/', type: 'directory', mode: 0o755 }];
  yield [{ name: 'usr/share/', type: 'directory', mode: 0o755 }];
  yield [{ name: 'usr/share/doc/', type: 'directory', mode: 0o755 }];
  yield [{ name: 'usr/share/doc/.wh..wh..opq', mode: 0o644 }, Buffer.alloc(0)];
  yield [{ name: 'usr/share/doc/README.bench', mode: 0o644 }, Buffer.from('docs were removed by layer 3\n')];
  for (const r of ['usr/share/info', 'usr/share/man', 'usr/share/lintian', 'usr/share/locale']) {
    if (exists(r)) yield [{ name: r.replace(/([^/]+)$/, '.wh.$1'), mode: 0o644 }, Buffer.alloc(0)];
  }
  yield [{ name: 'etc/', type: 'directory', mode: 0o755 }];
  for (const r of ['etc/motd', 'etc/issue.net', 'etc/debian_version.bak']) if (exists(r)) yield [{ name: r.replace(/([^/]+)$/, '.wh.$1'), mode: 0o644 }, Buffer.alloc(0)];
  const py = (existsSync(join(up, 'usr', 'lib')) ? readdirSync(join(up, 'usr', 'lib')) : []).find((n) => /^python3\.\d+$/.test(n));
  if (py) {
    yield [{ name: 'usr/lib/', type: 'directory', mode: 0o755 }];
    yield [{ name: `usr/lib/${py}/`, type: 'directory', mode: 0o755 }];
    for (const f of ['pydoc.py', 'turtle.py', 'this.py']) if (exists(`usr/lib/${py}/${f}`)) yield [{ name: `usr/lib/${py}/.wh.${f}`, mode: 0o644 }, Buffer.alloc(0)];
  }
  yield [{ name: 'opt/', type: 'directory', mode: 0o755 }];
  yield [{ name: 'opt/links/', type: 'directory', mode: 0o755 }];
  yield [{ name: 'opt/links/python', type: 'symlink', linkname: '/usr/bin/python3' }];
  yield [{ name: 'opt/links/etc-rel', type: 'symlink', linkname: '../../etc' }];
  for (let i = 0; i < 200; i++) {
    const name = `opt/links/f${String(i).padStart(3, '0')}`;
    yield [{ name, mode: 0o644 }, Buffer.from(`file ${i}\n`.repeat(1 + (i % 50)))];
    yield [{ name: `${name}.hard`, type: 'link', linkname: name }];
    yield [{ name: `${name}.sym`, type: 'symlink', linkname: `f${String(i).padStart(3, '0')}` }];
  }
}

async function* bigEntries(mib = 200) {
  yield [{ name: 'opt/', type: 'directory', mode: 0o755 }];
  yield [{ name: 'opt/big/', type: 'directory', mode: 0o755 }];
  yield [{ name: 'opt/big/blob.bin', mode: 0o644 }, randomBytes(mib * 1024 * 1024)];
}

async function* smallEntries() {
  yield [{ name: 'opt/', type: 'directory', mode: 0o755 }];
  yield [{ name: 'opt/small/', type: 'directory', mode: 0o755 }];
  for (let d = 0; d < 50; d++) {
    const dir = `opt/small/d${String(d).padStart(2, '0')}`;
    yield [{ name: `${dir}/`, type: 'directory', mode: 0o755 }];
    for (let f = 0; f < 100; f++) {
      const size = 1024 + ((d * 100 + f) * 2654435761) % (15 * 1024);
      // half random, half text: a realistic mix for gzip
      const body = f % 2 ? randomBytes(size) : Buffer.from(`line ${d}/${f} `.repeat(Math.ceil(size / 12)).slice(0, size));
      yield [{ name: `${dir}/f${String(f).padStart(3, '0')}`, mode: 0o644 }, body];
    }
  }
}

/**
 * buildRealImage returns {dir, manifestDigest, manifest (Buffer), config, layers}
 * for the cached image, building it when missing (a few minutes; needs root).
 * small: the 4-layer variant in SMALL_IMAGE_DIR (no python3 layer, a 32 MiB file).
 */
export async function buildRealImage({ small = false } = {}) {
  const IMAGE_DIR = small ? SMALL_IMAGE_DIR : FULL_IMAGE_DIR;
  const meta = join(IMAGE_DIR, 'image.json');
  if (existsSync(meta)) return loadImage(IMAGE_DIR);
  for (const [tool, pkg] of [['debootstrap', 'debootstrap'], ['getfattr', 'attr'], ['chroot', 'coreutils'], ['tar', 'tar']]) {
    const found = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, tool)));
    if (!found && !(tool === 'debootstrap' && existsSync(join(CACHE, `minbase-${SUITE}-amd64.tar`)))) {
      throw new Error(`building the bench image needs ${tool} (apt-get install ${pkg})`);
    }
  }
  const tar = minbaseTar();
  const blobs = join(IMAGE_DIR, 'blobs');
  rmSync(IMAGE_DIR, { recursive: true, force: true });
  mkdirSync(blobs, { recursive: true });
  const work = mkdtempSync('/var/tmp/bench-image-build-');
  try {
    const base = join(work, 'base');
    mkdirSync(base);
    run('tar', ['--numeric-owner', '--xattrs', "--xattrs-include=*", '-C', base, '-xpf', tar]);
    // as Debian's own images: no package lists or downloaded .debs in the base layer
    for (const d of ['var/lib/apt/lists', 'var/cache/apt/archives']) {
      rmSync(join(base, d), { recursive: true, force: true });
      mkdirSync(join(base, d, 'partial'), { recursive: true });
    }
    for (const f of readdirSync(join(base, 'var/cache/apt')).filter((n) => n.endsWith('.bin'))) rmSync(join(base, 'var/cache/apt', f));
    const layers = [];
    log('layer 1: minbase');
    layers.push(await writeLayer(blobs, dirEntries(base)));
    let up = join(work, 'no-upper');
    if (!small) {
      const p = installPython(base, work);
      up = p.up;
      log(`layer 2: python3 (${p.opaque.size} opaque dirs)`);
      layers.push(await writeLayer(blobs, dirEntries(up, { upper: true, opaque: p.opaque })));
    }
    log('layer: deletions and links');
    layers.push(await writeLayer(blobs, deletionsEntries(base, up)));
    log(`layer: a ${small ? 32 : 200} MiB file`);
    layers.push(await writeLayer(blobs, bigEntries(small ? 32 : 200)));
    log('layer: 5000 small files');
    layers.push(await writeLayer(blobs, smallEntries()));
    const config = Buffer.from(JSON.stringify({
      architecture: 'amd64', os: 'linux',
      config: { Cmd: ['/bin/bash'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }));
    writeFileSync(join(blobs, sha(config)), config);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
      layers: layers.map(({ diffId, ...l }) => l),
    }));
    writeFileSync(join(blobs, sha(manifest)), manifest);
    writeFileSync(meta, JSON.stringify({ manifestDigest: `sha256:${sha(manifest)}`, layers }, null, 1));
  } catch (err) {
    rmSync(IMAGE_DIR, { recursive: true, force: true });
    throw err;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return loadImage(IMAGE_DIR);
}

function loadImage(IMAGE_DIR) {
  const meta = JSON.parse(readFileSync(join(IMAGE_DIR, 'image.json'), 'utf8'));
  const manifest = readFileSync(join(IMAGE_DIR, 'blobs', meta.manifestDigest.slice(7)));
  const m = JSON.parse(manifest.toString());
  return {
    dir: IMAGE_DIR,
    manifestDigest: meta.manifestDigest,
    manifest,
    blobs: [m.config, ...m.layers].map((d) => ({ digest: d.digest, size: d.size, path: join(IMAGE_DIR, 'blobs', d.digest.slice(7)) })),
    layers: meta.layers,
    compressedBytes: m.layers.reduce((a, l) => a + l.size, 0),
  };
}
