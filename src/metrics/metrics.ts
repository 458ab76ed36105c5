// metrics defines tsblock's Prometheus metrics on a private registry (so
// several daemons in one test process never collide): per-RPC latency and
// errors by gRPC code, recorded by instrument.ts, and gauges computed at
// scrape time from each instance's store and filesystem (snapshots by kind,
// per-snapshot usage, root and pool space).

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { spaceEvents, type LowSpaceEvent } from '../core/space.js';
import type { MetaStore } from '../storage/metastore.js';
import type { InstanceConfig } from '../config/types.js';
import { listEntries, poolSpace, rootSpace } from '../inspect/inspect.js';

/** RPC_BUCKETS are latency buckets in seconds: a Prepare is ~ms (reflink) to seconds (mkfs, sparse copy). */
export const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** MetricsTarget is one served instance whose state the gauges read. */
export interface MetricsTarget {
  instance: InstanceConfig;
  store: MetaStore;
  /** usage measures an active snapshot exactly (the daemon's own Usage); listEntries' estimate otherwise. */
  usage?: (key: string) => Promise<{ size: number }>;
}

/** TsblockMetrics holds the registry and the metric handles. */
export class TsblockMetrics {
  readonly registry = new Registry();
  readonly rpcDuration: Histogram<'snapshotter' | 'method' | 'code'>;
  readonly rpcErrors: Counter<'snapshotter' | 'method' | 'code'>;
  private readonly targets: MetricsTarget[] = [];
  private readonly onLowSpace: (e: LowSpaceEvent) => void;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.rpcDuration = new Histogram({
      name: 'tsblock_grpc_request_duration_seconds',
      help: 'Snapshots RPC latency by method and gRPC status code.',
      labelNames: ['snapshotter', 'method', 'code'],
      buckets: RPC_BUCKETS,
      registers,
    });
    this.rpcErrors = new Counter({
      name: 'tsblock_grpc_errors_total',
      help: 'Snapshots RPCs that failed, by method and gRPC status code.',
      labelNames: ['snapshotter', 'method', 'code'],
      registers,
    });
    // The core's space guard emits one event per refused create (core/space.ts).
    const lowSpace = new Counter({
      name: 'tsblock_low_space_refusals_total',
      help: 'Snapshot creations refused because free space was below --min-free, by storage.',
      labelNames: ['storage'],
      registers,
    });
    this.onLowSpace = (e: LowSpaceEvent) => lowSpace.inc({ storage: e.what });
    spaceEvents.on('low-space', this.onLowSpace);
    const targets = this.targets;
    new Gauge({
      name: 'tsblock_snapshots',
      help: 'Snapshots by kind.',
      labelNames: ['snapshotter', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const t of targets) {
          const counts: Record<string, number> = { active: 0, committed: 0, view: 0 };
          for (const e of safeList(t)) counts[e.kind] = (counts[e.kind] ?? 0) + 1;
          for (const [kind, n] of Object.entries(counts)) this.set({ snapshotter: t.instance.name, kind }, n);
        }
      },
    });
    new Gauge({
      name: 'tsblock_snapshot_usage_bytes',
      help: 'Space each snapshot adds over its parent (active ones measured at scrape).',
      labelNames: ['snapshotter', 'key', 'kind'],
      registers,
      async collect() {
        this.reset();
        for (const t of targets) {
          for (const e of safeList(t)) {
            let usage = e.usage;
            if (e.kind === 'active' && t.usage) usage = await t.usage(e.key).then((u) => u.size, () => usage);
            this.set({ snapshotter: t.instance.name, key: e.key, kind: e.kind }, usage);
          }
        }
      },
    });
    new Gauge({
      name: 'tsblock_root_filesystem_bytes',
      help: 'Size and free space of the filesystem holding each root.',
      labelNames: ['snapshotter', 'state'],
      registers,
      collect() {
        this.reset();
        for (const t of targets) {
          try {
            const s = rootSpace(t.instance.root);
            this.set({ snapshotter: t.instance.name, state: 'total' }, s.totalBytes);
            this.set({ snapshotter: t.instance.name, state: 'free' }, s.freeBytes);
          } catch {
            // root vanished: report nothing rather than fail the scrape
          }
        }
      },
    });
    // Data and metadata come from one pool status per scrape, read by whichever
    // gauge prom-client collects first.
    const pools = perScrape(() => readPools(targets));
    for (const [name, what, used, total] of [
      ['tsblock_pool_data_bytes', 'data', 'dataUsedBytes', 'dataTotalBytes'],
      ['tsblock_pool_metadata_bytes', 'metadata', 'metadataUsedBytes', 'metadataTotalBytes'],
    ] as const) {
      new Gauge({
        name,
        help: `devmapper thin-pool ${what} space, used and total.`,
        labelNames: ['snapshotter', 'pool', 'state'],
        registers,
        async collect() {
          this.reset();
          for (const { snapshotter, space } of await pools()) {
            const l = { snapshotter, pool: space.pool };
            this.set({ ...l, state: 'used' }, space[used]);
            this.set({ ...l, state: 'total' }, space[total]);
          }
        },
      });
    }
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'tsblock_' });
  }

  /** scrape renders every metric once, each listing and pool status read once for all gauges. */
  async scrape(): Promise<string> {
    scrapes++;
    inScrape = true;
    try {
      return await this.registry.metrics();
    } finally {
      inScrape = false;
    }
  }

  /** addTarget makes an instance's state visible to the gauges. */
  addTarget(t: MetricsTarget): void {
    this.targets.push(t);
  }

  /** dispose stops listening to the core's space events. */
  dispose(): void {
    spaceEvents.off('low-space', this.onLowSpace);
  }

  /** removeTarget stops reading an instance (its store is about to close). */
  removeTarget(t: MetricsTarget): void {
    const i = this.targets.indexOf(t);
    if (i >= 0) this.targets.splice(i, 1);
  }
}

type PoolSpace = Awaited<ReturnType<typeof poolSpace>>;

/** readPools reads every devmapper target's pool; a pool that cannot be read is left out. */
async function readPools(targets: readonly MetricsTarget[]): Promise<Array<{ snapshotter: string; space: PoolSpace }>> {
  const out: Array<{ snapshotter: string; space: PoolSpace }> = [];
  for (const t of targets) {
    if (t.instance.backend !== 'devmapper') continue;
    try {
      out.push({ snapshotter: t.instance.name, space: await poolSpace(t.instance) });
    } catch {
      // pool gone or no device-mapper: the daemon logs that; a scrape must not fail
    }
  }
  return out;
}

/**
 * scrapes counts scrapes (TsblockMetrics.scrape bumps it); perScrape memoises
 * fn within one of them, since several gauges' collect() read the same thing.
 * A registry read some other way (tests) gets fresh values every time.
 */
let scrapes = 0;
let inScrape = false;
function perScrape<T>(fn: () => T): () => T {
  let at = -1;
  let value: T;
  return () => {
    if (!inScrape) return fn();
    if (at !== scrapes) {
      value = fn();
      at = scrapes;
    }
    return value;
  };
}

/** lists holds each target's listing for the length of one scrape (two gauges read it). */
const lists = new WeakMap<MetricsTarget, () => ReturnType<typeof listEntries>>();

function safeList(t: MetricsTarget) {
  let read = lists.get(t);
  if (!read) {
    read = perScrape(() => {
      try {
        return listEntries(t.instance, t.store);
      } catch {
        return [];
      }
    });
    lists.set(t, read);
  }
  return read();
}
