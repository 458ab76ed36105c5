// gated lets a server answer connections before it can serve calls. The
// daemon binds its socket (or takes the one systemd holds) first and opens
// the store after: containerd's proxy client gives a new connection about one
// second to see the server's HTTP/2 handshake and, past that, fails every
// call until its reconnect backoff (up to 3 s) runs out. A call that arrives
// while the store opens waits on the gate and is served once it opens; when
// start-up fails, or the daemon stops before it opened, the call gets
// UNAVAILABLE with the reason.
//
// The services are registered from their method table alone (LazyService,
// proto/methods.ts): a request stays bytes until the gate opens, and is
// decoded then with the definition parsed from the .proto files, which are
// loaded (protobufjs and all) after the socket answers.

import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../errdefs.js';
import type { MethodShape } from '../proto/methods.js';

/** Decoder turns a request a gated handler held as bytes into the message (LazyService). */
export interface Decoder {
  decode(method: string, request: unknown): unknown;
}

/**
 * LazyService is a service grpc-js can register before its protos are
 * parsed: definition() routes by the method table and keeps requests as
 * bytes; load() supplies the parsed definition (it must have the same
 * methods), whose codecs then decode the held requests (decode, called by
 * the gate's handlers) and encode every response.
 */
export class LazyService implements Decoder {
  private real?: grpc.ServiceDefinition;
  readonly definition: grpc.ServiceDefinition;

  constructor(readonly methods: Record<string, MethodShape>) {
    const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    for (const [name, m] of Object.entries(methods)) {
      const codec = () => {
        const r = this.real?.[name];
        if (!r) throw new Error(`${m.path}: the service's protos are not loaded yet`);
        return r;
      };
      def[name] = {
        ...m,
        requestSerialize: (v: unknown) => codec().requestSerialize(v),
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (v: unknown) => codec().responseSerialize(v),
        responseDeserialize: (b: Buffer) => codec().responseDeserialize(b),
      };
    }
    this.definition = def;
  }

  /** load gives the parsed definition; it throws when its methods differ from the table. */
  load(real: grpc.ServiceDefinition): void {
    const shape = (d: Record<string, { path: string; requestStream: boolean; responseStream: boolean }>) =>
      JSON.stringify(Object.entries(d).map(([n, m]) => [n, m.path, m.requestStream, m.responseStream]).sort());
    if (shape(real) !== shape(this.methods)) throw new Error(`the parsed service differs from its method table (proto/methods.ts): ${shape(real)} vs ${shape(this.methods)}`);
    this.real = real;
  }

  decode(method: string, request: unknown): unknown {
    const r = this.real?.[method];
    if (!r) throw new Error(`${method}: the service's protos are not loaded`);
    return r.requestDeserialize(request as Buffer);
  }
}

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
   * and server-streaming methods, all Snapshots and Diff have). With a
   * decoder, the request (held as bytes, LazyService) is decoded first; one
   * that does not decode gets INTERNAL, as grpc-js answers it.
   */
  handlers(def: grpc.ServiceDefinition, pick: (value: T) => grpc.UntypedServiceImplementation, decoder?: Decoder): grpc.UntypedServiceImplementation {
    const out: grpc.UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(def)) {
      if (method.requestStream) throw new Error(`gated: ${name} streams requests; only unary and server-streaming methods are supported`);
      const target = (v: T) => {
        const h = pick(v)[name];
        if (!h) throw new Error(`gated: no handler for ${name}`);
        return h;
      };
      /** decoded sets call.request to the message; false when it does not decode. */
      const decoded = (call: { request: unknown }, refuse: (e: Partial<grpc.StatusObject>) => void) => {
        if (!decoder) return true;
        try {
          call.request = decoder.decode(name, call.request);
          return true;
        } catch (err) {
          refuse({ code: grpc.status.INTERNAL, details: `Error deserializing request: ${errorMessage(err)}`, metadata: new grpc.Metadata() });
          return false;
        }
      };
      if (method.responseStream) {
        out[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
          const refuse = (e: Partial<grpc.StatusObject>) => call.emit('error', e);
          this.value.then(
            (v) => decoded(call, refuse) && (target(v) as grpc.handleServerStreamingCall<unknown, unknown>)(call),
            (err: Error) => refuse(unavailable(err)),
          );
        };
      } else {
        out[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          this.value.then(
            (v) => decoded(call, callback) && (target(v) as grpc.handleUnaryCall<unknown, unknown>)(call, callback),
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
