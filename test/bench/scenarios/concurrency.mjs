// concurrency: N clients, each on its own connection, loop Prepare (child of
// a committed base) → Stat → Mounts → Remove for a fixed time; ops/s counts
// every RPC.

import { nowMs } from '../lib/util.mjs';

export async function concurrency(server, { clients = 8, seconds = 5 }) {
  const run = `conc-${Date.now()}`;
  const c0 = server.client;
  await c0.prepare(`${run}/base-a`);
  await c0.commit(`${run}/base`, `${run}/base-a`);
  const conns = Array.from({ length: clients }, () => server.newClient());
  let ops = 0;
  let errors = 0;
  const end = nowMs() + seconds * 1000;
  const t0 = nowMs();
  await Promise.all(
    conns.map(async (c, w) => {
      for (let i = 0; nowMs() < end; i++) {
        const key = `${run}/w${w}-${i}`;
        try {
          await c.prepare(key, `${run}/base`);
          await c.stat(key);
          await c.mounts(key);
          await c.remove(key);
          ops += 4;
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (nowMs() - t0) / 1000;
  for (const c of conns) c.close();
  await c0.remove(`${run}/base`);
  return { clients, seconds: Math.round(elapsed * 10) / 10, ops, errors, ops_per_s: Math.round(ops / elapsed) };
}
