// http serves GET /metrics (Prometheus text format) and GET /healthz on a
// TCP address. Kept apart from the gRPC socket: containerd never sees it.

import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { parseHostPort } from '../config/load.js';
import { InvalidArgumentError } from '../errdefs.js';

/** MetricsServer is a listening /metrics endpoint. */
export interface MetricsServer {
  /** address is "host:port" actually bound (port 0 resolved). */
  address: string;
  close(): Promise<void>;
}

/** serveMetrics listens on address and answers scrapes from registry (rendered by `render`). */
export async function serveMetrics(address: string, registry: Registry, render: () => Promise<string> = () => registry.metrics()): Promise<MetricsServer> {
  const hp = parseHostPort(address);
  if (!hp) throw new InvalidArgumentError(`metrics address ${JSON.stringify(address)} must be host:port`);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n');
      return;
    }
    render().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(hp.port, hp.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  const bound = a && typeof a === 'object' ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : address;
  return {
    address: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
