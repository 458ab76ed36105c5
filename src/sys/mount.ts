// mount performs containerd-style mounts with mount(2), attaching a loop
// device for the `loop` pseudo-option exactly as containerd would, and
// unmounts with bounded EBUSY retries. withTempMount is the scoped form the
// applier and tests use: it always unmounts and releases the loop device.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mount as sysMount, umount2 } from '../../ffi/libc.js';
import { isErrno } from '../../ffi/errno.js';
import type { Mount } from '../snapshots/mount.js';
import { InvalidArgumentError } from '../errdefs.js';
import { attachLoop, canonicalPath, detachLoop, loopBackingFile, releaseLoop, type LoopDevice } from './loop.js';
import { MS_BIND, MS_RDONLY, MS_REMOUNT, MS_SILENT, parseMountOptions } from './mount-options.js';
import { sleepSync } from './sleep.js';

export { parseMountOptions, type ParsedMountOptions } from './mount-options.js';

/** MNT_* umount2 flags. */
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;
export const UMOUNT_NOFOLLOW = 8;

/** MountHandle says what mountOne set up, so it can be torn down. */
export interface MountHandle {
  target: string;
  /** loopDevice is the loop device mountOne attached (autoclear). */
  loopDevice?: string;
  /** backingFile is the file behind loopDevice, to check identity before a detach. */
  backingFile?: string;
}

/** mountOne mounts m on target; for `loop` it attaches (and on failure releases) a loop device. */
export function mountOne(m: Mount, target: string): MountHandle {
  const opts = parseMountOptions(m.options);
  let source = m.source;
  let loop: LoopDevice | undefined;
  if (opts.loop) {
    loop = attachLoop(m.source, { readOnly: opts.readOnly, autoclear: true, directIo: opts.directIo });
    source = loop.path;
  }
  try {
    sysMount(source, target, m.type, opts.flags, opts.data);
    try {
      // A bind mount ignores MS_RDONLY on creation: it takes a remount.
      if ((opts.flags & MS_BIND) !== 0 && opts.readOnly) {
        sysMount('', target, '', opts.flags | MS_REMOUNT | MS_RDONLY, '');
      }
      // Propagation types cannot be combined with other flags in one call.
      if (opts.propagation !== 0) {
        sysMount('', target, '', opts.propagation | MS_SILENT, '');
      }
    } catch (err) {
      umount2(target, MNT_DETACH);
      throw err;
    }
  } catch (err) {
    // The autoclear loop fd is still ours: closing it with no mount holding
    // the device detaches it. Detach explicitly as well in case the kernel
    // did not (e.g. a racing opener), which is safe while we hold the fd.
    if (loop) {
      try {
        detachLoop(loop.path);
      } finally {
        releaseLoop(loop);
      }
    }
    throw err;
  }
  if (loop) {
    // The mount now holds the device; the last close (at unmount) clears it.
    releaseLoop(loop);
    return { target, loopDevice: loop.path, backingFile: canonicalPath(m.source) };
  }
  return { target };
}

/** UnmountOptions tune unmount. */
export interface UnmountOptions {
  /** detach is a lazy unmount (MNT_DETACH). */
  detach?: boolean;
  /** ignoreNotMounted makes EINVAL/ENOENT (nothing mounted there) a no-op. */
  ignoreNotMounted?: boolean;
}

const UNMOUNT_TRIES = 20;

/** unmount unmounts target, retrying EBUSY (a short-lived opener) a bounded number of times. */
export function unmount(target: string, opts: UnmountOptions = {}): void {
  const flags = (opts.detach ? MNT_DETACH : 0) | UMOUNT_NOFOLLOW;
  for (let attempt = 1; ; attempt++) {
    try {
      umount2(target, flags);
      return;
    } catch (err) {
      if (opts.ignoreNotMounted && isErrno(err, 'EINVAL', 'ENOENT')) return;
      if (isErrno(err, 'EBUSY') && attempt < UNMOUNT_TRIES) {
        sleepSync(Math.min(25 * attempt, 200));
        continue;
      }
      throw err;
    }
  }
}

