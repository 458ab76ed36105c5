// latency: p50/p99 of each Snapshots RPC, one call at a time, same client
// for every snapshotter. Keys are unique per run so nothing is reused.

import { nowMs, summary } from '../lib/util.mjs';

async function t(samples, name, fn) {
  const t0 = nowMs();
  const v = await fn();
  (samples[name] ??= []).push(nowMs() - t0);
  return v;
}

async function rounds(c, s, run, n) {
  for (let i = 0; i < n; i++) {
    await t(s, 'prepare_first', () => c.prepare(`${run}/a${i}`));
    await t(s, 'commit', () => c.commit(`${run}/c${i}`, `${run}/a${i}`));
  }
  for (let i = 0; i < n; i++) {
    await t(s, 'prepare_parent', () => c.prepare(`${run}/p${i}`, `${run}/c${i}`));
    await t(s, 'view', () => c.view(`${run}/v${i}`, `${run}/c${i}`));
    await t(s, 'mounts', () => c.mounts(`${run}/p${i}`));
    await t(s, 'stat', () => c.stat(`${run}/c${i}`));
  }
  for (let i = 0; i < n; i++) {
    await t(s, 'remove', () => c.remove(`${run}/p${i}`));
    await t(s, 'remove_view', () => c.remove(`${run}/v${i}`));
    await t(s, 'remove_committed', () => c.remove(`${run}/c${i}`));
  }
}

/**
 * latency measures n rounds of Prepare/Commit/View/Mounts/Stat/Remove after
 * `warmup` unrecorded rounds (steady state: a JIT-compiled daemon is what a
 * node runs; a Go peer has nothing to warm but gets the same rounds).
 */
export async function latency(server, { n, warmup = 200 }) {
  const c = server.client;
  await rounds(c, {}, `warm-${Date.now()}`, warmup);
  const s = {};
  await rounds(c, s, `lat-${Date.now()}`, n);
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, summary(v)]));
}

/**
 * latencyInterleaved measures every server in turns of `block` rounds, so a
 * load change on the shared machine hits every snapshotter alike; returns
 * {id: per-RPC summaries}.
 */
export async function latencyInterleaved(servers, { n, warmup = 200, block = 10 }) {
  for (const sv of servers) await rounds(sv.client, {}, `warm-${Date.now()}`, warmup);
  const samples = new Map(servers.map((sv) => [sv, {}]));
  for (let done = 0; done < n; done += block) {
    for (const sv of servers) await rounds(sv.client, samples.get(sv), `lat-${Date.now()}-${done}`, Math.min(block, n - done));
  }
  return Object.fromEntries(
    servers.map((sv) => [sv.target.id, Object.fromEntries(Object.entries(samples.get(sv)).map(([k, v]) => [k, summary(v)]))]),
  );
}
