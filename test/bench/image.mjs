#!/usr/bin/env node
// npm run bench:image — a real multi-layer image through real containerd,
// tsblock against overlayfs on the same root filesystem (issue 16).
//
// Builds offline (once, cached under /var/cache/tsblock-bench) a 5-layer
// Debian image (lib/realimage.mjs: debootstrap minbase, python3, deletions
// and links, a 200 MiB file, 5000 small files), pushes it to Debian's
// docker-registry on 127.0.0.1, makes an ext4 and an XFS (reflink=1) root as
// loop-backed filesystems in sparse files under --dir (default /var/tmp; the
// loop devices use direct I/O so the "host disk" is not cached twice), and
// for each containerd release (1.6 from /usr/bin, 2.4 from
// /var/cache/tsblock-tools) runs four private containerds (own roots and
// sockets, names prefixed "bench"):
//   tsblock-ext4   tsblock (blockfile, the default store: XFS in a file) on the ext4 root
//   tsblock-xfs    tsblock on the XFS root (reflinks directly)
//   overlayfs-ext4 containerd's overlayfs on the ext4 root
//   overlayfs-xfs  containerd's overlayfs on the XFS root
// On 2.x tsblock is also the differ (proxy diff plugin, unpack_config) unless
// --no-differ. Rounds are interleaved (every configuration once per round,
// the order rotated each round), medians reported. Per round and
// configuration:
//   pull        ctr images pull --plain-http (all layers: fetch + unpack)
//   run         ctr run --rm IMG ID true
//   10 starts   10 × ctr run -d at once, until all 10 are running
//   read warm   in a fresh container, cat every file (find / -xdev), timed inside
//   read cold   the same after sync + drop_caches
//   disk        root filesystem blocks used with the 10 running, less before the pull
//   gc          ctr images rm --sync (after the containers are removed)
// plus tsblock's CPU time per round, tsblock's server-side RPC time per
// method in the pull and the 10 starts (its /metrics), the page cache its
// image files hold after the cold read (fincore: the loop device's second
// copy), and a content check (listing hash, dpkg --verify, file count) that
// must agree across configurations (exit 1 otherwise). Logs of the last run
// stay in --dir/bench-image-logs-last.
//
//   node test/bench/image.mjs [--rounds 2] [--dir /var/tmp] [--only tsblock-ext4,overlayfs-ext4]
//        [--versions 1.6,2.4] [--no-differ] [--variants dio,walking,alt,alt-walking] [--json FILE] [--from-json FILE]
// Needs root, runc, docker-registry, debootstrap and attr (first run), mkfs.xfs, fincore and a built tree (npm run build).

