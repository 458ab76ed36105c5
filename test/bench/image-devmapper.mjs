#!/usr/bin/env node
// npm run bench:image-devmapper — the real-image benchmark on device-mapper:
// tsblock's devmapper backend (its owned loop-backed pool) against
// containerd 1.6's own devmapper snapshotter, both through containerd 1.6
// (issue 16). Where device-mapper is missing (dev hosts, CI) run it through
// vm-tests/bench-image-devmapper.sh, which re-runs it in the qemu guest.
//
// Pushes an image from lib/realimage.mjs (--small, the default here: the
// 4-layer variant, minbase + deletions/links + a 32 MiB file + 5000 small
// files; --full: the 5-layer image of bench:image) to Debian's
// docker-registry on 127.0.0.1, and runs two private containerd 1.6
// instances (own roots and sockets, namespace "bench", CRI off):
//   tsblock-devmapper     proxy snapshotter "tsblock": `tsblock serve --backend devmapper`
//                         (owned pool: sparse loop files under the work dir; warm spares as configured)
//   containerd-devmapper  containerd's io.containerd.snapshotter.v1.devmapper on a thin-pool made
//                         here with dmsetup from two sparse loop files (64 KiB blocks, block zeroing
//                         off), as vm-tests/bench-devmapper.sh makes it
// Both get the same virtual device size (--base-size, default 512M) and a
// 4 GiB data file. Rounds are interleaved (the order swapped every round),
// medians reported. Per round and configuration:
//   pull      ctr images pull --plain-http (all layers: fetch + unpack)
//   run       ctr run --rm IMG ID true
//   starts    --starts N (default 4) × ctr run -d at once, until all N are running
//   gc        ctr images rm --sync (after the containers are removed)
//   pool      the thin-pool's used data with the N started containers running
//             for 10 s more (idle), less the pool's used data before the pull
// plus tsblock's CPU time per round and its server-side RPC time per method
// (its /metrics) in the pull, the run and the starts, and a content check (a listing
// hash and file count, taken in a container, untimed) that must agree across
// configurations, with no snapshot left after GC (exit 1 otherwise).
//
//   node test/bench/image-devmapper.mjs [--rounds 2] [--starts 4] [--full] [--dir /var/tmp]
//        [--base-size 512M] [--json FILE]
// Needs root, device-mapper (dmsetup), containerd 1.6 in /usr/bin, runc,
// docker-registry, and a built tree (npm run build). The image must already
// be in /var/cache/tsblock-bench (the VM's root is read-only: the wrapper
// builds it on the host first).
// TSBLOCK_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" runs tsblock under those node flags.

import { parseArgs } from 'node:util';
import { execFileSync, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { REPO, nowMs, sleep } from './lib/util.mjs';
import { buildRealImage } from './lib/realimage.mjs';
import { Containerd, containerdBins, startRegistry } from './lib/ctrd.mjs';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    starts: { type: 'string', default: '4' },
    full: { type: 'boolean', default: false },
    dir: { type: 'string', default: '/var/tmp' },
    'base-size': { type: 'string', default: '512M' },
    json: { type: 'string' },
  },
});
const ROUNDS = Number(values.rounds);
const STARTS = Number(values.starts);
const BASE = values['base-size'];
const log = (m) => console.error(`[bench:image-devmapper ${new Date().toISOString().slice(11, 19)}] ${m}`);
const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DM_DISABLE_UDEV: '1' } }).toString();
const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

if (process.getuid() !== 0) throw new Error('bench:image-devmapper needs root');
if (!existsSync(join(REPO, 'dist', 'cli.js'))) throw new Error('dist/cli.js missing: npm run build');
try {
  sh('dmsetup', ['version']);
} catch {
  throw new Error('no device-mapper here: run vm-tests/bench-image-devmapper.sh (it uses the qemu guest)');
}

const work = mkdtempSync(join(values.dir, 'bench-imgdm-'));
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
  const keep = process.env.TSBLOCK_BENCH_LOGS ?? join(values.dir, 'bench-imgdm-logs-last');
  rmSync(keep, { recursive: true, force: true });
  try {
    execFileSync('sh', ['-c', 'cd "$0" && find . -maxdepth 3 -name "*.log" -size -64M | cpio -pdm "$1" 2>/dev/null', work, keep]);
  } catch {
    /* best effort */
  }
  rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => release().then(() => process.exit(130)));

