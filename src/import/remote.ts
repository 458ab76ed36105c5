// remote is an UnpackTarget over a running daemon's Snapshots socket, so
// `tsblock import` can seed snapshots while the daemon serves containerd:
// the daemon stays the only writer of the root and serialises our calls
// with containerd's. gRPC status codes come back as the typed errors the
// unpacker acts on (AlreadyExists, NotFound).

import * as grpc from '@grpc/grpc-js';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from '../errdefs.js';
import type { UnpackTarget } from '../apply/unpack.js';
import { infoFromProto, mountFromProto, type PbInfo, type PbMount } from '../server/convert.js';
import { snapshotsClientConstructor } from '../proto/load.js';
import type { Mount } from '../snapshots/mount.js';
import type { Info, SnapshotOpts } from '../snapshots/snapshotter.js';

/** fromStatus turns a gRPC error into the matching typed error (the inverse of server/status.ts). */
export function fromStatus(err: grpc.ServiceError): Error {
  const msg = err.details || err.message;
  switch (err.code) {
    case grpc.status.NOT_FOUND:
      return new NotFoundError(msg, { cause: err });
    case grpc.status.ALREADY_EXISTS:
      return new AlreadyExistsError(msg, { cause: err });
    case grpc.status.FAILED_PRECONDITION:
      return new FailedPreconditionError(msg, { cause: err });
    case grpc.status.INVALID_ARGUMENT:
      return new InvalidArgumentError(msg, { cause: err });
    case grpc.status.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(msg, { cause: err });
    case grpc.status.UNAVAILABLE:
      return new UnavailableError(msg, { cause: err });
    default:
      return new InternalError(msg, { cause: err });
  }
}

/** RemoteSnapshots drives a daemon's Snapshots service for one snapshotter name. */
export class RemoteSnapshots implements UnpackTarget {
  private readonly client: grpc.Client & Record<string, any>;

  constructor(
    socketPath: string,
    private readonly snapshotter = 'tsblock',
    private readonly timeoutMs = 300_000,
  ) {
    const Ctor = snapshotsClientConstructor();
    this.client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  }

  private call<T>(method: string, req: object): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client[method]({ snapshotter: this.snapshotter, ...req }, { deadline: Date.now() + this.timeoutMs }, (err: grpc.ServiceError | null, res: T) =>
        err ? reject(fromStatus(err)) : resolve(res),
      );
    });
  }

  /** stat returns a snapshot's Info. */
  async stat(key: string): Promise<Info> {
    const res = await this.call<{ info: PbInfo }>('Stat', { key });
    return infoFromProto(res.info);
  }

  /** prepare creates an active snapshot and returns its mounts. */
  async prepare(key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]> {
    const res = await this.call<{ mounts: PbMount[] }>('Prepare', { key, parent, labels: opts?.labels ?? {} });
    return (res.mounts ?? []).map(mountFromProto);
  }

  /** view creates a read-only snapshot of parent and returns its mounts. */
  async view(key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]> {
    const res = await this.call<{ mounts: PbMount[] }>('View', { key, parent, labels: opts?.labels ?? {} });
    return (res.mounts ?? []).map(mountFromProto);
  }

  /** mounts returns an existing snapshot's mounts. */
  async mounts(key: string): Promise<Mount[]> {
    const res = await this.call<{ mounts: PbMount[] }>('Mounts', { key });
    return (res.mounts ?? []).map(mountFromProto);
  }

  /** commit turns active key into committed name. */
  async commit(name: string, key: string, opts?: SnapshotOpts): Promise<void> {
    await this.call('Commit', { name, key, labels: opts?.labels ?? {} });
  }

  /** remove deletes a snapshot. */
  async remove(key: string): Promise<void> {
    await this.call('Remove', { key });
  }

  /** close releases the channel. */
  close(): void {
    this.client.close();
  }
}