import { parseArgs } from 'node:util';
import { execFileSync, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, nowMs, sleep } from './lib/util.mjs';
import { buildRealImage } from './lib/realimage.mjs';
import { Containerd, containerdBins, startRegistry } from './lib/ctrd.mjs';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    dir: { type: 'string', default: '/var/tmp' },
    only: { type: 'string' },
    versions: { type: 'string', default: '1.6,2.4' },
    'no-differ': { type: 'boolean', default: false },
    json: { type: 'string' },
    'from-json': { type: 'string' },
    'fs-size': { type: 'string', default: '40G' },
    variants: { type: 'string', default: '' },
  },
});
const ROUNDS = Number(values.rounds);
const VERSION_DIRS = { '1.6': '/usr/bin', '2.4': '/var/cache/tsblock-tools/containerd-v2.4.2/bin', '2.3': '/var/cache/tsblock-tools/containerd-v2.3.7/bin' };
// Variants of tsblock, measured in the same interleaved rounds (before/after in one run):
//   dio      serve --mount-option direct-io: containers' loop devices read their image with
//            direct I/O (one page cache, not two); containerd ≥ 2 only (1.6 passes the option to ext4)
//   walking  containerd 2.x without tsblock as the differ (containerd's walking applier through the mount)
const VARIANTS = {
  dio: { args: ['--mount-option', 'direct-io'], minMajor: 2 },
  walking: { noDiffer: true, minMajor: 2 },
  // alt: another build (TSBLOCK_BENCH_ALT_CLI, e.g. the previous commit's dist/cli.js or an
  // experiment) with TSBLOCK_BENCH_ALT_ENV ("K=V,K=V") in its environment, as the differ on 2.x
  alt: { cli: process.env.TSBLOCK_BENCH_ALT_CLI, env: Object.fromEntries((process.env.TSBLOCK_BENCH_ALT_ENV ?? '').split(',').filter(Boolean).map((kv) => kv.split('='))) },
  // alt-walking: the same build without tsblock as the differ on 2.x
  'alt-walking': { cli: process.env.TSBLOCK_BENCH_ALT_CLI, env: Object.fromEntries((process.env.TSBLOCK_BENCH_ALT_ENV ?? '').split(',').filter(Boolean).map((kv) => kv.split('='))), noDiffer: true },
};
const VARIANT_NAMES = values.variants.split(',').filter(Boolean);
for (const v of VARIANT_NAMES) if (!VARIANTS[v]) throw new Error(`unknown variant ${v} (${Object.keys(VARIANTS).join(', ')})`);
const CONFIGS = ['tsblock-ext4', 'overlayfs-ext4', 'tsblock-xfs', 'overlayfs-xfs', ...VARIANT_NAMES.flatMap((v) => [`tsblock+${v}-ext4`, `tsblock+${v}-xfs`])]
  .filter((c) => !values.only || values.only.split(',').includes(c));
/** median: the middle value, or the mean of the two middle ones (2 rounds: their mean). */
const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const log = (m) => console.error(`[bench:image ${new Date().toISOString().slice(11, 19)}] ${m}`);
const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const GiB = 1024 ** 3;

if (process.getuid() !== 0 && !values['from-json']) throw new Error('bench:image needs root (loop devices, mounts, containerd)');
if (!existsSync(join(REPO, 'dist', 'cli.js'))) throw new Error('dist/cli.js missing: npm run build');
if (!values['from-json']) {
  for (const [tool, pkg] of [['runc', 'runc'], ['docker-registry', 'docker-registry'], ['mkfs.xfs', 'xfsprogs'], ['losetup', 'mount']]) {
    if (!['/usr/local/sbin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, tool)))) throw new Error(`bench:image needs ${tool} (apt-get install ${pkg})`);
  }
}

const work = mkdtempSync(join(values.dir, 'bench-image-'));
const cleanups = [];
let released = false;
async function release() {
  if (released) return;
  released = true;
  for (const f of cleanups.splice(0).reverse()) {
    try {
      await f();
    } catch (err) {
      console.error(`cleanup: ${err.message.split('\n')[0]}`);
    }
  }
  // Keep the logs of the last run (tsblock's, containerd's, the registry's) for a post-mortem.
  const keep = join(values.dir, 'bench-image-logs-last');
  rmSync(keep, { recursive: true, force: true });
  try {
    execFileSync('sh', ['-c', 'cd "$0" && find . -maxdepth 3 -name "*.log" -size -64M | cpio -pdm "$1" 2>/dev/null', work, keep]);
  } catch {
    /* best effort */
  }
  rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => release().then(() => process.exit(130)));

/** loopFs makes a filesystem in a sparse file on a direct-I/O loop device and mounts it. */
function loopFs(type) {
  const file = join(work, `${type}.img`);
  const dir = join(work, type);
  mkdirSync(dir);
  closeSync(openSync(file, 'w'));
  sh('truncate', ['-s', values['fs-size'], file]);
  if (type === 'ext4') sh('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', file]);
  else sh('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', file]);
  const dev = sh('losetup', ['--find', '--show', '--direct-io=on', file]).trim();
  cleanups.push(() => sh('losetup', ['-d', dev]));
  sh('mount', ['-o', 'noatime', dev, dir]);
  cleanups.push(() => umountUnder(dir));
  return { type, dir, dev, file };
}

