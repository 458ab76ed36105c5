#!/usr/bin/env node
// apply.mjs: layer apply throughput, tsblock's applier against containerd's,
// both writing into the same backend (tsblock blockfile, served by one
// `tsblock serve`). A script, not a timed test.
//
//   node test/bench/apply.mjs [--layers 16] [--scale 1] [--compression gzip|none|zstd]
//                             [--runs 1] [--out FILE.json] [--keep] [--workdir DIR]
//
// Needs root, a built tree (npm run build) and containerd 1.6 + ctr.
// What is measured, in one run on one freshly built image:
//   image        --layers layers (default 16), each ~300 small files (0.5-16 KiB)
//                and 3 large ones (2-8 MiB, random and zero runs), compressed
//                per --compression; written as an OCI archive (for ctr) and an
//                OCI layout dir (for tsblock).
//   tsblock      `tsblock import <layout dir>` through the daemon's socket:
//                Prepare, loop-mount locally, apply, diffID check, Commit, per
//                layer. Time = the import's layer phase (its --json `ms`).
//   containerd   `ctr images import --snapshotter tsblock` (containerd's own
//                applier mounting tsblock's loop mounts) minus
//                `ctr images import --no-unpack` of the same archive in a fresh
//                namespace (content ingest only): the unpack time.
//   MB/s         uncompressed layer bytes (sum of tar sizes) / time.
// Output: one line per measurement, a ratio line, and JSON (stdout's last
// line is the JSON path) with this shape:
//   { bench: "apply", when, host: {cpus, kernel}, image: {layers, compression,
//     uncompressedBytes, compressedBytes, files},
//     runs: [{ tsblock: {ms, mbps}, containerd: {importMs, ingestMs, unpackMs, mbps} }],
//     tsblock: {ms, mbps}, containerd: {unpackMs, mbps},     // medians over runs
//     ratio, ratioOfRuns }                                   // tsblock mbps / containerd mbps (of medians; median of per-run ratios)
// Default JSON path: bench-results/apply-<stamp>.json (--out to change).

import { parseArgs } from 'node:util';
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import tar from 'tar-stream';
import { compress as zstdCompress } from 'zstd-napi';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// TSBLOCK_BENCH_CLI runs another build (before/after figures), as in run.mjs.
const CLI = process.env.TSBLOCK_BENCH_CLI ?? path.join(REPO, 'dist', 'cli.js');
// The daemon and the import must see the same flags only, not a host config.
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'TSBLOCK_CONFIG'));

