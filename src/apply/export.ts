// export writes a layer blob from two trees (differ.ts) to a file: the tar
// compressed as the media type asks, with the diffID (sha256 of the tar)
// and the blob digest computed on the way. Used by the Diff service and by
// `tsblock diff`.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { CompressStream } from 'zstd-napi';
import { compressionOfMediaType, type Compression } from './decompress.js';
import { diffTrees, type DiffOptions } from './differ.js';

/** LAYER_TAR, LAYER_GZIP and LAYER_ZSTD are the OCI layer media types export writes. */
export const LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';

/** ExportResult describes the written blob. */
export interface ExportResult {
  mediaType: string;
  /** digest is "sha256:<hex>" of the blob as written (compressed). */
  digest: string;
  size: number;
  /** diffId is "sha256:<hex>" of the uncompressed tar. */
  diffId: string;
  uncompressedSize: number;
}

function hasher(): { t: Transform; digest(): string; size(): number } {
  const h = createHash('sha256');
  let n = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      n += chunk.length;
      cb(null, chunk);
    },
  });
  return { t, digest: () => `sha256:${h.digest('hex')}`, size: () => n };
}

function compressor(c: Compression): Transform | undefined {
  if (c === 'gzip') return zlib.createGzip({ level: 6 });
  if (c === 'zstd') return new CompressStream() as unknown as Transform;
  return undefined;
}

/**
 * exportDiff writes the changes lower → upper to outFile as a layer of
 * mediaType (tar, tar+gzip or tar+zstd; unknown types throw
 * InvalidArgumentError).
 */
export async function exportDiff(lower: string | undefined, upper: string, outFile: string, mediaType = LAYER_GZIP, opts: DiffOptions = {}): Promise<ExportResult> {
  const compression = compressionOfMediaType(mediaType);
  const raw = hasher();
  const blob = hasher();
  const stages: NodeJS.ReadWriteStream[] = [raw.t];
  const z = compressor(compression);
  if (z) stages.push(z);
  stages.push(blob.t);
  await pipeline(Readable.from(diffTrees(lower, upper, opts)), ...(stages as [Transform]), fs.createWriteStream(outFile, { mode: 0o644 }), { signal: opts.signal });
  return { mediaType, digest: blob.digest(), size: blob.size(), diffId: raw.digest(), uncompressedSize: raw.size() };
}