/** umountUnder unmounts everything at or below dir, deepest first (what a crashed run left behind). */
function umountUnder(dir) {
  const mps = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && (m === dir || m.startsWith(`${dir}/`)));
  for (const m of [...new Set(mps)].sort((a, b) => b.length - a.length)) {
    try {
      sh('umount', [m]);
    } catch {
      sh('umount', ['-l', m]);
    }
  }
}

const usedBytes = (dir) => {
  const s = statfsSync(dir);
  return (s.blocks - s.bfree) * s.bsize;
};

/** settledUsed syncs and waits (≤ 15 s) until the blocks used stop shrinking: the last GC's frees (XFS inodegc, discards) must not count against the next configuration. */
async function settledUsed(dir) {
  let prev = Infinity;
  for (let i = 0; i < 30; i++) {
    sh('sync', []);
    const u = usedBytes(dir);
    if (u >= prev) return u;
    prev = u;
    await sleep(500);
  }
  return prev;
}

function cpuMs(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / 100; // utime stime cutime cstime at 100 Hz
  } catch {
    return NaN;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** rpcSeconds scrapes tsblock's metrics: total seconds spent per RPC method so far ({} when unreachable). */
async function rpcSeconds(c) {
  if (!c.tsblock) return {};
  try {
    const text = await (await fetch(c.tsblock.metrics)).text();
    const out = {};
    for (const m of text.matchAll(/^tsblock_grpc_request_duration_seconds_sum\{([^}]*)\} (\S+)$/gm)) {
      const method = /method="([^"]+)"/.exec(m[1])?.[1] ?? '?';
      out[method] = (out[method] ?? 0) + Number(m[2]);
    }
    return out;
  } catch {
    return {};
  }
}

/** rpcDelta is the ms per method between two rpcSeconds() scrapes (methods that took ≥ 1 ms). */
function rpcDelta(a, b) {
  const out = {};
  for (const [k, v] of Object.entries(b)) {
    const d = (v - (a[k] ?? 0)) * 1000;
    if (d >= 1) out[k] = Math.round(d);
  }
  return out;
}

function canConnect(socket) {
  return new Promise((resolve) => {
    const s = connect(socket);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** startTsblock runs `tsblock serve` (blockfile, defaults) on root; resolves when the socket answers. */
async function startTsblock(id, root, extraArgs = [], { cli: altCli, env: altEnv } = {}) {
  const socket = join(work, `${id}-tsblock.sock`);
  const cfg = join(work, `${id}-tsblock.toml`);
  const logf = join(work, `${id}-tsblock.log`);
  writeFileSync(cfg, '');
  mkdirSync(root, { recursive: true });
  const fd = openSync(logf, 'a');
  const metricsPort = await freePort();
  const cli = altCli ?? process.env.TSBLOCK_BENCH_CLI ?? join(REPO, 'dist', 'cli.js');
  // TSBLOCK_BENCH_NODE_ARGS: node flags for the servers, e.g. "--cpu-prof --cpu-prof-dir=DIR" (where the time goes).
  const nodeArgs = (process.env.TSBLOCK_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...nodeArgs, cli, 'serve', '--config', cfg, '--root', root, '--socket', socket, '--backend', 'blockfile', '--metrics-address', `127.0.0.1:${metricsPort}`, '--log-level', 'warn', ...extraArgs],
    { stdio: ['ignore', fd, fd], env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/root', ...altEnv } });
  closeSync(fd);
  const exited = new Promise((r) => proc.once('exit', () => r()));
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 30000);
      await exited;
      clearTimeout(t);
    }
  });
  const t0 = Date.now();
  while (!(existsSync(socket) && (await canConnect(socket)))) {
    if (proc.exitCode !== null) throw new Error(`tsblock ${id} exited: ${readFileSync(logf, 'utf8').slice(-1500)}`);
    if (Date.now() - t0 > 120000) throw new Error(`tsblock ${id} did not listen in 120 s`);
    await sleep(50);
  }
  return { proc, socket, log: logf, metrics: `http://127.0.0.1:${metricsPort}/metrics` };
}

