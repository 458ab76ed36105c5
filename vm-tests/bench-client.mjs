// bench-client.mjs: times Prepare-with-parent and Commit through the
// containerd.services.snapshots.v1.Snapshots gRPC service of any server
// (tsblock's proxy socket, or containerd's own socket for its built-in
// snapshotters), with the containerd-namespace metadata header. Used by
// vm-tests/bench-devmapper.sh; prints one JSON object on stdout.
//
//   node vm-tests/bench-client.mjs --socket S --snapshotter NAME [--namespace NS] [--iterations N] [--warmup N] [--label L] [--pause MS]
//
// Per iteration: Stat(parent) (the floor of one RPC), Prepare(key,
// parent=<a committed one-file layer>) then Commit(name, key), each timed alone (client wall time, ms); the pair is
// removed afterwards, untimed. Nothing is mounted: both calls are the
// snapshotter's own cost.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(REPO, 'package.json'));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function args() {
  const a = { namespace: 'bench', iterations: 20, warmup: 1, label: '', pause: 0 };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) {
    const k = v[i].replace(/^--/, '');
    a[k] = k === 'iterations' || k === 'pause' || k === 'warmup' ? Number(v[i + 1]) : v[i + 1];
  }
  if (!a.socket || !a.snapshotter) throw new Error('usage: bench-client.mjs --socket S --snapshotter NAME [--namespace NS] [--iterations N]');
  return a;
}

/** quantile is the nearest-rank quantile of sorted ms values. */
function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function summary(ms) {
  const s = [...ms].sort((x, y) => x - y);
  const r = (x) => Math.round(x * 100) / 100;
  return { n: s.length, p50: r(quantile(s, 0.5)), p99: r(quantile(s, 0.99)), min: r(s[0]), max: r(s[s.length - 1]), mean: r(s.reduce((x, y) => x + y, 0) / s.length) };
}

async function main() {
  const a = args();
  const def = protoLoader.loadSync('containerd/services/snapshots/v1/snapshots.proto', {
    keepCase: true, longs: Number, enums: Number, defaults: true, includeDirs: [join(REPO, 'proto')],
  });
  const S = grpc.loadPackageDefinition(def).containerd.services.snapshots.v1.Snapshots;
  const c = new S(`unix://${a.socket}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('containerd-namespace', a.namespace);
  const call = (m, req) => new Promise((resolve, reject) => c[m]({ snapshotter: a.snapshotter, ...req }, md, (e, r) => (e ? reject(e) : resolve(r))));
  await new Promise((resolve, reject) => c.waitForReady(Date.now() + 60000, (e) => (e ? reject(e) : resolve())));

  // containerd's metadata GC would collect unreferenced snapshots between
  // calls (its Commit deletes the active key, which schedules a GC): a
  // gc.root label keeps them; tsblock gets the same labels.
  const labels = { 'containerd.io/gc.root': new Date().toISOString() };
  const run = `b${process.pid}-${Date.now()}`;
  const parent = `${run}-parent`;
  await call('Prepare', { key: `${parent}-a`, parent: '', labels });
  await call('Commit', { name: parent, key: `${parent}-a`, labels });
  // --warmup untimed rounds (default 1: first-call costs, module loads, the
  // first activation; more lets a JIT-compiled server reach its steady state,
  // as the host bench's 200 warm-up rounds do), the same for every server.
  for (let w = 0; w < a.warmup; w++) {
    await call('Stat', { key: parent });
    await call('Prepare', { key: `${run}-warm${w}`, parent, labels });
    await call('Commit', { name: `${run}-warm${w}-c`, key: `${run}-warm${w}`, labels });
    await call('Remove', { key: `${run}-warm${w}-c` });
  }

  const prepare = [];
  const commit = [];
  const stat = [];
  for (let i = 0; i < a.iterations; i++) {
    const key = `${run}-k${i}`;
    // --pause: each iteration starts on an idle snapshotter, as a kubelet's
    // Prepares do (pulls, mounts and VM boots run between them); untimed.
    if (a.pause > 0) await new Promise((r) => setTimeout(r, a.pause));
    let t = process.hrtime.bigint();
    // Stat of the parent: the floor of one RPC (client, gRPC, one metadata read) on this machine.
    await call('Stat', { key: parent });
    stat.push(Number(process.hrtime.bigint() - t) / 1e6);
    t = process.hrtime.bigint();
    await call('Prepare', { key, parent, labels });
    prepare.push(Number(process.hrtime.bigint() - t) / 1e6);
    t = process.hrtime.bigint();
    await call('Commit', { name: `${run}-c${i}`, key, labels });
    commit.push(Number(process.hrtime.bigint() - t) / 1e6);
    await call('Remove', { key: `${run}-c${i}` });
  }
  await call('Remove', { key: parent });
  c.close();
  process.stdout.write(`${JSON.stringify({ label: a.label || a.snapshotter, snapshotter: a.snapshotter, iterations: a.iterations, warmup: a.warmup, pauseMs: a.pause, prepareWithParentMs: summary(prepare), commitMs: summary(commit), statMs: summary(stat), rawMs: { prepare, commit, stat } })}\n`);
}

main().catch((err) => {
  console.error(`bench-client: ${err.stack ?? err}`);
  process.exit(1);
});
