// reflink makes a snapshot's image from its parent's: a FICLONE reflink
// (O(extents), shares blocks) where the filesystem supports it (XFS with
// reflink=1, btrfs), else a sparse-aware copy that moves only data extents
// (SEEK_DATA/SEEK_HOLE), so a 10 GiB image holding 50 MB costs 50 MB, not
// 10 GiB as a plain io.Copy would (containerd blockfile's known gap).

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ioctlInt, lseek, SEEK_DATA, SEEK_HOLE } from '../../ffi/libc.js';
import { isErrno } from '../../ffi/errno.js';
import { FICLONE } from '../../ffi/fs.js';

/** NO_REFLINK_CODES are the errno codes meaning "this filesystem/pair cannot reflink". */
export const NO_REFLINK_CODES = ['EOPNOTSUPP', 'ENOTSUP', 'EXDEV', 'EINVAL', 'ENOTTY', 'ENOSYS'] as const;

/** isNoReflink tells whether err says reflink is impossible here (so a copy is the answer). */
export function isNoReflink(err: unknown): boolean {
  return isErrno(err, ...NO_REFLINK_CODES);
}

const CREATE_EXCL = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;

/**
 * cloneFile creates dst (must not exist, mode 0600) sharing all of src's
 * extents. On failure dst is removed and the ErrnoError is thrown; test it
 * with isNoReflink.
 */
export function cloneFile(src: string, dst: string): void {
  const srcFd = fs.openSync(src, fs.constants.O_RDONLY);
  try {
    const dstFd = fs.openSync(dst, CREATE_EXCL, 0o600);
    let ok = false;
    try {
      ioctlInt(dstFd, FICLONE, srcFd, `${src} -> ${dst}`);
      ok = true;
    } finally {
      fs.closeSync(dstFd);
      if (!ok) fs.rmSync(dst, { force: true });
    }
  } finally {
    fs.closeSync(srcFd);
  }
}

const CHUNK = 4 * 1024 * 1024;

/**
 * copySparse copies src to a new dst (mode 0600) moving only data extents,
 * in ≤ 4 MiB async chunks so the event loop keeps serving. Zero chunks inside
 * data extents are skipped too, so dst is never denser than src. dst gets
 * src's apparent size; on failure dst is removed.
 */
export async function copySparse(src: string, dst: string): Promise<void> {
  const input = await fsp.open(src, 'r');
  try {
    const size = (await input.stat()).size;
    const output = await fsp.open(dst, CREATE_EXCL, 0o600);
    let ok = false;
    try {
      await output.truncate(size);
      const buf = Buffer.allocUnsafe(CHUNK);
      const zero = Buffer.alloc(CHUNK);
      let off = 0;
      while (off < size) {
        const data = lseek(input.fd, off, SEEK_DATA);
        if (data < 0 || data >= size) break;
        const hole = Math.min(lseek(input.fd, data, SEEK_HOLE), size);
        for (let pos = data; pos < hole; ) {
          const want = Math.min(CHUNK, hole - pos);
          const { bytesRead } = await input.read(buf, 0, want, pos);
          if (bytesRead === 0) break; // src shrank under us; size stays as measured
          const chunk = buf.subarray(0, bytesRead);
          if (!chunk.equals(zero.subarray(0, bytesRead))) {
            let written = 0;
            while (written < bytesRead) {
              const r = await output.write(chunk, written, bytesRead - written, pos + written);
              written += r.bytesWritten;
            }
          }
          pos += bytesRead;
        }
        off = hole;
      }
      await output.sync();
      ok = true;
    } finally {
      await output.close();
      if (!ok) await fsp.rm(dst, { force: true });
    }
  } finally {
    await input.close();
  }
}

/** CloneMethod says how cloneOrCopy made the copy. */
export type CloneMethod = 'reflink' | 'sparse-copy';

/** cloneOrCopy reflinks src to dst, falling back to copySparse where reflink is impossible. */
export async function cloneOrCopy(src: string, dst: string): Promise<CloneMethod> {
  try {
    cloneFile(src, dst);
    return 'reflink';
  } catch (err) {
    if (!isNoReflink(err)) throw err;
  }
  await copySparse(src, dst);
  return 'sparse-copy';
}

/** canReflink probes dir by cloning a tiny temporary file there (both are removed). */
export function canReflink(dir: string): boolean {
  const probe = path.join(dir, `.tsblock-reflink-probe-${process.pid}-${Date.now()}`);
  const clone = `${probe}.clone`;
  try {
    fs.writeFileSync(probe, Buffer.alloc(4096, 1), { mode: 0o600 });
    cloneFile(probe, clone);
    return true;
  } catch (err) {
    if (isNoReflink(err)) return false;
    throw err;
  } finally {
    fs.rmSync(probe, { force: true });
    fs.rmSync(clone, { force: true });
  }
}