// The content check, timed inside the container: cat every file, then a listing hash
// (lost+found excluded: an ext4 root has one, overlayfs does not), file count, dpkg --verify.
const READ = [
  's=$(date +%s%N); find / -xdev -type f -print0 | xargs -0 cat > /dev/null; e=$(date +%s%N); echo "T $((e-s))"',
  "echo \"H $(find / -xdev -path /lost+found -prune -o \\( -type d -printf '%p d %m %U:%G\\n' \\) -o -printf '%p %y %s %m %U:%G %l\\n' | sort | md5sum | cut -c1-12)\"",
  'echo "N $(find / -xdev -type f | wc -l)"',
  'dpkg --verify > /tmp/v 2>&1; echo "V $? $(wc -l < /tmp/v)"',
].join('; ');

function parseRead(out) {
  const get = (k) => (new RegExp(`^${k} (.*)$`, 'm').exec(out) ?? [])[1];
  return { ms: Number(get('T')) / 1e6, hash: get('H'), files: Number(get('N')), dpkg: get('V') };
}

/**
 * backingCached sums the page cache held by tsblock's image files (fincore) under root: after a
 * cold read through a container's loop device, the copy of the data that the backing file keeps
 * besides the container's own ext4 cache (none with a direct-I/O loop device).
 */
function backingCached(root) {
  const files = sh('find', [root, '-xdev', '-path', '*/snapshots/*', '-type', 'f']).split('\n').filter(Boolean);
  const store = sh('find', [root, '-mindepth', '1', '-maxdepth', '1', '-type', 'd']).split('\n').filter(Boolean);
  for (const d of store) {
    try {
      files.push(...sh('find', [d, '-path', '*/snapshots/*', '-type', 'f']).split('\n').filter(Boolean));
    } catch {
      /* not a directory we can walk */
    }
  }
  if (files.length === 0) return 0;
  const out = sh('fincore', ['-b', '-n', '-o', 'RES', ...new Set(files)]);
  return out.split('\n').filter(Boolean).reduce((a, l) => a + Number(l.trim()), 0);
}

const dropCaches = () => {
  sh('sync', []);
  writeFileSync('/proc/sys/vm/drop_caches', '3');
};

let seq = 0;
/** cycle is one round of one configuration: pull … gc, every figure in ms (disk in bytes). */
async function cycle(c, ref) {
  const S = c.snapshotter;
  const ctr = (args, o) => c.ctrd.ctr(args, o);
  const n = ++seq;
  const cpu0 = c.tsblock ? cpuMs(c.tsblock.proc.pid) : NaN;
  const ctrdCpu0 = cpuMs(c.ctrd.proc.pid);
  const used0 = await settledUsed(c.fs.dir);
  const r = {};
  const m0 = await rpcSeconds(c);
  r.pull = (await ctr(['images', 'pull', '--plain-http', '--snapshotter', S, ref])).ms;
  const m1 = await rpcSeconds(c);
  r.run = (await ctr(['run', '--rm', '--snapshotter', S, ref, `bench-rm-${n}`, 'true'])).ms;
  const warm = parseRead((await ctr(['run', '--rm', '--snapshotter', S, ref, `bench-rw-${n}`, 'sh', '-c', READ])).stdout);
  r.readWarm = warm.ms;
  dropCaches();
  // Not --rm: the snapshot must still exist to see what of its image file the read left cached.
  const cold = parseRead((await ctr(['run', '--snapshotter', S, ref, `bench-rc-${n}`, 'sh', '-c', READ])).stdout);
  r.readCold = cold.ms;
  if (c.tsblock) r.backingCache = backingCached(c.tsblockRoot);
  await ctr(['tasks', 'rm', '-f', `bench-rc-${n}`], { check: false });
  await ctr(['containers', 'rm', `bench-rc-${n}`]);
  const m2 = await rpcSeconds(c);
  const t0 = nowMs();
  await Promise.all(Array.from({ length: 10 }, (_, i) => ctr(['run', '-d', '--snapshotter', S, ref, `bench-d${i}-${n}`, 'sleep', '3600'])));
  r.start10 = nowMs() - t0;
  const m3 = await rpcSeconds(c);
  sh('sync', []);
  r.disk = usedBytes(c.fs.dir) - used0;
  await c.ctrd.removeAll();
  r.gc = (await ctr(['images', 'rm', '--sync', ref])).ms;
  const left = (await ctr(['snapshots', '--snapshotter', S, 'ls'])).stdout.trim().split('\n').length - 1;
  r.tsblockCpu = c.tsblock ? cpuMs(c.tsblock.proc.pid) - cpu0 : undefined;
  r.containerdCpu = cpuMs(c.ctrd.proc.pid) - ctrdCpu0;
  // tsblock's own time per RPC method (server side, summed over concurrent calls) in the pull and in the 10 starts
  if (c.tsblock) r.rpcMs = { pull: rpcDelta(m0, m1), start10: rpcDelta(m2, m3) };
  r.check = { hash: warm.hash, coldHash: cold.hash, files: warm.files, dpkg: warm.dpkg, snapshotsLeft: left };
  return r;
}

