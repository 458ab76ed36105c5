// client is a small promise-based gRPC client for tests, talking to a tsblock
// server over its unix socket exactly as containerd does (namespace metadata,
// snapshotter name), built from the same proto files the server loads.

import * as grpc from '@grpc/grpc-js';
import { snapshotsClientConstructor } from '../../src/proto/load.js';

/** MountMsg is a mount as the Snapshots service returns it. */
export interface MountMsg {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

/** InfoMsg is a snapshot Info as the service returns it (kind as the proto enum number). */
export interface InfoMsg {
  name: string;
  parent: string;
  kind: number;
  labels: Record<string, string>;
  created_at?: { seconds: number; nanos: number } | null;
  updated_at?: { seconds: number; nanos: number } | null;
}

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
    return (await this.call<{ mounts: MountMsg[] }>('Prepare', { key, parent, labels })).mounts;
  }
  async view(key: string, parent = '', labels: Record<string, string> = {}): Promise<MountMsg[]> {
    return (await this.call<{ mounts: MountMsg[] }>('View', { key, parent, labels })).mounts;
  }
  async mounts(key: string): Promise<MountMsg[]> {
    return (await this.call<{ mounts: MountMsg[] }>('Mounts', { key })).mounts;
  }
  async commit(name: string, key: string, labels: Record<string, string> = {}): Promise<void> {
    await this.call('Commit', { name, key, labels });
  }
  async remove(key: string): Promise<void> {
    await this.call('Remove', { key });
  }
  async stat(key: string): Promise<InfoMsg> {
    return (await this.call<{ info: InfoMsg }>('Stat', { key })).info;
  }
  async update(info: Partial<InfoMsg> & { name: string }, paths: string[] = []): Promise<InfoMsg> {
    const req: Record<string, unknown> = { info: { parent: '', kind: 0, labels: {}, ...info } };
    if (paths.length > 0) req.update_mask = { paths };
    return (await this.call<{ info: InfoMsg }>('Update', req)).info;
  }
  async usage(key: string): Promise<{ size: number; inodes: number }> {
    return this.call('Usage', { key });
  }
  async cleanup(): Promise<void> {
    await this.call('Cleanup', {});
  }

  /** list streams every snapshot's Info matching any of `filters`. */
  list(filters: string[] = []): Promise<InfoMsg[]> {
    return new Promise((resolve, reject) => {
      const out: InfoMsg[] = [];
      const st = this.raw.List!.call(this.raw, { snapshotter: this.snapshotter, filters }, this.md) as grpc.ClientReadableStream<{
        info: InfoMsg[];
      }>;
      st.on('data', (m: { info: InfoMsg[] }) => out.push(...m.info));
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
