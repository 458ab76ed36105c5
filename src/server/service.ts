// service adapts a Snapshotter to containerd's Snapshots gRPC service. Each
// handler is request → shape check → one Snapshotter call → response; every
// failure is logged once here and leaves through status.ts. The `snapshotter`
// field of each request names the proxy plugin on containerd's side; one
// tsblock process serves one snapshotter, so it is accepted whatever it says.

import * as grpc from '@grpc/grpc-js';
import { errorMessage, InvalidArgumentError } from '../errdefs.js';
import type { Info, SnapshotOpts, Snapshotter } from '../snapshots/snapshotter.js';
import { infoFromProto, infoToProto, labelsFromProto, mountToProto, usageToProto, type PbInfo } from './convert.js';
import { statusCode, toServiceError } from './status.js';
import type { SnapshotsHandlers } from '../proto/gen/containerd/services/snapshots/v1/Snapshots.js';
import type { ListSnapshotsRequest__Output } from '../proto/gen/containerd/services/snapshots/v1/ListSnapshotsRequest.js';
import type { ListSnapshotsResponse } from '../proto/gen/containerd/services/snapshots/v1/ListSnapshotsResponse.js';

/** LIST_BATCH_MAX_ITEMS caps the Info messages in one ListSnapshotsResponse. */
export const LIST_BATCH_MAX_ITEMS = 100;

/**
 * LIST_BATCH_MAX_BYTES caps a response's approximate encoded size: far below
 * grpc's 4 MiB default receive limit even with many 4 KiB labels per snapshot.
 */
export const LIST_BATCH_MAX_BYTES = 1024 * 1024;

/** LogLine is what the service reports about a failed request. */
export interface LogLine {
  msg: string;
  rpc: string;
  key?: string;
  code: string;
  error: string;
}

/** ListCall is the server side of the List stream. */
type ListCall = grpc.ServerWritableStream<ListSnapshotsRequest__Output, ListSnapshotsResponse>;

/**
 * snapshotsHandlers implements every Snapshots RPC over sn; log receives one
 * line per failure. Requests and responses are the types generated from
 * proto/ (SnapshotsHandlers), so a handler that drifts from the wire schema
 * does not compile.
 */
