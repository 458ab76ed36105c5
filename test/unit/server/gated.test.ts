// A gated server answers connections before its handlers exist: calls made
// meanwhile wait and are served by the handlers the gate opens onto (unary
// and server-streaming), or get UNAVAILABLE with the reason when start-up
// fails. Real grpc-js server and client over a unix socket.

import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Gate, type Decoder } from '../../../src/server/gated.js';

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const method = (name: string, responseStream: boolean) => ({
  path: `/t.T/${name}`, requestStream: false, responseStream,
  requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize,
});
const SERVICE: grpc.ServiceDefinition = { Echo: method('Echo', false), Count: method('Count', true) };
const Client = grpc.makeGenericClientConstructor(SERVICE, 't.T');
type C = {
  Echo: (b: Buffer, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => void;
  Count: (b: Buffer) => grpc.ClientReadableStream<Buffer>;
};

const handlers = (tag: string): grpc.UntypedServiceImplementation => ({
  Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(`${tag} ${call.request.toString()}`)),
  Count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    for (let i = 0; i < Number(call.request.toString()); i++) call.write(Buffer.from(`${tag}${i}`));
    call.end();
  },
});

let dir = '';
let server: grpc.Server | undefined;
let client: grpc.Client | undefined;
afterEach(() => {
  client?.close();
  server?.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});

async function serve(gate: Gate<string>, decoder?: Decoder): Promise<C> {
  dir = mkdtempSync(join(tmpdir(), 'tsblock-restart-gated-'));
  server = new grpc.Server();
  server.addService(SERVICE, gate.handlers(SERVICE, handlers, decoder));
  const addr = `unix://${join(dir, 's.sock')}`;
  await new Promise<void>((res, rej) => server!.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  client = new Client(addr, grpc.credentials.createInsecure());
  return client as unknown as C;
}

const echo = (c: C, arg: string) => new Promise<string>((res, rej) => c.Echo(Buffer.from(arg), (e, r) => (e ? rej(e) : res(r!.toString()))));
const count = (c: C, n: number) =>
  new Promise<string[]>((res, rej) => {
    const got: string[] = [];
    const s = c.Count(Buffer.from(String(n)));
    s.on('data', (b: Buffer) => got.push(b.toString()));
    s.on('error', rej);
    s.on('end', () => res(got));
  });
const connected = (c: C) =>
  new Promise<void>((res, rej) => (c as unknown as grpc.Client).waitForReady(Date.now() + 10_000, (e) => (e ? rej(e) : res())));

describe('gated handlers', () => {
  it('answer the connection before the gate opens; calls made meanwhile wait and are served by the opened handlers', async () => {
    const gate = new Gate<string>();
    const c = await serve(gate);
    await connected(c); // the HTTP/2 handshake completes with the gate still closed
    let settled = false;
    const calls = Promise.all([echo(c, 'a'), count(c, 3)]).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(settled, 'a call returned before the gate opened').toBe(false);
    gate.open('v1');
    expect(await calls).toEqual(['v1 a', ['v10', 'v11', 'v12']]);
    expect(await echo(c, 'b')).toBe('v1 b');
  });

  it('after fail(), waiting and later calls get UNAVAILABLE with the reason and the cause', async () => {
    const gate = new Gate<string>();
    const c = await serve(gate);
    const waiting = echo(c, 'a').catch((e: grpc.ServiceError) => e);
    const stream = count(c, 2).catch((e: grpc.ServiceError) => e);
    await new Promise((r) => setTimeout(r, 100));
    gate.fail('tsblock failed to start', new Error('root is locked'));
    for (const e of [await waiting, await stream, await echo(c, 'b').catch((e: grpc.ServiceError) => e)]) {
      expect(e).toBeInstanceOf(Error);
      expect((e as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
      expect((e as grpc.ServiceError).details).toBe('tsblock failed to start: root is locked');
    }
  });

  it('with a decoder, a held request is decoded once the gate opens; one that does not decode gets INTERNAL', async () => {
    const seen: string[] = [];
    const decoder: Decoder = {
      decode: (method, req) => {
        const text = (req as Buffer).toString();
        if (text === 'bad') throw new Error('invalid wire type');
        seen.push(method);
        return Buffer.from(text.toUpperCase());
      },
    };
    const gate = new Gate<string>();
    const c = await serve(gate, decoder);
    const calls = Promise.all([echo(c, 'a'), count(c, 2), echo(c, 'bad').catch((e: grpc.ServiceError) => e)]);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen, 'nothing is decoded before the gate opens').toEqual([]);
    gate.open('v');
    const [a, n, bad] = await calls;
    expect([a, n]).toEqual(['v A', ['v0', 'v1']]);
    expect((bad as grpc.ServiceError).code).toBe(grpc.status.INTERNAL);
    expect((bad as grpc.ServiceError).details).toBe('Error deserializing request: invalid wire type');
    expect(seen.sort()).toEqual(['Count', 'Echo']);
  });

  it('only the first open or fail counts', async () => {
    const gate = new Gate<string>();
    const c = await serve(gate);
    gate.open('first');
    gate.open('second');
    gate.fail('late failure');
    expect(await echo(c, 'x')).toBe('first x');
  });

  it('refuses a service with a client-streaming method, which it cannot hold', () => {
    const gate = new Gate<string>();
    const def = { Up: { ...method('Up', false), requestStream: true } } as grpc.ServiceDefinition;
    expect(() => gate.handlers(def, handlers)).toThrow(/Up streams requests/);
  });
});
