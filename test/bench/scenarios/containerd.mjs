// containerd: a real containerd 1.6 (own temp root, state and socket) with a
// proxy_plugins entry per snapshotter under test, plus its built-in
// overlayfs. Measures `ctr images import --snapshotter X` of a 16-layer
// image (download-free: the unpack is the snapshotter's Prepare/mount/apply/
// Commit per layer) and `ctr run --rm` from spawn to the first byte of output.

import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Server } from '../lib/servers.mjs';
import { buildImage, IMAGE_NAME } from '../lib/image.mjs';
import { nowMs, sleep, spawnLogged, summary, which, rmrf } from '../lib/util.mjs';

function run(cmd, args, { firstOutput = false, timeoutMs = 300000 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    let first;
    let out = '';
    let err = '';
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (c) => {
      first ??= nowMs() - t0;
      out += c;
    });
    p.stderr.on('data', (c) => (err += c));
    p.on('close', (code) => {
      clearTimeout(timer);
      const ms = nowMs() - t0;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim().slice(-500)}`));
      else resolve({ ms, first: firstOutput ? first : undefined, out });
    });
  });
}

export async function containerdBench(targets, { workDir, logDir, reps = 3, log }) {
  if (!which('containerd') || !which('ctr')) return { targets: {}, skipped: 'containerd/ctr not installed' };
  const image = await buildImage();
  const base = join('/var/tmp', `tsbench-ctrd-${process.pid}`);
  mkdirSync(base, { recursive: true });
  const sock = join(base, 'containerd.sock');
  const servers = [];
  const res = {};
  let ctrd;
  try {
    for (const t of targets) {
      const s = new Server(t, workDir, logDir);
      servers.push(s);
      await s.start();
    }
    const proxies = servers.map((s) => `[proxy_plugins."bench-${s.target.id}"]\n  type = "snapshot"\n  address = "${s.socket}"\n`).join('\n');
    const config = `version = 2
root = "${base}/root"
state = "${base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${sock}"
[ttrpc]
  address = "${sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
${proxies}`;
    writeFileSync(join(base, 'config.toml'), config);
    ctrd = spawnLogged('containerd', ['--config', join(base, 'config.toml')], join(logDir, 'containerd.log'));
    const t0 = nowMs();
    while (!existsSync(sock)) {
      if (ctrd.exitCode !== null) throw new Error('containerd exited at start-up (see bench-results/logs/containerd.log)');
      if (nowMs() - t0 > 30000) throw new Error('containerd did not start in 30 s');
      await sleep(20);
    }
    const ctr = (ns, ...args) => ['ctr', ['--address', sock, '--namespace', ns, ...args]];
    const cases = [...servers.map((s) => [s.target.id, `bench-${s.target.id}`]), ['overlayfs-builtin', 'overlayfs']];
    // Repetitions are interleaved across snapshotters (rep 1 of each, then
    // rep 2 …) so a load change on the shared machine hits all alike.
    const acc = new Map(cases.map(([id]) => [id, { imp: [], first: [], total: [] }]));
    for (let i = 0; i < reps; i++) {
      for (const [id, snapshotter] of cases) {
        const a = acc.get(id);
        if (a.error) continue;
        try {
          const ns = `b-${id}-${i}`;
          log(`containerd: import into ${snapshotter} (${i + 1}/${reps})`);
          a.imp.push((await run(...ctr(ns, 'images', 'import', '--snapshotter', snapshotter, image))).ms);
          const r = await run(...ctr(ns, 'run', '--rm', '--snapshotter', snapshotter, IMAGE_NAME, `c-${i}`, '/bin/sh', '-c', 'echo ready'), { firstOutput: true });
          if (!r.out.includes('ready')) throw new Error(`ctr run printed ${JSON.stringify(r.out)}`);
          a.first.push(r.first);
          a.total.push(r.ms);
        } catch (err) {
          a.error = String(err.message);
          log(`containerd: ${id}: ${err.message}`);
        }
      }
    }
    for (const [id, a] of acc) {
      res[id] = a.error ? { error: a.error } : { import: summary(a.imp), run: summary(a.first), run_total: summary(a.total) };
    }
  } finally {
    if (ctrd && ctrd.exitCode === null) {
      try {
        process.kill(-ctrd.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await new Promise((r) => (ctrd.exitCode !== null ? r() : ctrd.once('exit', r)));
    }
    for (const s of servers) await s.destroy();
    rmrf(base);
  }
  return { targets: res };
}