const METRICS = [
  ['pull', 'pull (5 layers)', 0.9, 'ms'],
  ['run', '`ctr run --rm … true`', 1.2, 'ms'],
  ['start10', '10 × `ctr run -d` at once', 1.2, 'ms'],
  ['readWarm', 'first read of every file, warm cache', undefined, 'ms'],
  ['readCold', 'first read of every file, after dropping caches', 1.1, 'ms'],
  ['backingCache', 'image files\' page cache after the cold read (the second copy)', undefined, 'bytes'],
  ['disk', 'disk used with 10 containers running', 1.1, 'bytes'],
  ['gc', '`ctr images rm --sync`', 1.0, 'ms'],
];
const fmt = (v, unit) => (v === undefined || Number.isNaN(v) ? '–' : unit === 'bytes' ? `${(v / GiB).toFixed(2)} GiB` : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`);

function report(results, configs, meta) {
  const lines = [];
  const out = { ...meta, versions: {} };
  for (const ver of [...new Set(configs.map((c) => c.version))]) {
    const cs = configs.filter((x) => x.version === ver);
    const med = {};
    for (const c of cs) {
      med[c.name] = {};
      for (const [k] of METRICS) med[c.name][k] = median(results[c.id].map((r) => r[k]));
      med[c.name].tsblockCpu = median(results[c.id].map((r) => r.tsblockCpu ?? NaN));
      med[c.name].containerdCpu = median(results[c.id].map((r) => r.containerdCpu));
    }
    out.versions[ver] = { containerd: cs[0].bins.version, medians: med, rounds: Object.fromEntries(cs.map((c) => [c.name, results[c.id]])) };
    const differ = cs[0].bins.major >= 2 && !values['no-differ'];
    lines.push('', `### containerd ${cs[0].bins.version}${differ ? ' (tsblock as the differ unless "+walking")' : ''}`, '');
    lines.push(`| | ${cs.map((c) => c.name).join(' | ')} | goal |`, `| --- |${cs.map(() => ' --- |').join('')} --- |`);
    for (const [k, label, goal, unit] of METRICS) {
      const cell = (c) => {
        const x = med[c.name][k];
        const ref = c.impl === 'tsblock' ? med[`overlayfs-${c.fsType}`]?.[k] : undefined;
        if (ref === undefined || Number.isNaN(ref)) return fmt(x, unit);
        const q = x / ref;
        const met = goal === undefined ? '' : (goal === 1.0 ? q < 1 : q <= goal) ? ' ✓' : ' ✗';
        return `${fmt(x, unit)} (${q.toFixed(2)}×${met})`;
      };
      lines.push(`| ${label} | ${cs.map(cell).join(' | ')} | ${goal === undefined ? '–' : goal === 1.0 ? '< 1×' : `≤ ${goal}×`} |`);
    }
    lines.push(`| tsblock CPU per round | ${cs.map((c) => (c.impl === 'tsblock' ? `${(med[c.name].tsblockCpu / 1000).toFixed(1)} s` : '')).join(' | ')} | |`);
    const rpcSum = (c, phase) => median(results[c.id].map((r) => (r.rpcMs ? Object.values(r.rpcMs[phase]).reduce((x, y) => x + y, 0) : NaN)));
    lines.push(`| tsblock's RPC time (server side) in the pull / the 10 starts | ${cs.map((c) => (c.impl === 'tsblock' && !Number.isNaN(rpcSum(c, 'pull')) ? `${fmt(rpcSum(c, 'pull'), 'ms')} / ${fmt(rpcSum(c, 'start10'), 'ms')}` : '')).join(' | ')} | |`);
    lines.push(`| containerd CPU per round | ${cs.map((c) => `${(med[c.name].containerdCpu / 1000).toFixed(1)} s`).join(' | ')} | |`);
  }
  return { markdown: lines.join('\n'), json: out };
}

