// loop attaches image files to loop block devices and finds/detaches them.
// Attaching uses LOOP_CTL_GET_FREE + LOOP_CONFIGURE (one atomic ioctl that
// binds the file and sets flags), the same sequence util-linux and
// containerd use. Discovery reads sysfs, so it sees devices other processes
// (containerd itself, a crashed tsblock) attached.

import fs from 'node:fs';
import path from 'node:path';
import { ioctlBuffer, ioctlInt } from '../../ffi/libc.js';
import { ErrnoError, isErrno } from '../../ffi/errno.js';
import { S_IFBLK, makedev, mknod } from '../../ffi/fs.js';
import {
  LOOP_CLR_FD,
  LOOP_CONFIGURE,
  LOOP_CTL_GET_FREE,
  LOOP_GET_STATUS64,
  LOOP_INFO64_SIZE,
  LOOP_MAJOR,
  LOOP_SET_CAPACITY,
  LOOP_SET_STATUS64,
  LO_FLAGS_AUTOCLEAR,
  LO_FLAGS_DIRECT_IO,
  LO_FLAGS_READ_ONLY,
  decodeLoopInfo64,
  encodeLoopConfig,
  type LoopInfo64,
} from '../../ffi/loop.js';
import { sleepSync } from './sleep.js';

/** LoopDevice is an attached loop device. */
export interface LoopDevice {
  path: string;
  number: number;
  /**
   * fd is set only when attached with autoclear: the device stays bound while
   * this descriptor is open. Call releaseLoop() once something else holds the
   * device (a mount); the last close then detaches it automatically, which is
   * also what happens if the process dies first (no leak on crash).
   */
  fd?: number;
}

/** AttachOptions tune attachLoop. */
export interface AttachOptions {
  readOnly?: boolean;
  autoclear?: boolean;
  directIo?: boolean;
  /** blockSize is the device's logical block size (0 = the kernel's 512). */
  blockSize?: number;
}

const LOOP_CONTROL = '/dev/loop-control';
const ATTACH_TRIES = 16;
const DETACH_TRIES = 10;
const SYS_BLOCK = '/sys/block';

/** attachLoop binds file to a free loop device and returns it. */
export function attachLoop(file: string, opts: AttachOptions = {}): LoopDevice {
  const fileFd = fs.openSync(file, opts.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR);
  try {
    let flags = 0;
    if (opts.readOnly) flags |= LO_FLAGS_READ_ONLY;
    if (opts.autoclear) flags |= LO_FLAGS_AUTOCLEAR;
    if (opts.directIo) flags |= LO_FLAGS_DIRECT_IO;
    const config = encodeLoopConfig(fileFd, opts.blockSize ?? 0, { flags, fileName: canonicalPath(file) });
    let lastErr: unknown;
    for (let attempt = 0; attempt < ATTACH_TRIES; attempt++) {
      const number = getFreeLoop();
      const devPath = `/dev/loop${number}`;
      const devFd = openLoopNode(devPath, number, !!opts.readOnly);
      try {
        ioctlBuffer(devFd, LOOP_CONFIGURE, config, devPath);
      } catch (err) {
        fs.closeSync(devFd);
        // EBUSY: another process bound the same free device between our
        // GET_FREE and CONFIGURE. Ask again for the next free one.
        if (isErrno(err, 'EBUSY')) {
          lastErr = err;
          continue;
        }
        throw err;
      }
      if (opts.autoclear) return { path: devPath, number, fd: devFd };
      fs.closeSync(devFd);
      return { path: devPath, number };
    }
    throw new Error(`attach ${file}: no free loop device after ${ATTACH_TRIES} tries`, { cause: lastErr });
  } finally {
    // The kernel holds its own reference to the backing file.
    fs.closeSync(fileFd);
  }
}

/** releaseLoop closes the descriptor an autoclear attach kept open (no-op otherwise). */
export function releaseLoop(dev: LoopDevice): void {
  if (dev.fd !== undefined) {
    const fd = dev.fd;
    dev.fd = undefined;
    fs.closeSync(fd);
  }
}

function getFreeLoop(): number {
  const ctl = fs.openSync(LOOP_CONTROL, fs.constants.O_RDWR);
  try {
    return ioctlInt(ctl, LOOP_CTL_GET_FREE, 0, LOOP_CONTROL);
  } finally {
    fs.closeSync(ctl);
  }
}

