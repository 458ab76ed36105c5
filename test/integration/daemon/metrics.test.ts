// The /metrics endpoint scraped and parsed after real RPCs: per-RPC latency
// histograms, errors by gRPC code, snapshots by kind, per-snapshot usage,
// root space; and how a busy metrics port is handled.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { rootReason } from '../../helpers/env.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { merge } from '../../../src/config/index.js';
import { startConfig, type RunningConfig } from '../../../src/daemon/run.js';
import { Client, parseProm, recordingLogger, sample } from '../cli/helpers.js';

describe.skipIf(rootReason)(`Prometheus /metrics${rootReason ? ` (skipped: ${rootReason})` : ''}`, () => {
  let dir: string;
  let running: RunningConfig | undefined;
  let client: Client;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync('/var/tmp/tsblock-metrics-');
    const config = merge([{ metrics_address: '127.0.0.1:0', snapshotters: { m: { root: join(dir, 'root'), socket: join(dir, 'm.sock'), base_size: '32M' } } }]);
    running = await startConfig(config, recordingLogger().log, { env: {} });
    base = `http://${running.metrics!.address}`;
    client = new Client(join(dir, 'm.sock'), 'm');
    await client.prepare('a1');
    await client.commit('c1', 'a1');
    await client.prepare('a2', 'c1');
    await client.view('v1', 'c1');
    await expect(client.stat('missing')).rejects.toMatchObject({ code: 5 });
    await expect(client.stat('missing')).rejects.toMatchObject({ code: 5 });
    await expect(client.prepare('a2', 'c1')).rejects.toMatchObject({ code: 6 });
  });

  afterAll(async () => {
    client?.close();
    await running?.stop();
    const leaks = dir ? leaksUnder(dir) : [];
    if (dir) rmSync(dir, { recursive: true, force: true });
    expect(leaks).toEqual([]);
  });

  it('serves Prometheus text with the declared metric types', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0.0.4/);
    const { types } = parseProm(await res.text());
    expect(types.get('tsblock_grpc_request_duration_seconds')).toBe('histogram');
    expect(types.get('tsblock_grpc_errors_total')).toBe('counter');
    expect(types.get('tsblock_snapshots')).toBe('gauge');
    expect(types.get('tsblock_snapshot_usage_bytes')).toBe('gauge');
    expect(types.get('tsblock_root_filesystem_bytes')).toBe('gauge');
    expect(types.get('tsblock_pool_data_bytes')).toBe('gauge');
  });

  it('times every RPC by method and code, and counts errors by code', async () => {
    const { samples } = parseProm(await (await fetch(`${base}/metrics`)).text());
    const count = (method: string, code: string) => sample(samples, 'tsblock_grpc_request_duration_seconds_count', { snapshotter: 'm', method, code })?.value;
    expect(count('Prepare', 'OK')).toBe(2);
    expect(count('Commit', 'OK')).toBe(1);
    expect(count('View', 'OK')).toBe(1);
    expect(count('Stat', 'NOT_FOUND')).toBe(2);
    expect(count('Prepare', 'ALREADY_EXISTS')).toBe(1);
    expect(sample(samples, 'tsblock_grpc_errors_total', { method: 'Stat', code: 'NOT_FOUND' })?.value).toBe(2);
    expect(sample(samples, 'tsblock_grpc_errors_total', { method: 'Prepare', code: 'ALREADY_EXISTS' })?.value).toBe(1);
    expect(sample(samples, 'tsblock_grpc_errors_total', { method: 'Prepare', code: 'OK' })).toBeUndefined();
    const inf = sample(samples, 'tsblock_grpc_request_duration_seconds_bucket', { method: 'Prepare', code: 'OK', le: '+Inf' });
    expect(inf?.value).toBe(2);
    expect(sample(samples, 'tsblock_grpc_request_duration_seconds_sum', { method: 'Prepare', code: 'OK' })!.value).toBeGreaterThan(0);
  });

  it('reports snapshots by kind, each snapshot\'s usage and the root filesystem', async () => {
    const { samples } = parseProm(await (await fetch(`${base}/metrics`)).text());
    expect(sample(samples, 'tsblock_snapshots', { snapshotter: 'm', kind: 'active' })?.value).toBe(1);
    expect(sample(samples, 'tsblock_snapshots', { snapshotter: 'm', kind: 'committed' })?.value).toBe(1);
    expect(sample(samples, 'tsblock_snapshots', { snapshotter: 'm', kind: 'view' })?.value).toBe(1);
    for (const key of ['c1', 'a2', 'v1']) expect(sample(samples, 'tsblock_snapshot_usage_bytes', { snapshotter: 'm', key })).toBeDefined();
    const total = sample(samples, 'tsblock_root_filesystem_bytes', { snapshotter: 'm', state: 'total' })!.value;
    const free = sample(samples, 'tsblock_root_filesystem_bytes', { snapshotter: 'm', state: 'free' })!.value;
    expect(total).toBeGreaterThan(free);
    expect(free).toBeGreaterThan(0);
    // blockfile has no pool: no pool samples rather than zeros.
    expect(sample(samples, 'tsblock_pool_data_bytes')).toBeUndefined();
  });

  it('answers /healthz and 404 elsewhere', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it('a busy configured metrics address fails the start; a busy default only disables metrics', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const inst = { snapshotters: { busy: { root: join(dir, 'busy'), socket: join(dir, 'busy.sock'), base_size: '32M' } } };
      await expect(startConfig(merge([{ ...inst, metrics_address: `127.0.0.1:${port}` }]), recordingLogger().log, { env: {} })).rejects.toThrow(/EADDRINUSE/);
      const cfg = { ...merge([inst]), metricsAddress: `127.0.0.1:${port}`, metricsAddressExplicit: false };
      const rec = recordingLogger();
      const r = await startConfig(cfg, rec.log, { env: {} });
      expect(r.metrics).toBeUndefined();
      expect(rec.lines.some((l) => l.msg === 'metrics endpoint disabled: default address unavailable')).toBe(true);
      await r.stop();
    } finally {
      blocker.close();
    }
  });
});
