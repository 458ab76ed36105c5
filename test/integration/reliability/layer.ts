// layer gives the crash tests a real layer applied the way containerd ≥ 2
// does it through a proxy differ: the blob is put into the server's own blob
// directory (<root>/content/blobs/sha256/<hex>) and the Diff service's Apply
// is called with the mounts Prepare returned, so the apply runs inside the
// server process and its fault points (apply:*) can kill it there.

import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { diffClientConstructor } from '../../../src/proto/load.js';
import { buildTar, type LayerEntry } from '../../fixtures/layers/build.js';
import type { MountMsg } from '../../helpers/client.js';

/** LAYER_TAR_MEDIA is an uncompressed OCI layer. */
export const LAYER_TAR_MEDIA = 'application/vnd.oci.image.layer.v1.tar';

/** TestLayer is a blob stored where the server's Apply finds it, and the files it makes. */
export interface TestLayer {
  digest: string;
  size: number;
  /** files maps each regular file's path to its content. */
  files: Record<string, string>;
}

/** LAYER_FILES is how many files a test layer holds (apply:entry@n with n below it lands mid-apply). */
export const LAYER_FILES = 6;

/** storeLayer builds a tar of LAYER_FILES files under dir `l-<tag>` and stores it as a blob under root/content. */
export async function storeLayer(root: string, tag: string): Promise<TestLayer> {
  const files: Record<string, string> = {};
  const entries: LayerEntry[] = [{ name: `l-${tag}`, type: 'directory', mode: 0o755 }];
  for (let i = 0; i < LAYER_FILES; i++) {
    const name = `l-${tag}/f${i}`;
    files[name] = `${tag}:${i}:${'x'.repeat(1000 * i)}`;
    entries.push({ name, content: files[name], mode: 0o644 });
  }
  return { ...storeBlob(root, await buildTar(entries)), files };
}

/** BlobRef names a stored blob the way a descriptor does. */
export interface BlobRef {
  digest: string;
  size: number;
}

/** storeBlob writes any layer blob (tar, gzip, zstd) where the server's Apply finds it: root/content/blobs/sha256/<hex>. */
export function storeBlob(root: string, blob: Buffer): BlobRef {
  const hex = createHash('sha256').update(blob).digest('hex');
  const dir = join(root, 'content', 'blobs', 'sha256');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, hex), blob, { mode: 0o600 });
  return { digest: `sha256:${hex}`, size: blob.length };
}

/** DiffDescriptor is what the Diff service's Diff answers. */
export interface DiffDescriptor {
  media_type: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

/** DiffClient calls the server's containerd.services.diff.v1.Diff. */
export class DiffClient {
  private readonly raw: grpc.Client & Record<string, any>;

  constructor(socket: string) {
    const Ctor = diffClientConstructor();
    this.raw = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
  }

  /** apply applies layer (of mediaType, default plain tar) onto mounts; resolves with the diffID the server computed. */
  apply(layer: BlobRef, mounts: MountMsg[], timeoutMs = 120_000, mediaType = LAYER_TAR_MEDIA): Promise<string> {
    const req = { diff: { media_type: mediaType, digest: layer.digest, size: layer.size }, mounts };
    return new Promise((resolve, reject) =>
      this.raw.Apply(req, { deadline: Date.now() + timeoutMs }, (err: Error | null, res: { applied: { digest: string } }) =>
        err ? reject(err) : resolve(res.applied.digest),
      ),
    );
  }

  /** diff writes the changes of right over left (empty: over nothing) as a layer into the server's blob dir. */
  diff(left: MountMsg[], right: MountMsg[], mediaType: string, timeoutMs = 300_000): Promise<DiffDescriptor> {
    return new Promise((resolve, reject) =>
      this.raw.Diff({ left, right, media_type: mediaType }, { deadline: Date.now() + timeoutMs }, (err: Error | null, res: { diff: DiffDescriptor }) =>
        err ? reject(err) : resolve(res.diff),
      ),
    );
  }

  close(): void {
    this.raw.close();
  }
}