// openLoopNode opens /dev/loopN, creating the node when the kernel made the
// device but nothing (no udev/devtmpfs, e.g. in a container) made the node.
function openLoopNode(devPath: string, number: number, readOnly: boolean): number {
  const mode = readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
  try {
    return fs.openSync(devPath, mode);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  const [major, minor] = loopDevNumbers(number);
  try {
    mknod(devPath, S_IFBLK | 0o660, makedev(major, minor));
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
  }
  return fs.openSync(devPath, mode);
}

// loopDevNumbers reads major:minor from sysfs; the minor is not always N
// (max_part shifts it), so 7:N is only the fallback.
function loopDevNumbers(number: number): [number, number] {
  try {
    const [ma, mi] = fs.readFileSync(`${SYS_BLOCK}/loop${number}/dev`, 'utf8').trim().split(':');
    return [Number(ma), Number(mi)];
  } catch {
    return [LOOP_MAJOR, number];
  }
}

/**
 * detachLoop unbinds a loop device (LOOP_CLR_FD). A device that is already
 * unbound (ENXIO) or has no node (ENOENT) is not an error. If the device is
 * still open elsewhere the kernel defers the detach to the last close.
 */
export function detachLoop(device: string): void {
  let fd: number;
  try {
    fd = fs.openSync(device, fs.constants.O_RDONLY);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENXIO')) return;
    throw err;
  }
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        ioctlInt(fd, LOOP_CLR_FD, 0, device);
        return;
      } catch (err) {
        if (isErrno(err, 'ENXIO')) return;
        if (isErrno(err, 'EBUSY') && attempt < DETACH_TRIES) {
          sleepSync(50 * attempt);
          continue;
        }
        throw err;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** loopStatus reads LOOP_GET_STATUS64; undefined when the device is unbound. */
export function loopStatus(device: string): LoopInfo64 | undefined {
  const fd = fs.openSync(device, fs.constants.O_RDONLY);
  try {
    const buf = Buffer.alloc(LOOP_INFO64_SIZE);
    try {
      ioctlBuffer(fd, LOOP_GET_STATUS64, buf, device);
    } catch (err) {
      if (isErrno(err, 'ENXIO')) return undefined;
      throw err;
    }
    return decodeLoopInfo64(buf);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * setLoopAutoclear turns on autoclear for an attached device (GET then
 * SET_STATUS64), so the device goes away when its last user closes it.
 */
export function setLoopAutoclear(device: string): void {
  const fd = fs.openSync(device, fs.constants.O_RDONLY);
  try {
    const buf = Buffer.alloc(LOOP_INFO64_SIZE);
    ioctlBuffer(fd, LOOP_GET_STATUS64, buf, device);
    const flags = buf.readUInt32LE(52);
    buf.writeUInt32LE(flags | LO_FLAGS_AUTOCLEAR, 52);
    ioctlBuffer(fd, LOOP_SET_STATUS64, buf, device);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * setLoopCapacity makes an attached device take its backing file's current
 * size (LOOP_SET_CAPACITY), after the file was grown: a mounted filesystem on
 * it can then be grown online.
 */
export function setLoopCapacity(device: string): void {
  const fd = fs.openSync(device, fs.constants.O_RDONLY);
  try {
    ioctlInt(fd, LOOP_SET_CAPACITY, 0, device);
  } finally {
    fs.closeSync(fd);
  }
}

const DELETED = ' (deleted)';

function readBacking(name: string): string | undefined {
  try {
    const raw = fs.readFileSync(`${SYS_BLOCK}/${name}/loop/backing_file`, 'utf8');
    return raw.endsWith('\n') ? raw.slice(0, -1) : raw;
  } catch (err) {
    // No loop/ directory: the device exists but is unbound.
    if (isErrno(err, 'ENOENT', 'ENXIO')) return undefined;
    throw err;
  }
}

function loopNumber(device: string): number {
  const m = /^(?:\/dev\/)?loop(\d+)$/.exec(device);
  if (!m) throw new ErrnoError('loop', 22 /* EINVAL */, `${device} is not a loop device path`);
  return Number(m[1]);
}

/**
 * loopBackingFile returns the file behind a loop device as the kernel reports
 * it (possibly ending in " (deleted)"), or undefined when unbound.
 */
export function loopBackingFile(device: string): string | undefined {
  return readBacking(`loop${loopNumber(device)}`);
}

/** LoopEntry is one bound loop device and its backing file. */
export interface LoopEntry {
  device: string;
  backingFile: string;
  /** deleted is true when the backing file was unlinked while attached. */
  deleted: boolean;
}

/** listLoops returns every bound loop device, from sysfs. */
export function listLoops(): LoopEntry[] {
  const out: LoopEntry[] = [];
  for (const name of fs.readdirSync(SYS_BLOCK)) {
    if (!/^loop\d+$/.test(name)) continue;
    const backing = readBacking(name);
    if (backing === undefined) continue;
    const deleted = backing.endsWith(DELETED);
    out.push({
      device: `/dev/${name}`,
      backingFile: deleted ? backing.slice(0, -DELETED.length) : backing,
      deleted,
    });
  }
  return out.sort((a, b) => loopNumber(a.device) - loopNumber(b.device));
}

/**
 * canonicalPath resolves symlinks the way the kernel's d_path reports a
 * backing file; for a deleted file only its directory can be resolved.
 */
export function canonicalPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    try {
      return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
    } catch {
      return path.resolve(p);
    }
  }
}

/** findLoopsFor returns the loop devices backed by file (deleted or not). */
export function findLoopsFor(file: string): string[] {
  const want = canonicalPath(file);
  return listLoops()
    .filter((e) => e.backingFile === want)
    .map((e) => e.device);
}

/** findLoopsUnder returns the loop devices whose backing file lies under dir. */
export function findLoopsUnder(dir: string): string[] {
  const prefix = canonicalPath(dir) + path.sep;
  return listLoops()
    .filter((e) => e.backingFile.startsWith(prefix))
    .map((e) => e.device);
}