const { values: opt } = parseArgs({
  options: {
    layers: { type: 'string', default: '16' },
    scale: { type: 'string', default: '1' },
    compression: { type: 'string', default: 'gzip' },
    runs: { type: 'string', default: '1' },
    out: { type: 'string' },
    workdir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  process.stdout.write(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 30).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
  process.exit(0);
}
if (process.getuid() !== 0) {
  console.error('apply.mjs: needs root');
  process.exit(2);
}
if (!fs.existsSync(CLI)) {
  console.error(`apply.mjs: ${CLI} missing: run npm run build`);
  process.exit(2);
}
const LAYERS = Number(opt.layers);
const SCALE = Number(opt.scale);
const RUNS = Number(opt.runs);
const COMPRESSION = opt.compression;
const MEDIA = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  none: 'application/vnd.oci.image.layer.v1.tar',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
}[COMPRESSION];
if (!MEDIA) throw new Error(`--compression must be gzip, none or zstd`);

const sha = (b) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const mb = (bytes, ms) => Math.round((bytes / 1e6 / (ms / 1000)) * 10) / 10;
const now = () => Number(process.hrtime.bigint()) / 1e6;

// A deterministic-enough generator: mixed text-like small files and large
// files alternating random and zero runs (so sparse handling matters too).
function bigContent(size) {
  const b = Buffer.alloc(size);
  for (let off = 0; off < size; off += 1 << 20) {
    if ((off >> 20) % 3 !== 2) randomBytes(Math.min(1 << 20, size - off)).copy(b, off);
  }
  return b;
}
function smallContent(i) {
  const n = 512 + ((i * 7919) % (16 * 1024 - 512));
  const words = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor '.repeat(Math.ceil(n / 70));
  return Buffer.concat([Buffer.from(words.slice(0, n - 16)), randomBytes(8).toString('hex') ? Buffer.from(randomBytes(8).toString('hex')) : Buffer.alloc(0)]);
}

async function buildLayer(l) {
  const pack = tar.pack();
  const chunks = [];
  pack.on('data', (c) => chunks.push(c));
  const done = new Promise((r) => pack.on('end', r));
  let files = 0;
  const add = (h, body) => new Promise((res, rej) => pack.entry(h, body, (e) => (e ? rej(e) : res())));
  await add({ name: `layer${l}/`, type: 'directory', mode: 0o755 });
  const small = Math.round(300 * SCALE);
  for (let i = 0; i < small; i++) {
    const d = `layer${l}/d${i % 20}/`;
    if (i < 20) await add({ name: d, type: 'directory', mode: 0o755 });
    await add({ name: `${d}f${i}.txt`, mode: 0o644 }, smallContent(l * 1000 + i));
    files++;
  }
  for (let i = 0; i < 3; i++) {
    const size = Math.round(((2 + ((l + i) % 4) * 2) << 20) * SCALE);
    await add({ name: `layer${l}/big${i}.bin`, mode: 0o644 }, bigContent(size));
    files++;
  }
  if (l > 0) await add({ name: `layer${l - 1}/d0/.wh.f0.txt`, mode: 0 }, Buffer.alloc(0));
  pack.finalize();
  await done;
  const raw = Buffer.concat(chunks);
  const blob = COMPRESSION === 'gzip' ? zlib.gzipSync(raw, { level: 6 }) : COMPRESSION === 'zstd' ? zstdCompress(raw) : raw;
  return { raw: raw.length, diffId: sha(raw), blob, files };
}

function layoutFiles(name, layers) {
  const files = new Map();
  const put = (b) => {
    const d = sha(b);
    files.set(`blobs/sha256/${d.slice(7)}`, b);
    return d;
  };
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } }));
  const cfg = put(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg, size: config.length },
    layers: layers.map((l) => ({ mediaType: MEDIA, digest: put(l.blob), size: l.blob.length })),
  }));
  const md = put(manifest);
  files.set('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
  files.set('index.json', Buffer.from(JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: md, size: manifest.length, annotations: { 'io.containerd.image.name': name } }],
  })));
  return files;
}

async function writeArchive(file, files) {
  const pack = tar.pack();
  const out = fs.createWriteStream(file);
  const done = new Promise((r, j) => { out.on('finish', r); out.on('error', j); });
  pack.pipe(out);
  for (const [rel, b] of files) pack.entry({ name: rel, size: b.length, mode: 0o644 }, b);
  pack.finalize();
  await done;
}

function waitFor(check, ms, what) {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      let ok = false;
      try { ok = check(); } catch { ok = false; }
      if (ok) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 100);
    };
    tick();
  });
}

function stopProc(p) {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    const t = setTimeout(() => p.kill('SIGKILL'), 15000);
    p.once('exit', () => { clearTimeout(t); resolve(); });
    p.kill('SIGTERM');
  });
}

