// registry is a minimal read-only OCI distribution endpoint over plain HTTP
// serving one image layout from memory, so `ctr images pull --plain-http`
// (containerd's pull + unpacker path, which sends containerd.io/snapshot.ref)
// can run without a network.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Registry is a running registry; ref() is what to pull. */
export interface Registry {
  host: string;
  close(): Promise<void>;
}

/** serveRegistry serves blobs (digest → bytes) and tags (name:tag → manifest digest + media type). */
export async function serveRegistry(blobs: Map<string, Buffer>, tags: Map<string, { digest: string; mediaType: string }>): Promise<Registry> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/v2/' || url.pathname === '/v2') {
      res.writeHead(200, { 'Docker-Distribution-API-Version': 'registry/2.0' }).end('{}');
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!m) return void res.writeHead(404).end();
    const [, name, kind, ref] = m as unknown as [string, string, string, string];
    let digest = ref;
    let type = 'application/octet-stream';
    if (kind === 'manifests' && !ref.startsWith('sha256:')) {
      const t = tags.get(`${name}:${ref}`);
      if (!t) return void res.writeHead(404).end();
      digest = t.digest;
      type = t.mediaType;
    } else if (kind === 'manifests') {
      type = [...tags.values()].find((t) => t.digest === ref)?.mediaType ?? 'application/vnd.oci.image.manifest.v1+json';
    }
    const body = blobs.get(digest);
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length, 'Docker-Content-Digest': digest });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { host: `127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}
