#!/usr/bin/env node
// npm run bench:store-fs — which filesystem the blockfile store should be, by
// measurement (docs/performance.md, "The store on hosts that cannot reflink").
// On an ext4 host directory (default /var/tmp) it builds, for each candidate:
//   copy   images directly on the ext4 host (sparse copies: tsblock's old default)
//   xfs    XFS reflink=1 in a sparse file on a direct-I/O loop device (the store)
//   btrfs  btrfs in a sparse file on a direct-I/O loop device
// then one 10 GiB sparse ext4 layer image holding 5000 small files and a
// 200 MiB file, and measures in the same run, interleaved per round:
//   clone      one child image of it (FICLONE, or the sparse copy)
//   10 clones  + a 16 MiB write into each of 10 clones mounted at once (a start burst)
//   read cold  mount a clone read-only and read every file after dropping caches
//   disk       host bytes allocated for the layer + 10 written clones
//   remove     unlink the 10 clones and the host bytes given back within 10 s
//
//   node test/bench/store-fs.mjs [--rounds N] [--dir DIR] [--only xfs,btrfs,copy]
// Needs root and a built tree (npm run build): clones and mounts use dist/.

import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync, writeSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, nowMs, median } from './lib/util.mjs';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, dir: { type: 'string', default: '/var/tmp' }, only: { type: 'string' } } });
const ROUNDS = Number(values.rounds);
const dist = (p) => import(join(REPO, 'dist', 'src', p));
const { cloneOrCopy } = await dist('sys/reflink.js');
const { mountOne, releaseMount } = await dist('sys/mount.js');
const { attachLoop, releaseLoop, detachLoop } = await dist('sys/loop.js');

const MiB = 1024 ** 2;
const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const dropCaches = () => { execFileSync('sync'); writeFileSync('/proc/sys/vm/drop_caches', '3'); };
const allocated = (p) => statSync(p).blocks * 512;

const work = mkdtempSync(join(values.dir, 'tsbench-storefs-'));
const hostType = sh('stat', ['-f', '-c', '%T', work]).trim();
const cleanups = [];
process.on('SIGINT', () => { release(); process.exit(130); });
function release() {
  for (const f of cleanups.splice(0).reverse()) { try { f(); } catch { /* keep going */ } }
  rmSync(work, { recursive: true, force: true });
}

/** candidate sets up one store and returns {dir, hostFile} (hostFile: what the host pays). */
function candidate(name) {
  if (name === 'copy') { const dir = join(work, 'copy'); mkdirSync(dir); return { dir, hostPath: dir }; }
  const file = join(work, `${name}.img`);
  const dir = join(work, name);
  mkdirSync(dir);
  closeSync(openSync(file, 'w'));
  execFileSync('truncate', ['-s', '32G', file]);
  if (name === 'xfs') sh('mkfs.xfs', ['-q', '-K', '-m', 'reflink=1', '-s', 'size=4096', file]);
  else sh('mkfs.btrfs', ['-q', '-K', '-f', '-s', '4096', file]);
  const dev = attachLoop(file, { autoclear: true, directIo: true, blockSize: 4096 });
  mountOne({ type: name, source: dev.path, options: ['noatime', 'discard'] }, dir);
  releaseLoop(dev);
  cleanups.push(() => sh('umount', [dir]));
  return { dir, hostPath: file };
}

/** The layer: a 10 GiB sparse ext4 with 5000 small files and a 200 MiB one. */
function makeLayer(dir) {
  const img = join(dir, 'layer.img');
  closeSync(openSync(img, 'w'));
  execFileSync('truncate', ['-s', '10G', img]);
  sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', img]);
  withMount(img, false, (m) => {
    for (let d = 0; d < 50; d++) {
      mkdirSync(join(m, `d${d}`));
      for (let f = 0; f < 100; f++) writeFileSync(join(m, `d${d}`, `f${f}`), Buffer.alloc(2048 + ((d * 100 + f) % 7) * 1024, d + f));
    }
    const fd = openSync(join(m, 'big'), 'w');
    const chunk = Buffer.alloc(MiB);
    for (let i = 0; i < 200; i++) { chunk.fill(i); writeSync(fd, chunk); }
    closeSync(fd);
  });
  execFileSync('sync');
  return img;
}

