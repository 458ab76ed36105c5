// methods is the shape of the two services tsblock serves (each method's
// path and streaming), known without parsing the .proto files: the daemon
// registers its services with grpc-js from these before protobufjs is even
// loaded, so its socket answers containerd's handshake sooner
// (server/gated.ts, docs/reliability.md). test/unit/proto/methods.test.ts
// and LazyService.load check them against what proto/load.ts parses.

/** MethodShape is what grpc-js routes a call by. */
export interface MethodShape {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  originalName: string;
}

function service(prefix: string, unary: string[], serverStreaming: string[] = []): Record<string, MethodShape> {
  const out: Record<string, MethodShape> = {};
  for (const name of [...unary, ...serverStreaming]) {
    out[name] = { path: `/${prefix}/${name}`, requestStream: false, responseStream: serverStreaming.includes(name), originalName: name[0]!.toLowerCase() + name.slice(1) };
  }
  return out;
}

/** SNAPSHOTS_METHODS are containerd.services.snapshots.v1.Snapshots' methods (proto/containerd/services/snapshots/v1/snapshots.proto). */
export const SNAPSHOTS_METHODS = service('containerd.services.snapshots.v1.Snapshots', ['Prepare', 'View', 'Mounts', 'Commit', 'Remove', 'Stat', 'Update', 'Usage', 'Cleanup'], ['List']);

/** DIFF_METHODS are containerd.services.diff.v1.Diff's methods (proto/containerd/services/diff/v1/diff.proto). */
export const DIFF_METHODS = service('containerd.services.diff.v1.Diff', ['Apply', 'Diff']);
