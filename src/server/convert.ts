// convert maps between tsblock's types and the plain objects
// @grpc/proto-loader produces and accepts for containerd's messages
// (options keepCase, longs: Number, enums: Number, defaults: true). Field
// names here are the proto's snake_case names; that is the wire contract,
// and the Pb* types are the ones generated from proto/ (src/proto/gen).

import { InvalidArgumentError } from '../errdefs.js';
import type { Mount } from '../snapshots/mount.js';
import { Kind, type Info, type Timestamp, type Usage } from '../snapshots/snapshotter.js';
import type { Timestamp__Output } from '../proto/gen/google/protobuf/Timestamp.js';
import type { Info__Output } from '../proto/gen/containerd/services/snapshots/v1/Info.js';
import type { Kind__Output } from '../proto/gen/containerd/services/snapshots/v1/Kind.js';
import type { Mount__Output } from '../proto/gen/containerd/types/Mount.js';
import type { UsageResponse__Output } from '../proto/gen/containerd/services/snapshots/v1/UsageResponse.js';

/** PbTimestamp is google.protobuf.Timestamp as proto-loader decodes it. */
export type PbTimestamp = Timestamp__Output;

/** PbInfo is containerd.services.snapshots.v1.Info as proto-loader decodes it. */
export type PbInfo = Info__Output;

/** PbMount is containerd.types.Mount as proto-loader decodes it. */
export type PbMount = Mount__Output;

/** PbUsage is containerd.services.snapshots.v1.UsageResponse. */
export type PbUsage = UsageResponse__Output;

const NANOS = 1_000_000_000;

/** timestampToProto normalizes to 0 ≤ nanos < 1e9, as the Timestamp spec requires. */
export function timestampToProto(t: Timestamp): PbTimestamp {
  const carry = Math.floor(t.nanos / NANOS);
  return { seconds: Math.trunc(t.seconds) + carry, nanos: Math.trunc(t.nanos - carry * NANOS) };
}

/** timestampFromProto reads a Timestamp; an absent one is the epoch (Go's zero time is not representable anyway). */
export function timestampFromProto(t: PbTimestamp | null | undefined): Timestamp {
  if (!t) return { seconds: 0, nanos: 0 };
  return timestampToProto({ seconds: Number(t.seconds) || 0, nanos: Number(t.nanos) || 0 });
}

/** kindToProto is the identity on the numbers (Kind mirrors the proto enum); it exists to name the seam. */
export function kindToProto(kind: Kind): Kind__Output {
  return kind as number as Kind__Output;
}

/** kindFromProto rejects numbers that are not a containerd Kind. */
export function kindFromProto(kind: number | undefined): Kind {
  switch (kind ?? 0) {
    case 0:
      return Kind.Unknown;
    case 1:
      return Kind.View;
    case 2:
      return Kind.Active;
    case 3:
      return Kind.Committed;
    default:
      throw new InvalidArgumentError(`unknown snapshot kind ${String(kind)}`);
  }
}

/** infoToProto renders an Info; labels are copied so later mutation cannot race serialization. */
export function infoToProto(info: Info): PbInfo {
  return {
    name: info.name,
    parent: info.parent,
    kind: kindToProto(info.kind),
    created_at: timestampToProto(info.created),
    updated_at: timestampToProto(info.updated),
    labels: { ...info.labels },
  };
}

/** infoFromProto reads an Info sent by a client (Update); a missing message is an invalid argument. */
export function infoFromProto(pb: PbInfo | null | undefined): Info {
  if (!pb) throw new InvalidArgumentError('info is required');
  return {
    name: pb.name ?? '',
    parent: pb.parent ?? '',
    kind: kindFromProto(pb.kind),
    created: timestampFromProto(pb.created_at),
    updated: timestampFromProto(pb.updated_at),
    labels: labelsFromProto(pb.labels),
  };
}

/** labelsFromProto copies a decoded map into a plain null-safe record. */
export function labelsFromProto(labels: Record<string, string> | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) out[k] = v;
  return out;
}

/** mountToProto renders a Mount; target is "" when unset. */
export function mountToProto(m: Mount): PbMount {
  return { type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] };
}

/** mountFromProto reads a Mount (Diff requests carry them); an empty target is left out. */
export function mountFromProto(pb: PbMount): Mount {
  const m: Mount = { type: pb.type ?? '', source: pb.source ?? '', options: [...(pb.options ?? [])] };
  if (pb.target) m.target = pb.target;
  return m;
}

/** usageToProto renders a Usage; int64 fields travel as JS numbers (longs: Number). */
export function usageToProto(u: Usage): PbUsage {
  return { size: u.size, inodes: u.inodes };
}
