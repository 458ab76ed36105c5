// load is the one place containerd's .proto files are read: it finds proto/,
// loads a service with the options the generated types (./gen, made by
// `npm run gen:proto`) were made with, and returns typed client constructors
// and service definitions. The server, the CLI, `tsblock import` and the
// tests all get the wire schema from here.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as SnapshotsProto } from './gen/snapshots.js';
import type { ProtoGrpcType as DiffProto } from './gen/diff.js';
import type { SnapshotsClient, SnapshotsDefinition } from './gen/containerd/services/snapshots/v1/Snapshots.js';
import type { DiffClient, DiffDefinition } from './gen/containerd/services/diff/v1/Diff.js';

/** SNAPSHOTS_PROTO is the Snapshots service's file, relative to the proto/ include dir. */
export const SNAPSHOTS_PROTO = 'containerd/services/snapshots/v1/snapshots.proto';

/** DIFF_PROTO is the Diff service's file, relative to the proto/ include dir. */
export const DIFF_PROTO = 'containerd/services/diff/v1/diff.proto';

/** protoDir finds <package root>/proto from this module, both from src/ and from dist/src/. */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'proto', 'containerd'))) return join(dir, 'proto');
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find proto/containerd above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/**
 * LOADER_OPTIONS are the proto-loader options server/convert.ts is written
 * against; scripts/gen-proto.sh passes the same ones to the type generator.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: true,
  oneofs: true,
};

/** loadProto loads one file under proto/ (e.g. SNAPSHOTS_PROTO) into a grpc package object. */
export function loadProto(file: string): grpc.GrpcObject {
  const def = protoLoader.loadSync(file, { ...LOADER_OPTIONS, includeDirs: [protoDir()] });
  return grpc.loadPackageDefinition(def);
}

/** SnapshotsClientConstructor builds typed clients of the Snapshots service. */
export type SnapshotsClientConstructor = grpc.ServiceClientConstructor & (new (...args: ConstructorParameters<typeof grpc.Client>) => SnapshotsClient) & { service: SnapshotsDefinition };

/** DiffClientConstructor builds typed clients of the Diff service. */
export type DiffClientConstructor = grpc.ServiceClientConstructor & (new (...args: ConstructorParameters<typeof grpc.Client>) => DiffClient) & { service: DiffDefinition };

/** snapshotsClientConstructor is the client class for containerd.services.snapshots.v1.Snapshots. */
export function snapshotsClientConstructor(): SnapshotsClientConstructor {
  const pkg = loadProto(SNAPSHOTS_PROTO) as unknown as SnapshotsProto;
  return pkg.containerd.services.snapshots.v1.Snapshots as unknown as SnapshotsClientConstructor;
}

/** loadSnapshotsService returns containerd.services.snapshots.v1.Snapshots for server.addService. */
export function loadSnapshotsService(): SnapshotsDefinition {
  return snapshotsClientConstructor().service;
}

/** diffClientConstructor is the client class for containerd.services.diff.v1.Diff. */
export function diffClientConstructor(): DiffClientConstructor {
  const pkg = loadProto(DIFF_PROTO) as unknown as DiffProto;
  return pkg.containerd.services.diff.v1.Diff as unknown as DiffClientConstructor;
}

/** loadDiffService returns containerd.services.diff.v1.Diff for server.addService. */
export function loadDiffService(): DiffDefinition {
  return diffClientConstructor().service;
}
