// applier unpacks one OCI layer blob into a directory (in production a
// temporary mount of the snapshot being prepared). The blob is streamed:
// decompressed, hashed for the diffID and parsed by tar-stream one entry at a
// time; no layer or file is ever held whole in memory.
//
// Safety: every path is resolved inside root by paths.ts (names cleaned as
// if rooted, parent symlinks resolved relative to root, final components
// never followed), so a hostile tar can at worst write inside root. On any
// error applyLayer throws and leaves root half-written: the caller discards
// the snapshot.

import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import tar from 'tar-stream';
import { InvalidArgumentError, isTsblockError } from '../errdefs.js';
import { fromErrno } from '../sys/errno.js';
import { decompressLayer } from './decompress.js';
import { EntryWriter } from './entries.js';
import { attachRawPax, toEntryMeta } from './header.js';
import { RootResolver } from './paths.js';
import { SparseWriter } from './sparse.js';
import { LayerWrites } from './whiteout.js';
import { faultPoint } from '../base/faults.js';

/** ApplyOptions tune applyLayer. */
export interface ApplyOptions {
  /** mediaType is the layer descriptor's media type; validated, the magic bytes decide the decoder. */
  mediaType?: string;
  /** expectedDiffId ("sha256:<hex>") is checked after the whole stream was read. */
  expectedDiffId?: string;
  signal?: AbortSignal;
  /** allowDevices creates char/block device nodes (needs CAP_MKNOD); default: running as root. */
  allowDevices?: boolean;
  /** onWarning receives each non-fatal problem (skipped device, unsupported xattr…). */
  onWarning?: (message: string) => void;
}

/** ApplyResult describes the applied layer. */
export interface ApplyResult {
  /** diffId is "sha256:<hex>" of the uncompressed tar stream. */
  diffId: string;
  /** size is the number of uncompressed bytes. */
  size: number;
  /** entries is the number of tar entries processed (whiteouts included). */
  entries: number;
  /** skipped counts entries not materialised (devices without allowDevices, root and AUFS metadata entries). */
  skipped: number;
  /** warnings are the non-fatal problems met (at most MAX_WARNINGS kept). */
  warnings: string[];
}

/** MAX_WARNINGS bounds ApplyResult.warnings for hostile layers with millions of entries. */
export const MAX_WARNINGS = 100;

/** LayerSource is what applyLayer reads: a Node readable or any async iterable of bytes. */
export type LayerSource = NodeJS.ReadableStream | AsyncIterable<Buffer | Uint8Array>;

