// inflight counts the RPCs a server is answering, so that shutdown can tell
// "calls still running" from "clients still connected". grpc-js's
// tryShutdown waits for every HTTP/2 session to close, and a session whose
// client has just gone can stay registered without ever reporting its close
// (the callback of session.close on a destroyed session never fires), so a
// shutdown with nothing left to answer used to wait out its whole timeout.

import type * as grpc from '@grpc/grpc-js';

/** Inflight wraps handlers and reports when none of their calls is running. */
export class Inflight {
  private count = 0;
  private waiters: (() => void)[] = [];

  /** running is the number of calls that have not answered yet. */
  get running(): number {
    return this.count;
  }

  /** track returns handlers that count their calls (unary and server-streaming). */
  track(handlers: grpc.UntypedServiceImplementation): grpc.UntypedServiceImplementation {
    const out: grpc.UntypedServiceImplementation = {};
    for (const [method, h] of Object.entries(handlers)) {
      if (h.length < 2) {
        // server streaming: done when the stream finishes, fails or is cancelled
        out[method] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
          const done = this.begin();
          for (const ev of ['finish', 'error', 'cancelled', 'close']) call.once(ev, done);
          (h as grpc.handleServerStreamingCall<unknown, unknown>)(call);
        };
        continue;
      }
      out[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const done = this.begin();
        (h as grpc.handleUnaryCall<unknown, unknown>)(call, (...args: Parameters<grpc.sendUnaryData<unknown>>) => {
          done();
          (callback as (...a: unknown[]) => void)(...args);
        });
      };
    }
    return out;
  }

  /** idle resolves once no call is running (at once when none is). */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private begin(): () => void {
    this.count++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.count--;
      if (this.count === 0) for (const w of this.waiters.splice(0)) w();
    };
  }
}
