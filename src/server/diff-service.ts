// diff-service implements containerd.services.diff.v1.Diff on tsblock's
// socket, for containerd ≥ 2.0 `[proxy_plugins.NAME] type = "diff"`.
//
// What a proxy differ gets (containerd 2.x core/diff/proxy): Apply receives
// the layer *descriptor* (digest, media type, size) and the mounts of the
// snapshot being unpacked, never the bytes; Diff receives two mount lists
// and must answer with the descriptor of a blob it wrote into a content
// store. A proxy therefore needs its own access to the content:
//   - Apply reads blobs/<alg>/<hex> from tsblock's own blob directory
//     (<root>/blobs, filled by Diff or by hand) and then from containerd's
//     local content store directories (contentDirs, default
//     /var/lib/containerd/io.containerd.content.v1.content): containerd's
//     local store keeps every namespace's blobs there, by digest.
//   - Diff writes the layer into <root>/blobs and returns its descriptor.
//     containerd cannot see that blob (its content metadata lives in its own
//     bolt database), so a containerd-driven Diff (commit of a container to
//     an image) reports the blob as missing unless the store is shared; use
//     `tsblock diff` to export layers instead. See docs/applier.md.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { assertDigest } from '../apply/chain.js';
import { errorMessage, InvalidArgumentError, isTsblockError, NotFoundError, ResourceExhaustedError } from '../errdefs.js';
import { mountFromProto, type PbMount } from './convert.js';
import { statusCode, toServiceError } from './status.js';
import type { DiffHandlers } from '../proto/gen/containerd/services/diff/v1/Diff.js';

/** DEFAULT_CONTENT_DIRS are where containerd's local content store keeps blobs by default. */
export const DEFAULT_CONTENT_DIRS = ['/var/lib/containerd/io.containerd.content.v1.content'];

/** DiffServiceOptions configure the Diff service. */
export interface DiffServiceOptions {
  /** blobDir holds blobs/<alg>/<hex> written by Diff and searched first by Apply (e.g. <root>/blobs parent). */
  blobDir: string;
  /** contentDirs are extra content-store roots (each with blobs/<alg>/<hex>) Apply reads from. */
  contentDirs?: string[];
  /** mountParent is where temporary mount points are made. */
  mountParent?: string;
  /**
   * spaceShortage says why the snapshot storage is below its reserve
   * (undefined when it is not): an Apply that fails then (ext4 in the image
   * turned read-only, EIO) failed because the storage ran out under it, and
   * is reported as RESOURCE_EXHAUSTED with that reason.
   */
  spaceShortage?: () => Promise<string | undefined>;
}

/** findBlob returns the path of digest in the first directory holding it. */
export function findBlob(dirs: string[], digest: string): string {
  assertDigest(digest, 'layer digest');
  const [alg, hex] = digest.split(':') as [string, string];
  for (const d of dirs) {
    const p = path.join(d, 'blobs', alg, hex);
    if (fs.existsSync(p)) return p;
  }
  throw new NotFoundError(`content ${digest}: not found in ${dirs.join(', ')} (a proxy differ reads blobs from disk; see docs/applier.md)`);
}

/** verifiedStream reads a blob and fails at its end when its digest is not `digest`. */
function verifiedStream(file: string, digest: string): NodeJS.ReadableStream {
  const [alg, hex] = digest.split(':') as [string, string];
  const hash = createHash(alg);
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      const got = hash.digest('hex');
      done(got === hex ? null : new InvalidArgumentError(`blob ${digest} does not match its content (${alg}:${got})`));
    },
  });
  return fs.createReadStream(file, { highWaterMark: 1 << 20 }).on('error', (e) => check.destroy(e)).pipe(check);
}

/**
 * diffHandlers implements Apply and Diff; log receives one line per failure.
 * Requests and responses are the types generated from proto/ (DiffHandlers).
 */
