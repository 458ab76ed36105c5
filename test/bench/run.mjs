#!/usr/bin/env node
// npm run bench: tsblock (blockfile on XFS reflink and on ext4) against
// containerd's own snapshotters (overlayfs, native) served as proxies by
// refsnapshotter, all measured by the same gRPC client. Writes
// bench-results/<stamp>.{json,md} and bench-results/latest.{json,md}.
//
//   npm run bench -- [--quick] [--only latency,chain16,chain200,concurrency,scale,containerd,apply]
//                    [--targets tsblock-xfs,overlayfs,…] [--with-vm] [--out DIR]
//
// Needs root (mounts, loop devices) and a built tree (npm run build).

import { parseArgs } from 'node:util';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync, copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { REPO, rmrf } from './lib/util.mjs';
import { Server, targets as allTargets } from './lib/servers.mjs';
import { makeScratchXfs } from './lib/xfs.mjs';
import { metricRows, ratios, markdown, goals, goalsMarkdown } from './lib/report.mjs';
import { latencyInterleaved } from './scenarios/latency.mjs';
import { chain16, chainDeep } from './scenarios/chain.mjs';
import { concurrency } from './scenarios/concurrency.mjs';
import { scale } from './scenarios/scale.mjs';

const ALL = ['latency', 'chain16', 'chain200', 'concurrency', 'containerd', 'scale', 'apply'];

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    targets: { type: 'string' },
    'with-vm': { type: 'boolean', default: false },
    out: { type: 'string', default: join(REPO, 'bench-results') },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench -- [--quick] [--only ${ALL.join(',')}] [--targets IDS] [--with-vm] [--out DIR]`);
  process.exit(0);
}
if (process.getuid?.() !== 0) {
  console.error('bench: must run as root (it mounts snapshots and attaches loop devices)');
  process.exit(2);
}
const only = new Set(values.only ? values.only.split(',') : ALL);
for (const o of only) if (!ALL.includes(o)) (console.error(`bench: unknown scenario ${o}; known: ${ALL.join(', ')}`), process.exit(2));
const quick = values.quick;
const P = {
  latencyN: quick ? 20 : 100,
  warmup: quick ? 100 : 200,
  chainLayers: quick ? 8 : 16,
  deepLayers: quick ? 50 : 200,
  concSeconds: quick ? 2 : 5,
  scaleSizes: quick ? [1000] : [1000, 10000],
  scaleRestarts: quick ? 1 : 3,
  importReps: quick ? 1 : 3,
};

const log = (...a) => console.log(`[${new Date().toISOString().slice(11, 19)}]`, ...a);
const workDir = mkdtempSync(join(os.tmpdir(), 'tsbench-'));
const logDir = join(values.out, 'logs');
mkdirSync(logDir, { recursive: true });
const ext4Dir = '/var/tmp';
const results = {};
const skipped = {};
let xfs;
const cleanups = [];
let stopping = false;
const onSignal = async () => {
  if (stopping) return;
  stopping = true;
  console.error('bench: interrupted, cleaning up');
  for (const c of cleanups.reverse()) await c().catch(() => {});
  process.exit(130);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  const needsServers = [...only].some((s) => s !== 'apply');
  if (needsServers) {
    xfs = makeScratchXfs('/var/tmp');
    if (xfs.error) log(`tsblock-xfs skipped: ${xfs.error}`);
    else cleanups.push(async () => xfs.release());
  }
  let tlist = needsServers ? allTargets({ ext4Dir, xfsDir: xfs?.dir }) : [];
  if (values.targets) {
    const want = new Set(values.targets.split(','));
    tlist = tlist.filter((t) => want.has(t.id));
  }
  for (const t of tlist) {
    if (t.skip) {
      log(`${t.id}: skipped: ${t.skip}`);
      skipped[t.id] = t.skip;
    }
  }
  const live = tlist.filter((t) => !t.skip);

  // RPC latency: all servers up at once, measured in interleaved turns.
  if (only.has('latency') && live.length) {
    const servers = live.map((t) => new Server(t, workDir, logDir));
    try {
      for (const sv of servers) await sv.start();
      log(`latency: ${live.map((t) => t.id).join(', ')} (interleaved, ${P.latencyN} rounds after ${P.warmup} warm-up)…`);
      const lat = await latencyInterleaved(servers, { n: P.latencyN, warmup: P.warmup });
      for (const [id, v] of Object.entries(lat)) (results[id] ??= {}).latency = v;
    } catch (err) {
      log(`latency failed: ${err?.message ?? err}`);
      skipped.latency = String(err?.message ?? err);
    } finally {
      for (const sv of servers) await sv.destroy();
    }
  }

  // Per-target scenarios, one fresh server per target.
  for (const t of live) {
    const r = (results[t.id] ??= {});
    r.fs = t.id.endsWith('xfs') ? 'xfs reflink=1 (loop)' : 'ext4';
    const server = new Server(t, workDir, logDir);
    const destroy = () => server.destroy();
    cleanups.push(destroy);
    try {
      r.startup_empty_ms = Math.round((await server.start()) * 10) / 10;
      log(`${t.id}: up in ${r.startup_empty_ms} ms (root ${server.root})`);
      const step = async (name, fn) => {
        if (!only.has(name)) return;
        log(`${t.id}: ${name}…`);
        try {
          r[name] = await fn();
        } catch (err) {
          r[name] = { error: String(err?.message ?? err) };
          log(`${t.id}: ${name} failed: ${r[name].error}`);
        }
      };
      await step('chain16', () => chain16(server, { workDir, layers: P.chainLayers }));
      await step('chain200', () => chainDeep(server, { workDir, layers: P.deepLayers }));
      await step('concurrency', () => concurrency(server, { clients: 8, seconds: P.concSeconds }));
      await step('scale', () => scale(server, { sizes: P.scaleSizes, restarts: P.scaleRestarts }));
    } catch (err) {
      r.error = String(err?.message ?? err);
      log(`${t.id}: ${r.error}`);
    } finally {
      await server.destroy();
      cleanups.splice(cleanups.indexOf(destroy), 1);
    }
  }

  if (only.has('containerd') && live.length) {
    try {
      const { containerdBench } = await import('./scenarios/containerd.mjs');
      const cres = await containerdBench(live, { workDir, logDir, reps: P.importReps, log });
      for (const [id, v] of Object.entries(cres.targets)) (results[id] ??= {}).containerd = v;
      if (cres.skipped) skipped.containerd = cres.skipped;
    } catch (err) {
      log(`containerd: failed: ${err?.stack ?? err}`);
      skipped.containerd = String(err?.message ?? err);
    }
  }

  // The applier engineer's benchmark, when present.
  if (only.has('apply')) {
    const apply = ['apply.mjs', 'apply.js'].map((f) => join(REPO, 'test', 'bench', f)).find(existsSync);
    if (!apply) skipped.apply = 'test/bench/apply.mjs not present';
    else {
      log('apply: running', apply);
      // apply.mjs prints progress, then the path of its JSON as the last stdout line.
      const p = spawnSync('node', [apply, ...(quick ? ['--layers', '8'] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      process.stdout.write(p.stdout);
      try {
        const last = p.stdout.trim().split('\n').at(-1).trim();
        results.apply = JSON.parse(last.startsWith('{') ? last : readFileSync(last, 'utf8'));
      } catch {
        results.apply = { exit: p.status, output: p.stdout.slice(-2000) };
      }
    }
  }
} finally {
  if (xfs && !xfs.error) xfs.release();
  rmrf(workDir);
}

// VM devmapper numbers from the devmapper engineer's script.
let vm;
if (values['with-vm']) {
  const script = join(REPO, 'vm-tests', 'bench-devmapper.sh');
  if (!existsSync(script)) skipped.vm = 'vm-tests/bench-devmapper.sh not present';
  else {
    // Its JSON goes to --out (inside the checkout: the VM shares it).
    const outFile = join(REPO, '.tmp', 'bench', `devmapper-${process.pid}.json`);
    mkdirSync(join(REPO, '.tmp', 'bench'), { recursive: true });
    log('vm: running', script);
    const p = spawnSync('bash', [script, '--out', outFile, ...(quick ? ['--iterations', '5'] : [])], {
      encoding: 'utf8', stdio: ['ignore', 'inherit', 'inherit'], timeout: 40 * 60 * 1000,
    });
    try {
      vm = JSON.parse(readFileSync(outFile, 'utf8'));
      const by = Object.fromEntries((vm.results ?? []).map((r) => [r.label, r]));
      const t = by['tsblock-devmapper'];
      const c = by['containerd-devmapper'];
      if (t && c) {
        vm.ratios = {
          prepare_parent_p50: Math.round((t.prepareWithParentMs.p50 / c.prepareWithParentMs.p50) * 1000) / 1000,
          commit_p50: Math.round((t.commitMs.p50 / c.commitMs.p50) * 1000) / 1000,
        };
      }
    } catch (err) {
      vm = { exit: p.status, error: `no JSON at ${outFile}: ${err.message}` };
    }
  }
}

const ids = Object.keys(results).filter((k) => k !== 'apply');
const peerResults = Object.fromEntries(ids.map((id) => [id, results[id]]));
const rows = metricRows(peerResults);
const rt = ratios(rows);
const md = markdown(rows, ids, rt);
const meta = {
  date: new Date().toISOString(),
  host: `${os.hostname()} ${os.release()}, ${os.cpus().length} CPUs (shared with other work: medians, moderate iterations)`,
  node: process.version,
  quick,
  params: P,
  note: "overlayfs and native are containerd's own snapshotters (the Go module version test/versions.env pins as CONTAINERD_2_4) served through refsnapshotter (contrib/snapshotservice), so every peer is reached through the same gRPC path; overlayfs removes asynchronously as containerd does.",
};
const goalRows = goals(peerResults);
const out = { meta, skipped, results, ratios: rt, goals: goalRows.map(([goal, value, limit, met]) => ({ goal, value, limit, met })), vm };
const stamp = meta.date.replace(/[:.]/g, '-');
writeFileSync(join(values.out, `${stamp}.json`), JSON.stringify(out, null, 2));
const ap = results.apply;
const applyLine = ap?.tsblock && ap?.containerd
  ? `\n\nApplier (test/bench/apply.mjs, same blockfile backend): tsblock ${ap.tsblock.mbps} MB/s vs containerd's applier ${ap.containerd.mbps} MB/s (ratio ${ap.ratio}).`
  : '';