export function snapshotsHandlers(sn: Snapshotter, log: (line: object) => void): SnapshotsHandlers {
  const fail = (rpc: string, key: string | undefined, err: unknown): grpc.ServiceError => {
    const se = toServiceError(err);
    const line: LogLine = { msg: `${rpc} failed`, rpc, code: grpc.status[statusCode(err)] ?? 'UNKNOWN', error: errorMessage(err) };
    if (key !== undefined) line.key = key;
    log(line);
    return se;
  };

  /** unary wraps one request → response function; keyOf names the object for the log line. */
  const unary = <Req, Res>(rpc: string, keyOf: (req: NoInfer<Partial<Req>>) => string | undefined, fn: (req: NoInfer<Partial<Req>>) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      // A request proto-loader decoded always has every field (defaults: true);
      // Partial keeps the handlers honest about hand-made calls in tests.
      const req: Partial<Req> = call.request ?? {};
      Promise.resolve()
        .then(() => fn(req))
        .then(
          (res) => callback(null, res),
          (err: unknown) => callback(fail(rpc, safeKey(keyOf, req), err)),
        );
    };

  const byKey = (req: { key?: string }): string | undefined => req.key;

  return {
    Prepare: unary('Prepare', byKey, async (req) => {
      const mounts = await sn.prepare(required(req.key, 'key'), str(req.parent), opts(req));
      return { mounts: mounts.map(mountToProto) };
    }),
    View: unary('View', byKey, async (req) => {
      const mounts = await sn.view(required(req.key, 'key'), str(req.parent), opts(req));
      return { mounts: mounts.map(mountToProto) };
    }),
    Mounts: unary('Mounts', byKey, async (req) => {
      const mounts = await sn.mounts(required(req.key, 'key'));
      return { mounts: mounts.map(mountToProto) };
    }),
    Commit: unary('Commit', (req) => `${str(req.key)} -> ${str(req.name)}`, async (req) => {
      await sn.commit(required(req.name, 'name'), required(req.key, 'key'), opts(req));
      return {};
    }),
    Remove: unary('Remove', byKey, async (req) => {
      await sn.remove(required(req.key, 'key'));
      return {};
    }),
    Stat: unary('Stat', byKey, async (req) => {
      return { info: infoToProto(await sn.stat(required(req.key, 'key'))) };
    }),
    Update: unary('Update', (req) => req.info?.name, async (req) => {
      const info = infoFromProto(req.info as PbInfo | null | undefined);
      if (info.name === '') throw new InvalidArgumentError('info.name is required');
      const paths: unknown = req.update_mask?.paths;
      const fieldpaths = Array.isArray(paths) ? paths.map(String) : [];
      const updated = await sn.update(info, fieldpaths.length > 0 ? fieldpaths : undefined);
      return { info: infoToProto(updated) };
    }),
    Usage: unary('Usage', byKey, async (req) => usageToProto(await sn.usage(required(req.key, 'key')))),
    Cleanup: unary('Cleanup', () => undefined, async () => {
      await sn.cleanup();
      return {};
    }),
    List: (call: ListCall): void => {
      const filters: string[] = Array.isArray(call.request?.filters) ? call.request.filters.map(String) : [];
      listSnapshots(sn, filters, call).then(
        () => call.end(),
        (err: unknown) => {
          if (err === cancelled) return;
          call.emit('error', fail('List', filters.length > 0 ? filters.join(' OR ') : undefined, err));
        },
      );
    },
  };
}

/** cancelled aborts a walk whose client went away; it is never reported. */
const cancelled = new Error('client cancelled List');

/** listSnapshots streams the walk in batches bounded by count and approximate size, honouring backpressure. */
async function listSnapshots(sn: Snapshotter, filters: string[], call: ListCall): Promise<void> {
  let batch: ReturnType<typeof infoToProto>[] = [];
  let bytes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    if (call.cancelled) throw cancelled;
    const ok = call.write({ info: batch });
    batch = [];
    bytes = 0;
    if (!ok) await drained(call);
  };
  await sn.walk(async (info: Info) => {
    const size = approxSize(info);
    if (batch.length > 0 && (batch.length >= LIST_BATCH_MAX_ITEMS || bytes + size > LIST_BATCH_MAX_BYTES)) await flush();
    batch.push(infoToProto(info));
    bytes += size;
  }, filters);
  await flush();
}

/** drained waits until the stream can take more, or rejects when the client cancels. */
function drained(call: ListCall): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      call.off('cancelled', onCancel);
      resolve();
    };
    const onCancel = (): void => {
      call.off('drain', onDrain);
      reject(cancelled);
    };
    call.once('drain', onDrain);
    call.once('cancelled', onCancel);
  });
}

/** approxSize overestimates an Info's encoded size: strings plus per-field tag/length overhead. */
function approxSize(info: Info): number {
  let n = 64 + Buffer.byteLength(info.name) + Buffer.byteLength(info.parent);
  for (const [k, v] of Object.entries(info.labels)) n += 16 + Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

function opts(req: { labels?: Record<string, string> }): SnapshotOpts {
  return { labels: labelsFromProto(req.labels) };
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function required(value: unknown, field: string): string {
  const v = str(value);
  if (v === '') throw new InvalidArgumentError(`${field} must not be empty`);
  return v;
}

function safeKey<Req>(keyOf: (req: Req) => string | undefined, req: Req): string | undefined {
  try {
    const k = keyOf(req);
    return typeof k === 'string' ? k : undefined;
  } catch {
    return undefined;
  }
}
