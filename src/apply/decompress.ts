// decompress turns a layer blob into the uncompressed tar stream whose
// sha256 is the layer's diffID. The format is decided by magic bytes
// (gzip 1f 8b, zstd 28 b5 2f fd, anything else is taken as plain tar), the
// way containerd's DetectCompression does; the media type is validated
// (unknown layer types are refused) and a disagreement with the magic only
// produces a warning, since registries do serve mislabelled blobs.

import { Readable, Transform, pipeline } from 'node:stream';
import zlib from 'node:zlib';
import { DecompressStream } from 'zstd-napi';
import { InvalidArgumentError } from '../errdefs.js';

/** Compression is a layer blob's encoding. */
export type Compression = 'none' | 'gzip' | 'zstd';

const MEDIA_TYPES: ReadonlyMap<string, Compression> = new Map([
  ['application/vnd.oci.image.layer.v1.tar', 'none'],
  ['application/vnd.oci.image.layer.v1.tar+gzip', 'gzip'],
  ['application/vnd.oci.image.layer.v1.tar+zstd', 'zstd'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar', 'none'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip'],
  ['application/vnd.oci.image.layer.nondistributable.v1.tar+zstd', 'zstd'],
  ['application/vnd.docker.image.rootfs.diff.tar', 'none'],
  ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'gzip'],
  ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'gzip'],
]);

/** compressionOfMediaType maps a layer media type to its compression; unknown types throw InvalidArgumentError. */
export function compressionOfMediaType(mediaType: string): Compression {
  const c = MEDIA_TYPES.get(mediaType);
  if (c === undefined) throw new InvalidArgumentError(`unsupported layer media type "${mediaType}"`);
  return c;
}

/** detectCompression reads the magic bytes at the start of a blob. */
export function detectCompression(head: Buffer): Compression | 'xz' | 'bzip2' {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  return 'none';
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk, 'latin1');
  throw new TypeError(`layer stream yielded a ${typeof chunk}, expected bytes`);
}

/**
 * DECODE_CHUNK is the gunzip output buffer. zlib's default (16 KiB) makes a
 * thread-pool round trip per 16 KiB of tar: ~19,000 for a 300 MB image,
 * with the event loop idle in each. 1 MiB keeps one decoder's memory small
 * and the round trips rare (docs/performance.md, "Applier").
 */
export const DECODE_CHUNK = 1 << 20;

/** DecompressOptions tune decompressLayer. */
export interface DecompressOptions {
  mediaType?: string;
  warn?: (message: string) => void;
}

/**
 * decompressLayer yields the uncompressed tar bytes of a layer blob.
 * Decoder failures become InvalidArgumentError("malformed layer: …");
 * failures of the source itself are rethrown unchanged.
 */
export async function* decompressLayer(source: AsyncIterable<unknown>, opts: DecompressOptions = {}): AsyncGenerator<Buffer> {
  const declared = opts.mediaType ? compressionOfMediaType(opts.mediaType) : undefined;
  const it = source[Symbol.asyncIterator]();
  // Peek enough bytes for the longest magic.
  const head: Buffer[] = [];
  let headLen = 0;
  let ended = false;
  while (headLen < 6) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    const b = toBuffer(r.value);
    head.push(b);
    headLen += b.length;
  }
  const kind = detectCompression(Buffer.concat(head));
  if (kind === 'xz' || kind === 'bzip2') throw new InvalidArgumentError(`unsupported layer compression ${kind}`);
  if (declared !== undefined && declared !== kind) {
    opts.warn?.(`layer media type ${opts.mediaType} says ${declared} but the data is ${kind}; using ${kind}`);
  }
  async function* all(): AsyncGenerator<Buffer> {
    try {
      yield* head;
      if (ended) return;
      for (let r = await it.next(); !r.done; r = await it.next()) yield toBuffer(r.value);
    } finally {
      await it.return?.();
    }
  }
  if (kind === 'none') {
    yield* all();
    return;
  }
  let sourceError: unknown;
  async function* watched(): AsyncGenerator<Buffer> {
    try {
      yield* all();
    } catch (err) {
      sourceError = err;
      throw err;
    }
  }
  const decoder: Transform = kind === 'gzip' ? zlib.createGunzip({ chunkSize: DECODE_CHUNK }) : new DecompressStream();
  const input = Readable.from(watched(), { objectMode: false });
  pipeline(input, decoder, () => {
    // Errors surface through the iteration below.
  });
  try {
    for await (const out of decoder) yield out as Buffer;
  } catch (err) {
    if (sourceError !== undefined) throw sourceError;
    if ((err as { name?: unknown }).name === 'AbortError') throw err;
    throw new InvalidArgumentError(`malformed layer: ${kind} decompression failed: ${(err as Error).message}`, { cause: err });
  } finally {
    input.destroy();
    decoder.destroy();
  }
}
