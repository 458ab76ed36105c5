// sparse writes a regular file's content from a stream of chunks with
// positional writes, leaving holes for aligned all-zero blocks of HOLE_BLOCK
// bytes. Layers carry files that are mostly zeros (databases, preallocated
// logs, VM images); on a thin volume or a sparse image file every written
// zero costs real space, so the applier keeps them sparse like the original.
// Content is staged through one reused buffer: never more than STAGE_BYTES
// of a file is held in memory. Writes are synchronous pwrite(2)s into the
// page cache of the mounted snapshot (≤ 1 MiB each, so the event loop is
// never held for long); the chunks themselves arrive asynchronously.

import fs from 'node:fs';
import { InvalidArgumentError } from '../errdefs.js';

/** HOLE_BLOCK is the size of an aligned all-zero block that is skipped (left as a hole). */
export const HOLE_BLOCK = 64 * 1024;
/** STAGE_BYTES is the staging buffer size; a multiple of HOLE_BLOCK so blocks stay aligned. */
export const STAGE_BYTES = 16 * HOLE_BLOCK;

const ZERO_BLOCK = Buffer.alloc(HOLE_BLOCK);

/** SparseWriter owns the staging buffer; one per apply, used for one file at a time. */
export class SparseWriter {
  private readonly stage = Buffer.allocUnsafe(STAGE_BYTES);

  /**
   * write copies chunks (expected total `size` bytes) into fd from offset 0,
   * skipping aligned zero blocks, then sets the file length to size (which
   * also materialises a trailing hole). Returns the bytes actually written.
   */
  async write(fd: number, chunks: AsyncIterable<Buffer | Uint8Array>, size: number, signal?: AbortSignal): Promise<number> {
    let base = 0; // file offset of stage[0]
    let fill = 0;
    let written = 0;
    let end = 0; // end offset of the last real write
    const flush = (len: number): void => {
      let runStart = -1;
      for (let off = 0; off < len; off += HOLE_BLOCK) {
        const blockEnd = Math.min(off + HOLE_BLOCK, len);
        const isHole = blockEnd - off === HOLE_BLOCK && this.stage.subarray(off, blockEnd).equals(ZERO_BLOCK);
        if (!isHole && runStart < 0) runStart = off;
        if (isHole && runStart >= 0) {
          writeAll(fd, this.stage, runStart, off - runStart, base + runStart);
          written += off - runStart;
          end = base + off;
          runStart = -1;
        }
      }
      if (runStart >= 0) {
        writeAll(fd, this.stage, runStart, len - runStart, base + runStart);
        written += len - runStart;
        end = base + len;
      }
    };
    for await (const chunk of chunks) {
      signal?.throwIfAborted();
      let p = 0;
      while (p < chunk.length) {
        const n = Math.min(chunk.length - p, STAGE_BYTES - fill);
        this.stage.set(chunk.subarray(p, p + n), fill);
        fill += n;
        p += n;
        if (fill === STAGE_BYTES) {
          flush(fill);
          base += fill;
          fill = 0;
        }
      }
    }
    if (fill > 0) flush(fill);
    const total = base + fill;
    if (total !== size) throw new InvalidArgumentError(`malformed layer: file content is ${total} bytes, header says ${size}`);
    if (end < size) fs.ftruncateSync(fd, size);
    return written;
  }
}

function writeAll(fd: number, buf: Buffer, off: number, len: number, pos: number): void {
  while (len > 0) {
    const bytesWritten = fs.writeSync(fd, buf, off, len, pos);
    off += bytesWritten;
    pos += bytesWritten;
    len -= bytesWritten;
  }
}
