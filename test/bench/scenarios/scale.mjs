// scale: List latency with 1,000 and 10,000 snapshots in the store, then
// daemon start-up time and RSS with 10,000 snapshots. The store is filled
// with Views of one committed snapshot (metadata-heavy, storage-light for
// every peer), 8 requests in flight.

import { nowMs, summary, median, sleep } from '../lib/util.mjs';

async function fill(server, from, to, parent, run) {
  let next = from;
  const conns = Array.from({ length: 8 }, () => server.newClient());
  await Promise.all(
    conns.map(async (c) => {
      while (next < to) {
        const i = next++;
        await c.view(`${run}/view-${i}`, parent);
      }
    }),
  );
  for (const c of conns) c.close();
}

async function listTimes(server, reps, warmup = 5) {
  const xs = [];
  let count = 0;
  for (let i = 0; i < warmup; i++) await server.client.list();
  for (let i = 0; i < reps; i++) {
    const t0 = nowMs();
    count = await server.client.list();
    xs.push(nowMs() - t0);
  }
  return { ...summary(xs), count };
}

export async function scale(server, { sizes = [1000, 10000], reps = 15, restarts = 3 }) {
  const run = `scale-${Date.now()}`;
  await server.client.prepare(`${run}/base-a`);
  await server.client.commit(`${run}/base`, `${run}/base-a`);
  const out = { list: {} };
  let have = 0;
  const t0 = nowMs();
  for (const n of sizes) {
    await fill(server, have, n, `${run}/base`, run);
    have = n;
    out.list[n] = await listTimes(server, reps);
  }
  out.fill_ms = Math.round(nowMs() - t0);
  out.rss_mib_running = server.rssMiB();
  const starts = [];
  const rss = [];
  const rss1 = [];
  for (let i = 0; i < restarts; i++) {
    await server.stop();
    starts.push(await server.start());
    await server.client.list();
    await sleep(300);
    rss1.push(server.rssMiB());
    // Steady state, not the best case: more full Lists after the restart.
    for (let k = 0; k < 4; k++) await server.client.list();
    await sleep(300);
    rss.push(server.rssMiB());
  }
  out.snapshots = have + 1;
  out.startup_ms = summary(starts);
  out.rss_mib_after_restart_and_1_list = median(rss1);
  out.rss_mib_after_restart_and_5_lists = median(rss);
  return out;
}