function cpuMs(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / 100;
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

/** startTsblock runs `tsblock serve --backend devmapper` (owned pool under root); resolves when the socket answers. */
async function startTsblock(root) {
  const socket = join(work, 'tsblock.sock');
  const logf = join(work, 'tsblock.log');
  const cfg = join(work, 'tsblock.toml');
  writeFileSync(cfg, '');
  mkdirSync(root, { recursive: true });
  const metricsPort = await freePort();
  const nodeArgs = (process.env.TSBLOCK_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const fd = openSync(logf, 'a');
  const env = { PATH: process.env.PATH, HOME: process.env.HOME ?? '/root', DM_DISABLE_UDEV: '1' };
  if (process.env.TSBLOCK_DM_WARM_SPARES !== undefined) env.TSBLOCK_DM_WARM_SPARES = process.env.TSBLOCK_DM_WARM_SPARES;
  const proc = spawn(process.execPath, [...nodeArgs, process.env.TSBLOCK_BENCH_CLI ?? join(REPO, 'dist', 'cli.js'), 'serve', '--config', cfg, '--root', root, '--socket', socket,
    '--backend', 'devmapper', '--data-size', '4G', '--base-size', BASE, '--metrics-address', `127.0.0.1:${metricsPort}`, '--log-level', 'warn'],
  { stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  const exited = new Promise((r) => proc.once('exit', () => r()));
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 60000);
      await exited;
      clearTimeout(t);
    }
  });
  const t0 = Date.now();
  while (!(existsSync(socket) && (await canConnect(socket)))) {
    if (proc.exitCode !== null) throw new Error(`tsblock exited: ${readFileSync(logf, 'utf8').slice(-1500)}`);
    if (Date.now() - t0 > 300000) throw new Error('tsblock did not listen in 300 s');
    await sleep(100);
  }
  log(`tsblock devmapper serving after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { proc, socket, log: logf, metrics: `http://127.0.0.1:${metricsPort}/metrics` };
}

let ctrdPoolName = '';

/**
 * poolUsedBytes is a thin-pool's used data (`dmsetup status`, which commits the
 * pool's metadata first): containerd's pool, or tsblock's owned one (the only
 * other pool here, named tsblock-<hash>).
 */
async function poolUsedBytes(c) {
  // tsblock opens its store and pool after its socket answers: wait for the pool
  for (let i = 0; i < 600; i++) {
    const used = poolUsedOnce(c);
    if (used !== undefined) return used;
    await sleep(100);
  }
  throw new Error(`no thin-pool for ${c.name} after 60 s: ${sh('dmsetup', ['ls'])}`);
}

function poolUsedOnce(c) {
  const pools = sh('dmsetup', ['status', '--target', 'thin-pool']).split('\n').filter(Boolean).map((l) => {
    const [name, rest] = l.split(': ');
    const f = rest.trim().split(/\s+/); // start length thin-pool tid meta data ...
    return { name, used: Number(f[5].split('/')[0]) };
  });
  const p = c.tsblock ? pools.find((x) => x.name.startsWith('tsblock-')) : pools.find((x) => x.name === ctrdPoolName);
  if (!p) return undefined;
  const blockSectors = Number(sh('dmsetup', ['table', p.name]).trim().split(/\s+/)[5]);
  return p.used * blockSectors * 512;
}

/** ctrdPool makes containerd's thin-pool from two sparse loop files, as vm-tests/bench-devmapper.sh does; released on exit. */
function ctrdPool() {
  const name = `benchimg-ctrd-pool-${process.pid}`;
  const data = join(work, 'ctrd-data');
  const meta = join(work, 'ctrd-meta');
  sh('truncate', ['-s', '4G', data]);
  sh('truncate', ['-s', '256M', meta]);
  sh('dd', ['if=/dev/zero', `of=${meta}`, 'bs=4096', 'count=1', 'conv=notrunc', 'status=none']);
  const dataDev = sh('losetup', ['-f', '--show', data]).trim();
  cleanups.push(() => sh('losetup', ['-d', dataDev]));
  const metaDev = sh('losetup', ['-f', '--show', meta]).trim();
  cleanups.push(() => sh('losetup', ['-d', metaDev]));
  const sectors = Number(sh('blockdev', ['--getsize64', dataDev]).trim()) / 512;
  sh('dmsetup', ['create', name, '--table', `0 ${sectors} thin-pool ${metaDev} ${dataDev} 128 32768 1 skip_block_zeroing`]);
  ctrdPoolName = name;
  cleanups.push(() => {
    // containerd's devmapper leaves its thin devices active: remove them, then the pool
    for (const l of sh('dmsetup', ['ls']).split('\n')) {
      const d = l.split(/\s+/)[0];
      if (d && d.startsWith(`${name}-snap-`)) sh('dmsetup', ['remove', '--retry', d]);
    }
    sh('dmsetup', ['remove', '--retry', name]);
  });
  return name;
}

/** extraToml appends containerd's devmapper plugin section to a 1.6 config (version 2). */
function devmapperToml(root, pool) {
  return ['', '[plugins."io.containerd.snapshotter.v1.devmapper"]', `  root_path = ${JSON.stringify(root)}`, `  pool_name = ${JSON.stringify(pool)}`,
    `  base_image_size = ${JSON.stringify(`${BASE.replace(/[^0-9]/g, '')}${/G/i.test(BASE) ? 'GB' : 'MB'}`)}`, '  discard_blocks = false', ''].join('\n');
}

// untimed content check: a listing hash (lost+found excluded) and the file count
const CHECK = "echo \"H $(find / -xdev -path /lost+found -prune -o \\( -type d -printf '%p d %m %U:%G\\n' \\) -o -printf '%p %y %s %m %U:%G %l\\n' | sort | md5sum | cut -c1-12)\"; echo \"N $(find / -xdev -type f | wc -l)\"";

let seq = 0;
async function cycle(c, ref) {
  const S = c.snapshotter;
  const ctr = (args, o) => c.ctrd.ctr(args, o);
  const n = ++seq;
  const cpu0 = c.tsblock ? cpuMs(c.tsblock.proc.pid) : NaN;
  const ctrdCpu0 = cpuMs(c.ctrd.proc.pid);
  const r = {};
  await ctr(['snapshots', '--snapshotter', S, 'ls']); // tsblock's store and pool are open once this answers
  const pool0 = await poolUsedBytes(c);
  const m0 = await rpcSeconds(c);
  r.pull = (await ctr(['images', 'pull', '--plain-http', '--snapshotter', S, ref])).ms;
  const m1 = await rpcSeconds(c);
  r.run = (await ctr(['run', '--rm', '--snapshotter', S, ref, `bench-rm-${n}`, 'true'])).ms;
  const m1r = await rpcSeconds(c);
  const out = (await ctr(['run', '--rm', '--snapshotter', S, ref, `bench-ck-${n}`, 'sh', '-c', CHECK])).stdout;
  const m2 = await rpcSeconds(c);
  const t0 = nowMs();
  await Promise.all(Array.from({ length: STARTS }, (_, i) => ctr(['run', '-d', '--snapshotter', S, ref, `bench-d${i}-${n}`, 'sleep', '3600'])));
  r.starts = nowMs() - t0;
  const m3 = await rpcSeconds(c);
  await sleep(10000);
  r.poolBytes = (await poolUsedBytes(c)) - pool0;
  await c.ctrd.removeAll();
  r.gc = (await ctr(['images', 'rm', '--sync', ref])).ms;
  const left = (await ctr(['snapshots', '--snapshotter', S, 'ls'])).stdout.trim().split('\n').length - 1;
  r.tsblockCpu = c.tsblock ? cpuMs(c.tsblock.proc.pid) - cpu0 : undefined;
  r.containerdCpu = cpuMs(c.ctrd.proc.pid) - ctrdCpu0;
  if (c.tsblock) r.rpcMs = { pull: rpcDelta(m0, m1), run: rpcDelta(m1, m1r), starts: rpcDelta(m2, m3) };
  const get = (k) => (new RegExp(`^${k} (.*)$`, 'm').exec(out) ?? [])[1];
  r.check = { hash: get('H'), files: Number(get('N')), snapshotsLeft: left };
  return r;
}

const METRICS = [
  ['pull', 'pull'],
  ['run', '`ctr run --rm … true`'],
  ['starts', `${STARTS} × \`ctr run -d\` at once`],
  ['gc', '`ctr images rm --sync`'],
];
const fmt = (v) => (v === undefined || Number.isNaN(v) ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`);

async function main() {
  log(`work dir ${work}`);
  const { bins, reason } = containerdBins('/usr/bin');
  if (!bins) throw new Error(`containerd 1.6: ${reason}`);
  const img = await buildRealImage({ small: !values.full });
  log(`image: ${img.layers.length} layers, ${(img.compressedBytes / 1024 ** 2).toFixed(0)} MiB compressed`);
  const reg = await startRegistry(join(work, 'registry'));
  cleanups.push(() => reg.stop());
  const ref = await reg.push(img, 'bench/debian-dm', 'v1');
  log(`pushed ${ref}`);
  const configs = [];
  for (const name of ['tsblock-devmapper', 'containerd-devmapper']) {
    const cw = join(work, name);
    mkdirSync(cw, { recursive: true });
    const c = { name, snapshotter: name === 'tsblock-devmapper' ? 'tsblock' : 'devmapper' };
    let config = {};
    if (c.tsblock === undefined && name === 'tsblock-devmapper') {
      c.tsblock = await startTsblock(join(cw, 'tsblock'));
      config = { proxies: [{ name: 'tsblock', type: 'snapshot', address: c.tsblock.socket }] };
    }
    // no udev in the guest: containerd's devmapper runs dmsetup, which must make the /dev/mapper nodes itself
    c.ctrd = new Containerd({ work: cw, bins, root: join(cw, 'containerd'), config, env: { DM_DISABLE_UDEV: '1' } });
    if (name === 'containerd-devmapper') writeFileSync(c.ctrd.configFile, readFileSync(c.ctrd.configFile, 'utf8') + devmapperToml(join(cw, 'devmapper'), ctrdPool()));
    await c.ctrd.start();
    cleanups.push(async () => {
      await c.ctrd.removeAll();
      await c.ctrd.ctr(['images', 'rm', '--sync', ref], { check: false });
      await c.ctrd.stop();
    });
    configs.push(c);
    log(`${name}: containerd ${bins.version} up`);
  }
  const results = Object.fromEntries(configs.map((c) => [c.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...configs].reverse() : configs;
    for (const c of order) {
      const r = await cycle(c, ref);
      results[c.name].push(r);
      log(`round ${round + 1} ${c.name}: ${METRICS.map(([k]) => `${k} ${fmt(r[k])}`).join(', ')}, pool +${(r.poolBytes / 1024 ** 2).toFixed(0)} MiB${r.tsblockCpu !== undefined ? `, tsblock CPU ${(r.tsblockCpu / 1000).toFixed(1)} s ${JSON.stringify(r.rpcMs)}` : ''}, containerd CPU ${(r.containerdCpu / 1000).toFixed(1)} s [${JSON.stringify(r.check)}]`);
    }
  }
  const checks = configs.flatMap((c) => results[c.name].map((r) => ({ name: c.name, ...r.check })));
  const bad = checks.filter((k) => k.hash !== checks[0].hash || k.files !== checks[0].files || k.snapshotsLeft !== 0);
  const med = {};
  for (const c of configs) {
    med[c.name] = {};
    for (const [k] of METRICS) med[c.name][k] = median(results[c.name].map((r) => r[k]));
    med[c.name].poolBytes = median(results[c.name].map((r) => r.poolBytes));
    med[c.name].tsblockCpu = median(results[c.name].map((r) => r.tsblockCpu ?? NaN));
    med[c.name].containerdCpu = median(results[c.name].map((r) => r.containerdCpu));
  }
  const t = med['tsblock-devmapper'];
  const d = med['containerd-devmapper'];
  const hostLoad = process.env.TSBLOCK_BENCH_HOST_LOAD ?? null;
  const lines = [`containerd ${bins.version}, ${img.layers.length}-layer image (${(img.compressedBytes / 1024 ** 2).toFixed(0)} MiB compressed, ${checks[0].files} files), ${ROUNDS} rounds, medians; ${process.env.TSBLOCK_IN_VM ? 'qemu TCG guest' : 'native'}, kernel ${os.release()}, host load ${hostLoad ?? '?'}, guest load at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`, '',
    '| | tsblock-devmapper | containerd-devmapper | tsblock / containerd |', '| --- | --- | --- | --- |'];
  for (const [k, label] of METRICS) lines.push(`| ${label} | ${fmt(t[k])} | ${fmt(d[k])} | ${(t[k] / d[k]).toFixed(2)}× |`);
  const mib = (b) => `${(b / 1024 ** 2).toFixed(0)} MiB`;
  lines.push(`| pool data used, image + ${STARTS} running (10 s idle) | ${mib(t.poolBytes)} | ${mib(d.poolBytes)} | ${(t.poolBytes / d.poolBytes).toFixed(2)}× |`);
  lines.push(`| tsblock CPU per round | ${(t.tsblockCpu / 1000).toFixed(1)} s | | |`);
  lines.push(`| containerd CPU per round | ${(t.containerdCpu / 1000).toFixed(1)} s | ${(d.containerdCpu / 1000).toFixed(1)} s | |`);
  console.log(lines.join('\n'));
  console.log(`\ncontent check: ${bad.length ? `MISMATCH ${JSON.stringify(bad)}` : `ok (${checks[0].files} files, listing ${checks[0].hash}, no snapshot left after GC)`}`);
  const doc = { date: new Date().toISOString(), machine: process.env.TSBLOCK_IN_VM ? 'run-in-vm (qemu TCG)' : 'native', kernel: os.release(), hostLoad, guestLoad: os.loadavg(),
    containerd: bins.version, image: { layers: img.layers.length, compressedBytes: img.compressedBytes, files: checks[0].files }, rounds: ROUNDS, starts: STARTS,
    medians: med, ratios: Object.fromEntries([...METRICS.map(([k]) => k), 'poolBytes'].map((k) => [k, Math.round((t[k] / d[k]) * 100) / 100])), runs: results,
    contentCheck: bad.length ? { ok: false, mismatches: bad } : { ok: true, ...checks[0] } };
  if (values.json) writeFileSync(values.json, JSON.stringify(doc, null, 1) + '\n');
  if (bad.length) process.exitCode = 1;
}

try {
  await main();
} catch (err) {
  console.error(err.stack ?? String(err));
  process.exitCode = 1;
} finally {
  await release();
}
