// gated lets a server answer connections before it can serve calls. The
// daemon binds its socket (or takes the one systemd holds) first and opens
// the store after: containerd's proxy client gives a new connection about one
// second to see the server's HTTP/2 handshake and, past that, fails every
// call until its reconnect backoff (up to 3 s) runs out. A call that arrives
// while the store opens waits on the gate and is served once it opens; when
// start-up fails, or the daemon stops before it opened, the call gets
// UNAVAILABLE with the reason.

import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../errdefs.js';

/** Gate holds the handlers calls wait for: open() serves them, fail() refuses them. */
export class Gate<T> {
  private settled = false;
  private resolveValue!: (v: T) => void;
  private rejectValue!: (err: Error) => void;
  private readonly value: Promise<T>;

  constructor() {
    this.value = new Promise<T>((resolve, reject) => {
      this.resolveValue = resolve;
      this.rejectValue = reject;
    });
    // a gate nobody waited on may fail without an unhandled rejection
    this.value.catch(() => {});
  }

  /** open serves every waiting and later call with value; only the first open or fail counts. */
  open(value: T): void {
    if (this.settled) return;
    this.settled = true;
    this.resolveValue(value);
  }

  /** fail answers every waiting and later call UNAVAILABLE, "<reason>: <cause>". */
  fail(reason: string, cause?: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.rejectValue(new Error(cause === undefined ? reason : `${reason}: ${errorMessage(cause)}`));
  }

  /**
   * handlers returns, for every method of def, a handler that waits for the
   * gate and then calls the one pick(value) has under the same name (unary
   * and server-streaming methods, all Snapshots and Diff have).
   */
  handlers(def: grpc.ServiceDefinition, pick: (value: T) => grpc.UntypedServiceImplementation): grpc.UntypedServiceImplementation {
    const out: grpc.UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(def)) {
      if (method.requestStream) throw new Error(`gated: ${name} streams requests; only unary and server-streaming methods are supported`);
      const target = (v: T) => {
        const h = pick(v)[name];
        if (!h) throw new Error(`gated: no handler for ${name}`);
        return h;
      };
      if (method.responseStream) {
        out[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
          this.value.then(
            (v) => (target(v) as grpc.handleServerStreamingCall<unknown, unknown>)(call),
            (err: Error) => call.emit('error', unavailable(err)),
          );
        };
      } else {
        out[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          this.value.then(
            (v) => (target(v) as grpc.handleUnaryCall<unknown, unknown>)(call, callback),
            (err: Error) => callback(unavailable(err)),
          );
        };
      }
    }
    return out;
  }
}

function unavailable(err: Error): Partial<grpc.StatusObject> {
  return { code: grpc.status.UNAVAILABLE, details: err.message, metadata: new grpc.Metadata() };
}
