// instrument wraps the Snapshots (and Diff) handlers of src/server without
// changing them: every call is timed into the latency histogram, failures
// are counted by gRPC code, and one structured log line per call carries the
// operation, the key and the duration; the logger passed in already names the
// snapshotter. Mutations log at info, reads at debug, so a busy containerd
// does not flood the journal.

import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { TsblockMetrics } from './metrics.js';

const MUTATIONS = new Set(['Prepare', 'View', 'Commit', 'Remove', 'Update', 'Cleanup', 'Apply', 'Diff']);

/** instrumentHandlers returns handlers that record metrics and log, then delegate. */
export function instrumentHandlers(
  handlers: grpc.UntypedServiceImplementation,
  snapshotter: string,
  metrics: TsblockMetrics | undefined,
  log: Logger | undefined,
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  const record = (method: string, key: string | undefined, started: bigint, err: grpc.ServiceError | null | undefined): void => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const code = err ? grpc.status[err.code ?? grpc.status.UNKNOWN] ?? 'UNKNOWN' : 'OK';
    metrics?.rpcDuration.observe({ snapshotter, method, code }, seconds);
    if (err) metrics?.rpcErrors.inc({ snapshotter, method, code });
    if (log) {
      const fields: Record<string, unknown> = { op: method, duration_ms: Math.round(seconds * 1e6) / 1e3, code };
      if (key) fields.key = key;
      if (MUTATIONS.has(method)) log.info(fields, 'rpc');
      else log.debug(fields, 'rpc');
    }
  };
  for (const [method, h] of Object.entries(handlers)) {
    if (method === 'List') {
      out[method] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        const started = process.hrtime.bigint();
        let done = false;
        const finish = (err: grpc.ServiceError | null): void => {
          if (done) return;
          done = true;
          record(method, undefined, started, err);
        };
        const end = call.end.bind(call);
        call.end = ((...args: unknown[]) => {
          finish(null);
          return (end as (...a: unknown[]) => unknown)(...args);
        }) as typeof call.end;
        const emit = call.emit.bind(call);
        call.emit = ((event: string | symbol, ...args: unknown[]) => {
          if (event === 'error') finish(args[0] as grpc.ServiceError);
          return emit(event, ...args);
        }) as typeof call.emit;
        (h as grpc.handleServerStreamingCall<unknown, unknown>)(call);
      };
      continue;
    }
    out[method] = (call: grpc.ServerUnaryCall<Record<string, any>, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const started = process.hrtime.bigint();
      const req = call.request ?? {};
      const key = typeof req.key === 'string' && req.key !== '' ? req.key : typeof req.info?.name === 'string' ? req.info.name : undefined;
      (h as grpc.handleUnaryCall<unknown, unknown>)(call, (err, value, ...rest) => {
        record(method, key, started, err as grpc.ServiceError | null);
        (callback as (...a: unknown[]) => void)(err, value, ...rest);
      });
    };
  }
  return out;
}
