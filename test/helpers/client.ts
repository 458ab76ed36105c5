// client is a small promise-based gRPC client for tests, talking to a tsblock
// server over its unix socket exactly as containerd does (namespace metadata,
// snapshotter name), built from the same proto files the server loads. Its
// typed methods build requests and read responses with the types generated
// from proto/ (src/proto/gen), so they are checked against the wire schema;
// `call` stays raw for bad-input tests.

import * as grpc from '@grpc/grpc-js';
import { snapshotsClientConstructor } from '../../src/proto/load.js';
import type { Info__Output } from '../../src/proto/gen/containerd/services/snapshots/v1/Info.js';
import type { Mount__Output } from '../../src/proto/gen/containerd/types/Mount.js';
import type { PrepareSnapshotRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/PrepareSnapshotRequest.js';
import type { PrepareSnapshotResponse__Output } from '../../src/proto/gen/containerd/services/snapshots/v1/PrepareSnapshotResponse.js';
import type { ViewSnapshotRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/ViewSnapshotRequest.js';
import type { ViewSnapshotResponse__Output } from '../../src/proto/gen/containerd/services/snapshots/v1/ViewSnapshotResponse.js';
import type { MountsRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/MountsRequest.js';
import type { MountsResponse__Output } from '../../src/proto/gen/containerd/services/snapshots/v1/MountsResponse.js';
import type { CommitSnapshotRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/CommitSnapshotRequest.js';
import type { RemoveSnapshotRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/RemoveSnapshotRequest.js';
import type { StatSnapshotRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/StatSnapshotRequest.js';
import type { StatSnapshotResponse__Output } from '../../src/proto/gen/containerd/services/snapshots/v1/StatSnapshotResponse.js';
import type { UpdateSnapshotRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/UpdateSnapshotRequest.js';
import type { UpdateSnapshotResponse__Output } from '../../src/proto/gen/containerd/services/snapshots/v1/UpdateSnapshotResponse.js';
import type { UsageRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/UsageRequest.js';
import type { UsageResponse__Output } from '../../src/proto/gen/containerd/services/snapshots/v1/UsageResponse.js';
import type { CleanupRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/CleanupRequest.js';
import type { ListSnapshotsRequest } from '../../src/proto/gen/containerd/services/snapshots/v1/ListSnapshotsRequest.js';
import type { ListSnapshotsResponse__Output } from '../../src/proto/gen/containerd/services/snapshots/v1/ListSnapshotsResponse.js';

/** MountMsg is a mount as the Snapshots service returns it. */
export type MountMsg = Mount__Output;

/** InfoMsg is a snapshot Info as the service returns it (kind as the proto enum number). */
export type InfoMsg = Info__Output;

/** KIND_VIEW, KIND_ACTIVE and KIND_COMMITTED are the proto enum values. */
export const KIND_VIEW = 1;
export const KIND_ACTIVE = 2;
export const KIND_COMMITTED = 3;

/** RpcError is what a failed call rejects with. */
export type RpcError = grpc.ServiceError;

/** isRpcError narrows an unknown rejection to a gRPC error. */
export function isRpcError(err: unknown): err is RpcError {
  return typeof err === 'object' && err !== null && typeof (err as RpcError).code === 'number';
}

type Raw = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

/** TestClient calls every Snapshots RPC; `call` takes a raw request for bad-input tests. */
export class TestClient {
  readonly raw: Raw;
  private readonly md = new grpc.Metadata();

  constructor(readonly socket: string, readonly snapshotter = 'tsblock', namespace = 'reliability') {
    const S = snapshotsClientConstructor();
    this.raw = new S(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    }) as unknown as Raw;
    this.md.set('containerd-namespace', namespace);
  }

  /** ready waits until the channel connects. */
  ready(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => this.raw.waitForReady(Date.now() + timeoutMs, (e) => (e ? reject(e) : resolve())));
  }

  /** call runs one unary method with `req` as given (snapshotter added unless present). */
  call<T = unknown>(method: string, req: Record<string, unknown>, deadlineMs = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      this.raw[method]!.call(
        this.raw,
        { snapshotter: this.snapshotter, ...req },
        this.md,
        { deadline: Date.now() + deadlineMs },
        (err: Error | null, res: T) => (err ? reject(err) : resolve(res)),
      );
    });
  }

  async prepare(key: string, parent = '', labels: Record<string, string> = {}): Promise<MountMsg[]> {
    return (await this.call<PrepareSnapshotResponse__Output>('Prepare', { key, parent, labels } satisfies PrepareSnapshotRequest)).mounts;
  }
  async view(key: string, parent = '', labels: Record<string, string> = {}): Promise<MountMsg[]> {
    return (await this.call<ViewSnapshotResponse__Output>('View', { key, parent, labels } satisfies ViewSnapshotRequest)).mounts;
  }
  async mounts(key: string): Promise<MountMsg[]> {
    return (await this.call<MountsResponse__Output>('Mounts', { key } satisfies MountsRequest)).mounts;
  }
  async commit(name: string, key: string, labels: Record<string, string> = {}): Promise<void> {
    await this.call('Commit', { name, key, labels } satisfies CommitSnapshotRequest);
  }
  async remove(key: string): Promise<void> {
    await this.call('Remove', { key } satisfies RemoveSnapshotRequest);
  }
  async stat(key: string): Promise<InfoMsg> {
    const info = (await this.call<StatSnapshotResponse__Output>('Stat', { key } satisfies StatSnapshotRequest)).info;
    if (!info) throw new Error(`Stat ${key}: the answer has no info`);
    return info;
  }
  async update(info: Partial<InfoMsg> & { name: string }, paths: string[] = []): Promise<InfoMsg> {
    const req: UpdateSnapshotRequest = { info: { parent: '', kind: 0, labels: {}, ...info } };
    if (paths.length > 0) req.update_mask = { paths };
    const out = (await this.call<UpdateSnapshotResponse__Output>('Update', req as Record<string, unknown>)).info;
    if (!out) throw new Error(`Update ${info.name}: the answer has no info`);
    return out;
  }
  async usage(key: string): Promise<UsageResponse__Output> {
    return this.call<UsageResponse__Output>('Usage', { key } satisfies UsageRequest);
  }
  async cleanup(): Promise<void> {
    await this.call('Cleanup', {} satisfies CleanupRequest);
  }

  /** list streams every snapshot's Info matching any of `filters`. */
  list(filters: string[] = []): Promise<InfoMsg[]> {
    return new Promise((resolve, reject) => {
      const out: InfoMsg[] = [];
      const req: ListSnapshotsRequest = { snapshotter: this.snapshotter, filters };
      const st = this.raw.List!.call(this.raw, req, this.md) as grpc.ClientReadableStream<ListSnapshotsResponse__Output>;
      st.on('data', (m: ListSnapshotsResponse__Output) => out.push(...m.info));
      st.on('error', reject);
      st.on('end', () => resolve(out));
    });
  }

  close(): void {
    this.raw.close();
  }
}

/** codeOf resolves a promise to the gRPC status code it failed with, or 0 (OK). */
export async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return grpc.status.OK;
  } catch (err) {
    if (isRpcError(err)) return err.code;
    throw err;
  }
}

/** failure resolves a promise to {code, details} of its gRPC failure (code 0 on success). */
export async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
    return { code: grpc.status.OK, details: '' };
  } catch (err) {
    if (isRpcError(err)) return { code: err.code, details: err.details ?? err.message };
    throw err;
  }
}

export { grpc };