const vmLine = vm?.ratios
  ? `\n\nDevmapper in the VM (vm-tests/bench-devmapper.sh, ${vm.machine ?? ''}): tsblock/containerd-1.6 Prepare-with-parent p50 ${vm.ratios.prepare_parent_p50}×, Commit p50 ${vm.ratios.commit_p50}×.`
  : vm ? `\n\nDevmapper in the VM: ${vm.error ?? 'no ratios'}` : '';
const mdText = `# tsblock bench ${meta.date}${quick ? ' (quick)' : ''}\n\n${meta.host}\n\n${md}\n\n## Goals (issue 7)\n\n${goalsMarkdown(goalRows)}${applyLine}${vmLine}\n\nSkipped: ${JSON.stringify(skipped)}\n`;
writeFileSync(join(values.out, `${stamp}.md`), mdText);
copyFileSync(join(values.out, `${stamp}.json`), join(values.out, 'latest.json'));
copyFileSync(join(values.out, `${stamp}.md`), join(values.out, 'latest.md'));
console.log('\n' + md + '\n');
if (goalRows.length) console.log(goalsMarkdown(goalRows) + '\n');
if (applyLine) console.log(applyLine.trim());
if (Object.keys(skipped).length) console.log('skipped:', skipped);
if (vm) console.log('vm (devmapper, tsblock/containerd):', JSON.stringify(vm.ratios ?? vm.error ?? vm).slice(0, 2000));
console.log(`results: ${join(values.out, `${stamp}.json`)}`);
