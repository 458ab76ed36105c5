// Shutdown waits for calls, not for connections: an answer in flight is
// delivered before the server closes, and once nothing runs the server does
// not wait out its timeout for clients that keep their connection open.

import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Inflight } from '../../../src/server/inflight.js';
import { shutdownServer } from '../../../src/server/listen.js';

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const SERVICE: grpc.ServiceDefinition = {
  Slow: { path: '/t.T/Slow', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};
const Client = grpc.makeGenericClientConstructor(SERVICE, 't.T');

let dir = '';
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function serve(delayMs: number, inflight: Inflight): Promise<{ server: grpc.Server; client: grpc.Client }> {
  dir = mkdtempSync(join(tmpdir(), 'tsblock-inflight-'));
  const server = new grpc.Server();
  server.addService(SERVICE, inflight.track({
    Slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => setTimeout(() => cb(null, Buffer.from(`done ${call.request.toString()}`)), delayMs),
  }));
  const addr = `unix://${join(dir, 's.sock')}`;
  await new Promise<void>((res, rej) => server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  return { server, client: new Client(addr, grpc.credentials.createInsecure()) };
}

const slow = (c: grpc.Client, arg: string) =>
  new Promise<string>((res, rej) => (c as unknown as { Slow: (b: Buffer, cb: (e: Error | null, r?: Buffer) => void) => void }).Slow(Buffer.from(arg), (e, r) => (e ? rej(e) : res(r!.toString()))));

describe('shutdown with an in-flight tracker', () => {
  it('counts a running call and delivers its answer before the server closes', async () => {
    const inflight = new Inflight();
    const { server, client } = await serve(300, inflight);
    await slow(client, 'warm');
    const answer = slow(client, 'a');
    await new Promise((r) => setTimeout(r, 50));
    expect(inflight.running).toBe(1);
    const t0 = Date.now();
    await shutdownServer(server, 10_000, inflight);
    await expect(answer).resolves.toBe('done a');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(inflight.running).toBe(0);
    client.close();
  });

  it('does not wait out the timeout for a client that stays connected but calls nothing', async () => {
    const inflight = new Inflight();
    const { server, client } = await serve(0, inflight);
    await slow(client, 'x');
    const t0 = Date.now();
    await shutdownServer(server, 10_000, inflight);
    expect(Date.now() - t0).toBeLessThan(2_000);
    client.close();
  });
});
