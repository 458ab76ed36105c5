// chain: containerd benchsuite-style layer chains. Per layer: Prepare on the
// previous layer, mount, write, unmount, Commit. The 200-layer chain also
// compares the mount time of a snapshot on top of it with one on top of a
// 1-layer chain (a block snapshotter's mount cost must not grow with depth).

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { median, mountAll, nowMs, quantile, summary, unmountAll } from '../lib/util.mjs';

const payload = randomBytes(1024 * 1024);

function writeMiB(dir, name, mib, bytes) {
  const fd = openSync(join(dir, name), 'w');
  try {
    if (bytes !== undefined) writeSync(fd, payload, 0, bytes);
    // Different content per MiB so no layer dedups with another.
    else for (let i = 0; i < mib; i++) writeSync(fd, Buffer.concat([Buffer.from(`${name}:${i}:`), payload]));
  } finally {
    closeSync(fd);
  }
}

async function layerChain(server, mnt, { layers, mib, bytes, prefix }) {
  const c = server.client;
  const ph = { prepare: [], mount: [], write: [], unmount: [], commit: [], layer: [] };
  let parent = '';
  const names = [];
  for (let i = 0; i < layers; i++) {
    const key = `${prefix}/active-${i}`;
    const name = `${prefix}/layer-${i}`;
    const l0 = nowMs();
    let t0 = nowMs();
    const mounts = await c.prepare(key, parent);
    ph.prepare.push(nowMs() - t0);
    t0 = nowMs();
    const h = await mountAll(mounts, mnt);
    ph.mount.push(nowMs() - t0);
    t0 = nowMs();
    writeMiB(mnt, `f${i}`, mib, bytes);
    ph.write.push(nowMs() - t0);
    t0 = nowMs();
    await unmountAll(h);
    ph.unmount.push(nowMs() - t0);
    t0 = nowMs();
    await c.commit(name, key);
    ph.commit.push(nowMs() - t0);
    ph.layer.push(nowMs() - l0);
    parent = name;
    names.push(name);
  }
  return { ph, names };
}

async function removeAll(server, names) {
  for (const n of [...names].reverse()) await server.client.remove(n);
}

const sum = (xs) => Math.round(xs.reduce((a, b) => a + b, 0) * 10) / 10;

/** chain16 is the benchsuite shape with 10 MiB written per layer. */
export async function chain16(server, { workDir, layers = 16, mib = 10 }) {
  const mnt = join(workDir, `mnt-${server.target.id}`);
  mkdirSync(mnt, { recursive: true });
  const t0 = nowMs();
  const { ph, names } = await layerChain(server, mnt, { layers, mib, prefix: `c16-${Date.now()}` });
  const total = nowMs() - t0;
  await removeAll(server, names);
  return {
    layers,
    mib_per_layer: mib,
    total_ms: Math.round(total),
    mb_per_s: Math.round(((layers * mib * 1.048576) / (total / 1000)) * 10) / 10,
    totals_ms: Object.fromEntries(Object.entries(ph).map(([k, v]) => [k, sum(v)])),
    per_layer: Object.fromEntries(Object.entries(ph).map(([k, v]) => [k, summary(v)])),
  };
}

/** chain200 builds a deep chain (4 KiB per layer) and compares top vs 1-layer mount time. */
export async function chainDeep(server, { workDir, layers = 200, reps = 51, warmup = 4 }) {
  const mnt = join(workDir, `mnt-${server.target.id}`);
  mkdirSync(mnt, { recursive: true });
  const prefix = `c200-${Date.now()}`;
  const t0 = nowMs();
  const { ph, names } = await layerChain(server, mnt, { layers, mib: 0, bytes: 4096, prefix });
  const total = nowMs() - t0;
  const top = [];
  const one = [];
  try {
    // Both snapshots are mounted `warmup` times first (unrecorded: the first
    // mounts of a fresh image read its metadata from disk), then alternately
    // in A-B / B-A pairs so neither always goes first and a load change on
    // the shared machine hits both; the ratio is of medians.
    const mTop = await server.client.prepare(`${prefix}/top`, names.at(-1));
    const mOne = await server.client.prepare(`${prefix}/one`, names[0]);
    for (let i = 0; i < warmup + reps; i++) {
      const pair = i % 2 === 0 ? [[mTop, top], [mOne, one]] : [[mOne, one], [mTop, top]];
      for (const [ms, xs] of pair) {
        const t0 = nowMs();
        const h = await mountAll(ms, mnt);
        const dt = nowMs() - t0;
        if (i >= warmup) xs.push(dt);
        await unmountAll(h);
      }
    }
    await server.client.remove(`${prefix}/top`);
    await server.client.remove(`${prefix}/one`);
  } finally {
    await removeAll(server, names);
  }
  return {
    layers,
    total_ms: Math.round(total),
    per_layer: Object.fromEntries(Object.entries(ph).map(([k, v]) => [k, summary(v)])),
    first10_layer_ms: Math.round(median(ph.layer.slice(0, 10)) * 100) / 100,
    last10_layer_ms: Math.round(median(ph.layer.slice(-10)) * 100) / 100,
    mount_top: summary(top),
    mount_one: summary(one),
    top_vs_one: Math.round((median(top) / median(one)) * 100) / 100,
    // Lower quartiles: under load the mount times are bimodal (a quick mount
    // or one that waited for the CPU); this ratio tracks the mount's own work.
    top_vs_one_p25: Math.round((quantile(top, 0.25) / quantile(one, 0.25)) * 100) / 100,
  };
}