async function main() {
  log(`work dir ${work}`);
  const versions = values.versions.split(',').map((v) => {
    const { bins, reason } = containerdBins(VERSION_DIRS[v] ?? v);
    if (!bins) throw new Error(`containerd ${v}: ${reason}`);
    return [v, bins];
  });
  const img = await buildRealImage();
  log(`image: ${img.layers.length} layers, ${(img.compressedBytes / 1024 ** 2).toFixed(0)} MiB compressed`);
  const fss = { ext4: loopFs('ext4'), xfs: loopFs('xfs') };
  const reg = await startRegistry(join(work, 'registry'));
  cleanups.push(() => reg.stop());
  const ref = await reg.push(img, 'bench/debian-python', 'v1');
  log(`pushed ${ref}`);
  const configs = [];
  for (const [ver, bins] of versions) {
    for (const name of CONFIGS) {
      const [, implv, fsType] = /^(.*)-(ext4|xfs)$/.exec(name);
      const [impl, variant] = implv.split('+');
      const v = variant ? VARIANTS[variant] : {};
      if (v.minMajor && bins.major < v.minMajor) {
        log(`${name} on containerd ${bins.version}: skipped (needs containerd ≥ ${v.minMajor})`);
        continue;
      }
      const fs = fss[fsType];
      const id = `bench-${ver.replace('.', '')}-${name.replace('+', '-')}`;
      const base = join(fs.dir, id);
      const c = { id, name, impl, fsType, version: ver, bins, fs, snapshotter: impl === 'tsblock' ? 'tsblock' : 'overlayfs' };
      let config = {};
      if (impl === 'tsblock') {
        // A proxy differ reads blobs from containerd's content store on disk (docs/applier.md).
        const content = ['--content-dir', join(base, 'containerd', 'io.containerd.content.v1.content')];
        if ('cli' in v && !v.cli) throw new Error(`variant ${variant} needs TSBLOCK_BENCH_ALT_CLI`);
        c.tsblockRoot = join(base, 'tsblock');
        c.tsblock = await startTsblock(id, c.tsblockRoot, [...content, ...(v.args ?? [])], v);
        const differ = bins.major >= 2 && !values['no-differ'] && !v.noDiffer;
        config = {
          proxies: [{ name: 'tsblock', type: 'snapshot', address: c.tsblock.socket }, ...(differ ? [{ name: 'tsblock-diff', type: 'diff', address: c.tsblock.socket }] : [])],
          unpack: bins.major >= 2 ? [{ snapshotter: 'tsblock', differ: differ ? 'tsblock-diff' : undefined }] : undefined,
          diffOrder: differ ? ['tsblock-diff', 'walking'] : undefined,
        };
      }
      const cw = join(work, id);
      mkdirSync(cw, { recursive: true });
      c.ctrd = new Containerd({ work: cw, bins, root: join(base, 'containerd'), config });
      await c.ctrd.start();
      // Containers first (their shims outlive containerd), then containerd; tsblock stops after (cleanups run in reverse).
      cleanups.push(async () => {
        await c.ctrd.removeAll();
        await c.ctrd.ctr(['images', 'rm', '--sync', ref], { check: false });
        await c.ctrd.stop();
      });
      configs.push(c);
      log(`${id}: containerd ${bins.version} up${c.tsblock ? ' with tsblock' : ''}`);
    }
  }
  const results = Object.fromEntries(configs.map((c) => [c.id, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = configs.map((_, i) => configs[(i + round) % configs.length]);
    for (const c of order) {
      const r = await cycle(c, ref);
      results[c.id].push(r);
      log(`round ${round + 1} ${c.id}: ${METRICS.map(([k, , , u]) => `${k} ${fmt(r[k], u)}`).join(', ')}${r.tsblockCpu !== undefined ? `, tsblock CPU ${(r.tsblockCpu / 1000).toFixed(1)} s` : ''} [${JSON.stringify(r.check)}]`);
    }
  }
  // Content must agree: the same listing hash, file count and dpkg result everywhere.
  const checks = configs.flatMap((c) => results[c.id].map((r) => ({ id: c.id, ...r.check })));
  const bad = checks.filter((k) => k.hash !== checks[0].hash || k.coldHash !== checks[0].hash || k.files !== checks[0].files || k.dpkg !== checks[0].dpkg || k.snapshotsLeft !== 0);
  const meta = {
    date: new Date().toISOString(),
    host: { kernel: sh('uname', ['-r']).trim(), cpus: (await import('node:os')).cpus().length, loadavg: (await import('node:os')).loadavg() },
    image: { layers: img.layers.length, compressedBytes: img.compressedBytes, files: checks[0].files },
    rounds: ROUNDS,
    contentCheck: bad.length ? { ok: false, mismatches: bad, reference: checks[0] } : { ok: true, ...checks[0] },
  };
  const { markdown, json } = report(results, configs, meta);
  console.log(markdown);
  console.log(`\ncontent check: ${bad.length ? `MISMATCH ${JSON.stringify(bad)}` : `ok (${checks[0].files} files, listing ${checks[0].hash}, dpkg --verify ${checks[0].dpkg}, no snapshot left after GC)`}`);
  console.log(`load average at the end: ${meta.host.loadavg.map((x) => x.toFixed(2)).join(' ')}`);
  const text = JSON.stringify(json, null, 1);
  if (values.json) writeFileSync(values.json, text);
  console.log('\n```json\n' + JSON.stringify({ ...json, versions: Object.fromEntries(Object.entries(json.versions).map(([k, v]) => [k, v.medians])) }) + '\n```');
  if (bad.length) process.exitCode = 1;
}

/** rerender prints the tables of a saved --json run again (e.g. after a change to the report). */
function rerender(file) {
  const j = JSON.parse(readFileSync(file, 'utf8'));
  const configs = [];
  const results = {};
  for (const [ver, v] of Object.entries(j.versions)) {
    for (const [name, rounds] of Object.entries(v.rounds)) {
      const [, implv, fsType] = /^(.*)-(ext4|xfs)$/.exec(name);
      const id = `${ver}/${name}`;
      configs.push({ id, name, impl: implv.split('+')[0], fsType, version: ver, bins: { version: v.containerd, major: Number(v.containerd.split('.')[0]) } });
      results[id] = rounds;
    }
  }
  const { versions, ...meta } = j;
  console.log(report(results, configs, meta).markdown);
  console.log(`\nrun ${j.date}, ${j.rounds} rounds, load average at the end ${j.host.loadavg.map((x) => x.toFixed(2)).join(' ')}; content check ${j.contentCheck.ok ? 'ok' : 'MISMATCH'}`);
}

try {
  if (values['from-json']) rerender(values['from-json']);
  else await main();
} catch (err) {
  console.error(err.stack ?? String(err));
  process.exitCode = 1;
} finally {
  await release();
}