function withMount(img, ro, fn) {
  const target = mkdtempSync(join(work, 'm-'));
  const h = mountOne({ type: 'ext4', source: img, options: ['loop', ro ? 'ro' : 'rw', ...(ro ? ['noload'] : [])] }, target);
  try { return fn(target); } finally { releaseMount(h); rmSync(target, { recursive: true }); }
}

function readAll(dir) {
  let bytes = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) bytes += readAll(p);
    else if (e.isFile()) bytes += readFileSync(p).length;
  }
  return bytes;
}

const names = (values.only ?? 'copy,xfs,btrfs').split(',');
const results = Object.fromEntries(names.map((n) => [n, { clone: [], burst: [], readCold: [], disk: [], returned: [] }]));
const setups = {};
try {
  for (const n of names) { setups[n] = candidate(n); setups[n].layer = makeLayer(setups[n].dir); }
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse();
    for (const n of order) {
      const s = setups[n];
      const res = results[n];
      let t = nowMs();
      await cloneOrCopy(s.layer, join(s.dir, `c-${r}-x`));
      res.clone.push(nowMs() - t);
      // A start burst: 10 clones, each mounted and written 16 MiB.
      t = nowMs();
      const kids = [];
      for (let i = 0; i < 10; i++) { const k = join(s.dir, `c-${r}-${i}`); await cloneOrCopy(s.layer, k); kids.push(k); }
      for (const k of kids) withMount(k, false, (m) => writeFileSync(join(m, 'own'), Buffer.alloc(16 * MiB, 3)));
      execFileSync('sync');
      res.burst.push(nowMs() - t);
      // copy: the layer and its copies; a store: its whole file on the host.
      res.disk.push(n === 'copy' ? [s.layer, ...kids].reduce((a, f) => a + allocated(f), 0) : allocated(s.hostPath));
      dropCaches();
      t = nowMs();
      const bytes = withMount(kids[0], true, (m) => readAll(m));
      res.readCold.push(nowMs() - t);
      if (bytes < 200 * MiB) throw new Error(`${n}: read only ${bytes} bytes`);
      const before = n === 'copy' ? 0 : allocated(s.hostPath);
      for (const k of [...kids, join(s.dir, `c-${r}-x`)]) unlinkSync(k);
      execFileSync('sync');
      let back = 0;
      for (let i = 0; i < 100 && n !== 'copy'; i++) {
        back = before - allocated(s.hostPath);
        if (back > 150 * MiB) break;
        await new Promise((res2) => setTimeout(res2, 100));
      }
      res.returned.push(back);
    }
  }
} finally {
  release();
}

const f = (ms) => `${ms < 10 ? ms.toFixed(2) : ms.toFixed(0)} ms`;
const g = (b) => `${(b / MiB).toFixed(0)} MiB`;
console.log(`\nstore filesystem candidates on a ${hostType} host, ${ROUNDS} rounds, medians (ratio to xfs):\n`);
console.log('| | ' + names.join(' | ') + ' |');
console.log('|---|' + names.map(() => '---').join('|') + '|');
const row = (label, key, fmt) => {
  const base = median(results.xfs?.[key] ?? [1]);
  console.log(`| ${label} | ` + names.map((n) => { const m = median(results[n][key]); return `${fmt(m)}${results.xfs && n !== 'xfs' && base > 0 ? ` (${(m / base).toFixed(2)}×)` : ''}`; }).join(' | ') + ' |');
};
row('clone a 10 GiB image (200 MiB + 5000 files)', 'clone', f);
row('10 clones, each mounted and written 16 MiB', 'burst', f);
row('read every file of a clone, cold cache', 'readCold', f);
row('host disk: layer + 10 written clones (store: whole file)', 'disk', g);
row('host bytes back within 10 s of removing them', 'returned', g);
writeFileSync(join(REPO, '.tmp', 'store-fs.json'), JSON.stringify({ host: hostType, rounds: ROUNDS, results }, null, 2));