function asIterable(layer: LayerSource): AsyncIterable<unknown> {
  if (typeof (layer as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') return layer as AsyncIterable<unknown>;
  throw new TypeError('layer must be async iterable (a Node Readable or an async generator)');
}

/** drainedOrClosed waits for 'drain' or 'close' without leaving listeners behind. */
function drainedOrClosed(ex: { on(e: string, f: () => void): unknown; off(e: string, f: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      ex.off('drain', done);
      ex.off('close', done);
      resolve();
    };
    ex.on('drain', done);
    ex.on('close', done);
  });
}

/** wrapError classifies errors escaping the apply: tar-stream's plain errors mean a malformed layer. */
function wrapError(err: unknown): unknown {
  if (isTsblockError(err)) return err;
  const typed = fromErrno(err, 'applying layer');
  if (isTsblockError(typed)) return typed;
  if (err instanceof Error && err.name !== 'AbortError' && (err as { code?: unknown }).code === undefined && !(err instanceof TypeError)) {
    return new InvalidArgumentError(`malformed layer: ${err.message}`, { cause: err });
  }
  return err;
}

/**
 * applyLayer applies the layer blob to root and returns its diffID, the
 * uncompressed size and the entry count. It resolves only after the whole
 * stream was consumed. A diffID that differs from expectedDiffId throws
 * InvalidArgumentError; a malformed tar or compressed stream throws
 * InvalidArgumentError("malformed layer: …"); ENOSPC throws
 * ResourceExhaustedError.
 */
export async function applyLayer(root: string, layer: LayerSource, opts: ApplyOptions = {}): Promise<ApplyResult> {
  const signal = opts.signal;
  signal?.throwIfAborted();
  if (opts.expectedDiffId !== undefined && !/^sha256:[0-9a-f]{64}$/.test(opts.expectedDiffId)) {
    throw new InvalidArgumentError(`expected diffID "${opts.expectedDiffId}" is not sha256:<64 hex>`);
  }
  const st = await fs.stat(root);
  if (!st.isDirectory()) throw new InvalidArgumentError(`apply root ${root} is not a directory`);
  const realRoot = await fs.realpath(root);

  const warnings: string[] = [];
  const warn = (m: string): void => {
    if (warnings.length < MAX_WARNINGS) warnings.push(m);
    opts.onWarning?.(m);
  };
  const isRoot = process.getuid?.() === 0;
  const writes = new LayerWrites();
  const resolver = new RootResolver(realRoot, (parts) => writes.add(parts));
  const writer = new EntryWriter(resolver, writes, new SparseWriter(), {
    allowDevices: opts.allowDevices ?? isRoot,
    chown: isRoot,
    signal,
    warn,
  });

  const hash = createHash('sha256');
  let size = 0;
  const extract = tar.extract({ allowUnknownFormat: true } as Parameters<typeof tar.extract>[0]);
  attachRawPax(extract);

  // The producer feeds uncompressed bytes into tar-stream with backpressure;
  // the consumer below writes entries. Either side failing stops the other.
  let stopped = false;
  const producer = (async () => {
    try {
      for await (const chunk of decompressLayer(asIterable(layer), { mediaType: opts.mediaType, warn })) {
        if (stopped) return;
        signal?.throwIfAborted();
        hash.update(chunk);
        size += chunk.length;
        if (!extract.write(chunk)) {
          await drainedOrClosed(extract);
          if (stopped || extract.destroyed) return;
        }
      }
      (extract as unknown as { end(): void }).end();
    } catch (err) {
      extract.destroy(err as Error);
      throw err;
    }
  })();
  // Keep an early producer failure from being reported as unhandled; it is
  // awaited (and rethrown) below.
  producer.catch(() => {});
  // An abort must also interrupt a producer blocked on a stalled source.
  const onAbort = (): void => {
    stopped = true;
    extract.destroy(signal?.reason as Error);
    (layer as { destroy?: (err?: unknown) => void }).destroy?.(signal?.reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });

  let entries = 0;
  try {
    for await (const entry of extract) {
      signal?.throwIfAborted();
      const meta = toEntryMeta(entry.header);
      entries++;
      const data = entry as unknown as AsyncIterable<Buffer>;
      await writer.write(meta, data);
      faultPoint('apply:entry');
      // Drain content a writer did not read (hardlinks or devices with data).
      for await (const _ of data) void _;
    }
    await producer;
  } catch (err) {
    stopped = true;
    (extract as unknown as { destroy(err?: Error): void }).destroy();
    let cause = err;
    try {
      // After an abort the producer may be blocked on a stalled source that
      // cannot be interrupted (an async generator): do not wait for it.
      if (!signal?.aborted) await producer;
    } catch (perr) {
      // The producer's error (corrupt gzip, source failure, abort) is the
      // root cause of whatever the consumer saw.
      cause = perr;
    }
    throw wrapError(signal?.aborted ? signal.reason : cause);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  await writer.finish();

  const diffId = `sha256:${hash.digest('hex')}`;
  if (opts.expectedDiffId !== undefined && opts.expectedDiffId !== diffId) {
    throw new InvalidArgumentError(`layer diffID mismatch: expected ${opts.expectedDiffId} got ${diffId}`);
  }
  return { diffId, size, entries, skipped: writer.skipped, warnings };
}