export function diffHandlers(o: DiffServiceOptions, log: (line: object) => void): DiffHandlers {
  const dirs = [o.blobDir, ...(o.contentDirs ?? DEFAULT_CONTENT_DIRS)];
  const unary = <Req, Res>(rpc: string, fn: (req: NoInfer<Partial<Req>>) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      Promise.resolve()
        .then(() => fn(call.request ?? {}))
        .then(
          (res) => callback(null, res),
          (err: unknown) => {
            log({ msg: `${rpc} failed`, rpc, code: grpc.status[statusCode(err)] ?? 'UNKNOWN', error: errorMessage(err) });
            callback(toServiceError(err));
          },
        );
    };
  // The applier and exporter (tar-stream, zstd, zlib) load on the first Diff
  // service call: a daemon that only serves Snapshots never pays for them.
  const applyMod = () => import('../apply/unpack.js');
  const exportMod = () => import('../apply/export.js');
  const mountMod = () => import('../sys/mount.js');
  const mountsOf = (v: unknown): ReturnType<typeof mountFromProto>[] => (Array.isArray(v) ? (v as PbMount[]).map(mountFromProto) : []);

  return {
    Apply: unary('Apply', async (req) => {
      const desc = req.diff;
      if (!desc?.digest) throw new InvalidArgumentError('Apply: diff descriptor with a digest is required');
      const mounts = mountsOf(req.mounts);
      if (mounts.length === 0) throw new InvalidArgumentError('Apply: mounts are required');
      const blob = findBlob(dirs, desc.digest);
      const [{ applyToMounts }, { LAYER_TAR }] = await Promise.all([applyMod(), exportMod()]);
      // The blob is checked against its descriptor as it streams in (a
      // mismatch fails the Apply, and containerd removes the snapshot), and
      // the uncompressed stream against containerd.io/uncompressed if given.
      const uncompressed = desc.annotations?.['containerd.io/uncompressed'];
      let res: Awaited<ReturnType<typeof applyToMounts>>;
      try {
        res = await applyToMounts(mounts, verifiedStream(blob, desc.digest), {
          mediaType: desc.media_type || undefined,
          mountParent: o.mountParent,
          expectedDiffId: typeof uncompressed === 'string' && uncompressed !== '' ? uncompressed : undefined,
        });
      } catch (err) {
        const short = isTsblockError(err) ? undefined : await o.spaceShortage?.().catch(() => undefined);
        if (short) throw new ResourceExhaustedError(`applying layer ${desc.digest} failed (${errorMessage(err)}) because ${short}`, { cause: err });
        throw err;
      }
      return { applied: { media_type: LAYER_TAR, digest: res.diffId, size: res.size, annotations: {} } };
    }),
    Diff: unary('Diff', async (req) => {
      const left = mountsOf(req.left);
      const right = mountsOf(req.right);
      if (right.length === 0) throw new InvalidArgumentError('Diff: right mounts are required');
      const [{ exportDiff, LAYER_GZIP }, { withTempMount }] = await Promise.all([exportMod(), mountMod()]);
      const mediaType = req.media_type || LAYER_GZIP;
      const ingest = path.join(o.blobDir, 'ingest');
      await fsp.mkdir(ingest, { recursive: true });
      const tmp = path.join(ingest, `diff-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`);
      try {
        const res = await withTempMount(
          right,
          (upper) =>
            left.length === 0
              ? exportDiff(undefined, upper, tmp, mediaType)
              : withTempMount(left, (lower) => exportDiff(lower, upper, tmp, mediaType), { readOnly: true, parent: o.mountParent }),
          { readOnly: true, parent: o.mountParent },
        );
        const final = path.join(o.blobDir, 'blobs', 'sha256', res.digest.slice('sha256:'.length));
        await fsp.mkdir(path.dirname(final), { recursive: true });
        await fsp.rename(tmp, final);
        const labels: Record<string, string> = { ...(req.labels ?? {}), 'containerd.io/uncompressed': res.diffId };
        return { diff: { media_type: res.mediaType, digest: res.digest, size: res.size, annotations: labels } };
      } finally {
        await fsp.rm(tmp, { force: true });
      }
    }),
  };
}