async function main() {
  const work = opt.workdir ?? fs.mkdtempSync('/var/tmp/tsblock-bench-apply-');
  fs.mkdirSync(work, { recursive: true });
  const procs = [];
  let ok = false;
  try {
    process.stderr.write(`building ${LAYERS} layers (${COMPRESSION}) in ${work}…\n`);
    const layers = [];
    for (let l = 0; l < LAYERS; l++) layers.push(await buildLayer(l));
    const uncompressed = layers.reduce((n, l) => n + l.raw, 0);
    const compressed = layers.reduce((n, l) => n + l.blob.length, 0);
    const nfiles = layers.reduce((n, l) => n + l.files, 0);
    const runs = [];
    for (let r = 0; r < RUNS; r++) {
      const runDir = path.join(work, `run${r}`);
      fs.mkdirSync(runDir, { recursive: true });
      const name = `bench.local/apply:r${r}`;
      const files = layoutFiles(name, layers);
      const archive = path.join(runDir, 'image.tar');
      await writeArchive(archive, files);
      const layoutDir = path.join(runDir, 'layout');
      for (const [rel, b] of files) {
        fs.mkdirSync(path.dirname(path.join(layoutDir, rel)), { recursive: true });
        fs.writeFileSync(path.join(layoutDir, rel), b);
      }
      // tsblock serve (blockfile) and a private containerd using it as a proxy.
      const root = path.join(runDir, 'tsblock');
      const sock = path.join(runDir, 'tsblock.sock');
      const common = ['--root', root, '--socket', sock, '--backend', 'blockfile', '--base-size', '4G'];
      const serve = spawn(process.execPath, [CLI, 'serve', ...common, '--log-level', 'warn', '--metrics-address', ''], { stdio: ['ignore', 'ignore', fs.openSync(path.join(runDir, 'serve.log'), 'a')], env: ENV });
      procs.push(serve);
      await waitFor(() => fs.statSync(sock).isSocket(), 30000, 'tsblock socket');
      const cdRoot = path.join(runDir, 'containerd');
      const addr = path.join(runDir, 'containerd.sock');
      fs.mkdirSync(cdRoot, { recursive: true });
      const cfg = path.join(cdRoot, 'config.toml');
      fs.writeFileSync(cfg, [
        'version = 2', `root = "${cdRoot}/root"`, `state = "${cdRoot}/state"`, 'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]', `  address = "${addr}"`, '[ttrpc]', `  address = "${addr}.ttrpc"`,
        '[proxy_plugins]', '  [proxy_plugins.tsblock]', '    type = "snapshot"', `    address = "${sock}"`, '',
      ].join('\n'));
      const cd = spawn('/usr/bin/containerd', ['--config', cfg], { stdio: ['ignore', 'ignore', fs.openSync(path.join(cdRoot, 'containerd.log'), 'a')] });
      procs.push(cd);
      const ctr = (ns, args) => execFileSync('/usr/bin/ctr', ['--address', addr, '--namespace', ns, ...args], { env: { ...process.env, TMPDIR: runDir }, stdio: ['ignore', 'pipe', 'pipe'] });
      await waitFor(() => (ctr('default', ['version']), true), 30000, 'containerd');

      // containerd: ingest only, then ingest + unpack (fresh namespaces, same blobs).
      let ingestMs = 0;
      let importMs = 0;
      const runContainerd = () => {
        let t = now();
        ctr(`ingest${r}`, ['images', 'import', '--no-unpack', archive]);
        ingestMs = now() - t;
        t = now();
        ctr(`unpack${r}`, ['images', 'import', '--snapshotter', 'tsblock', archive]);
        importMs = now() - t;
      };
      // tsblock: import through the daemon's socket (chain IDs are new to it:
      // containerd's snapshots are named <ns>/<n>/<chainID>).
      let out;
      let wallMs = 0;
      const runTsblock = () => {
        const t = now();
        out = execFileSync(process.execPath, [CLI, 'import', layoutDir, ...common, '--json'], { env: ENV, stdio: ['ignore', 'pipe', 'inherit'] });
        wallMs = now() - t;
      };
      // The order alternates run by run and dirty data is written back before
      // each import: otherwise the second import competes with the writeback
      // of the first one's ~300 MB (measured: the second of the two was up to
      // 2.3× slower whichever it was), and the load of a shared machine drifts.
      const settle = () => execFileSync('sync');
      if (r % 2 === 0) {
        settle();
        runContainerd();
        settle();
        runTsblock();
      } else {
        settle();
        runTsblock();
        settle();
        runContainerd();
      }
      const unpackMs = Math.max(1, importMs - ingestMs);
      const sum = JSON.parse(out.toString());
      if (sum.applied !== LAYERS) throw new Error(`tsblock import applied ${sum.applied} of ${LAYERS} layers`);
      const run = {
        tsblock: { ms: sum.ms, wallMs: Math.round(wallMs), mbps: mb(uncompressed, sum.ms) },
        containerd: { importMs: Math.round(importMs), ingestMs: Math.round(ingestMs), unpackMs: Math.round(unpackMs), mbps: mb(uncompressed, unpackMs) },
      };
      runs.push(run);
      console.log(`run ${r + 1}: tsblock ${run.tsblock.mbps} MB/s (${run.tsblock.ms} ms), containerd ${run.containerd.mbps} MB/s (unpack ≈ ${run.containerd.unpackMs} ms = import ${run.containerd.importMs} − ingest ${run.containerd.ingestMs})`);
      ctr(`unpack${r}`, ['images', 'rm', '--sync', name]);
      ctr(`ingest${r}`, ['images', 'rm', '--sync', name]);
      await stopProc(cd);
      await stopProc(serve);
      if (!opt.keep) fs.rmSync(runDir, { recursive: true, force: true });
    }
    const med = (xs) => {
      const v = [...xs].sort((a, b) => a - b);
      const m = v.length >> 1;
      return v.length % 2 ? v[m] : Math.round((v[m - 1] + v[m]) / 2);
    };
    const medF = (xs) => {
      const v = [...xs].sort((a, b) => a - b);
      const m = v.length >> 1;
      return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
    };
    const tsMs = med(runs.map((r) => r.tsblock.ms));
    const cdMs = med(runs.map((r) => r.containerd.unpackMs));
    const result = {
      bench: 'apply',
      when: new Date().toISOString(),
      host: { cpus: os.cpus().length, kernel: os.release() },
      image: { layers: LAYERS, compression: COMPRESSION, uncompressedBytes: uncompressed, compressedBytes: compressed, files: nfiles },
      runs,
      tsblock: { ms: tsMs, mbps: mb(uncompressed, tsMs) },
      containerd: { unpackMs: cdMs, mbps: mb(uncompressed, cdMs) },
      ratio: Math.round((cdMs / tsMs) * 100) / 100,
      // The median of the per-run ratios: each run's two imports ran back to
      // back under the same load, so this is the steadier figure.
      ratioOfRuns: Math.round(medF(runs.map((x) => x.containerd.unpackMs / x.tsblock.ms)) * 100) / 100,
    };
    console.log(`image: ${LAYERS} layers, ${(uncompressed / 1e6).toFixed(1)} MB uncompressed, ${(compressed / 1e6).toFixed(1)} MB ${COMPRESSION}, ${nfiles} files`);
    console.log(`tsblock ${result.tsblock.mbps} MB/s, containerd ${result.containerd.mbps} MB/s, ratio tsblock/containerd = ${result.ratio} (median of per-run ratios ${result.ratioOfRuns})`);
    const outFile = opt.out ?? path.join(REPO, 'bench-results', `apply-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    fs.mkdirSync(path.dirname(outFile), { recursive: true });
    fs.writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
    console.log(outFile);
    ok = true;
  } finally {
    for (const p of procs.reverse()) await stopProc(p);
    if (!opt.keep && !opt.workdir) fs.rmSync(work, { recursive: true, force: true });
    else if (!ok) console.error(`kept ${work}`);
  }
}

main().catch((err) => {
  console.error(`apply.mjs: ${err.stack ?? err}`);
  process.exit(1);
});