/**
 * releaseMount unmounts a MountHandle and makes sure its loop device is gone.
 * Autoclear normally detaches it at unmount; the explicit detach only runs if
 * the device is still bound to our file, so a number reused by someone else
 * is never touched.
 */
export function releaseMount(h: MountHandle, opts: UnmountOptions = {}): void {
  unmount(h.target, opts);
  if (h.loopDevice === undefined) return;
  const backing = loopBackingFile(h.loopDevice);
  if (backing !== undefined && h.backingFile !== undefined && backing.replace(/ \(deleted\)$/, '') === h.backingFile) {
    detachLoop(h.loopDevice);
  }
}

/** TempMountOptions tune withTempMount. */
export interface TempMountOptions {
  /** readOnly adds `ro` to the mount's options. */
  readOnly?: boolean;
  /** parent is where the temporary mount point is created (default os.tmpdir()). */
  parent?: string;
}

/**
 * withTempMount mounts the single mount on a fresh temporary directory, runs
 * fn(dir), then unmounts, releases the loop device and removes the directory,
 * also when fn throws.
 */
export async function withTempMount<T>(
  mounts: Mount[],
  fn: (dir: string) => Promise<T>,
  opts: TempMountOptions = {},
): Promise<T> {
  if (mounts.length !== 1) {
    throw new InvalidArgumentError(`withTempMount needs exactly one mount, got ${mounts.length}`);
  }
  const m = mounts[0]!;
  const mnt: Mount = opts.readOnly && !m.options.includes('ro') ? { ...m, options: [...m.options.filter((o) => o !== 'rw'), 'ro'] } : m;
  const dir = fs.mkdtempSync(path.join(opts.parent ?? os.tmpdir(), 'tsblock-mnt-'));
  let handle: MountHandle | undefined;
  try {
    handle = mountOne(mnt, dir);
    return await fn(dir);
  } finally {
    try {
      if (handle) releaseMount(handle);
    } finally {
      fs.rmdirSync(dir);
    }
  }
}

/** decodeMountinfoPath undoes the octal escapes (\040 space, \011 tab, \012, \134) of /proc/self/mountinfo. */
export function decodeMountinfoPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** mountPoints returns every mount point in /proc/self/mountinfo, in mount order. */
export function mountPoints(): string[] {
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    // Fields: id parent major:minor root mountpoint options ...
    const fields = line.split(' ');
    if (fields.length >= 5) out.push(decodeMountinfoPath(fields[4]!));
  }
  return out;
}

/** MountEntry is one line of /proc/self/mountinfo, the fields tsblock reads. */
export interface MountEntry {
  target: string;
  fsType: string;
  source: string;
}

/** mountEntry returns what is mounted at target (the topmost mount), or undefined. */
export function mountEntry(target: string): MountEntry | undefined {
  const want = path.resolve(target);
  let found: MountEntry | undefined;
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // id parent major:minor root mountpoint options [optional…] - fstype source superoptions
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (fields.length < 5 || dash < 0 || dash + 2 >= fields.length) continue;
    if (decodeMountinfoPath(fields[4]!) !== want) continue;
    found = { target: want, fsType: fields[dash + 1]!, source: decodeMountinfoPath(fields[dash + 2]!) };
  }
  return found;
}

/**
 * mountsUnder returns the mount points at or below dir, deepest first (the
 * order to unmount them in).
 */
export function mountsUnder(dir: string): string[] {
  let base = path.resolve(dir);
  try {
    base = fs.realpathSync(base);
  } catch {
    // A missing dir cannot have mounts, but compare by the lexical path anyway.
  }
  const prefix = base === '/' ? '/' : base + '/';
  const seen = new Set<string>();
  for (const mp of mountPoints()) {
    if (mp === base || mp.startsWith(prefix)) seen.add(mp);
  }
  return [...seen].sort((a, b) => b.split('/').length - a.split('/').length || b.length - a.length);
}
