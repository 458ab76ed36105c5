// dm-control owns /dev/mapper/control: it opens the node once per process
// (making it from sysfs' numbers in a fresh container /dev) and issues DM_*
// ioctls on it, growing the answer buffer as the kernel asks. Kernel errnos
// become typed errors through sys/errno.ts (fromDmErrno). The verbs built on
// it are in dm.ts.

import fs from 'node:fs';
import { ioctlBuffer, ioctlBufferAsync } from '../../ffi/libc.js';
import { isErrno } from '../../ffi/errno.js';
import { makedev, mknod } from '../../ffi/fs.js';
import { DmCmd, DmFlag, decodeDmHeader, dmRequest, DM_IOCTL_SIZE, align8, encodeDmIoctl, type DmHeader } from '../../ffi/dm.js';
import { UnavailableError } from '../errdefs.js';
import { fromDmErrno } from './errno.js';

/** DM_CONTROL is the device-mapper control node. */
export const DM_CONTROL = '/dev/mapper/control';
/** DM_DIR is where named device nodes live. */
export const DM_DIR = '/dev/mapper';

const MIN_BUFFER = 16 * 1024;
const MAX_BUFFER = 16 * 1024 * 1024;

let controlFd: number | undefined;

// control opens /dev/mapper/control once per process. A missing node (fresh
// container /dev) is created from sysfs' misc device number.
function control(): number {
  if (controlFd !== undefined) return controlFd;
  try {
    controlFd = fs.openSync(DM_CONTROL, fs.constants.O_RDWR);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
    makeControlNode();
    controlFd = fs.openSync(DM_CONTROL, fs.constants.O_RDWR);
  }
  return controlFd;
}

function makeControlNode(): void {
  let numbers: string;
  try {
    numbers = fs.readFileSync('/sys/class/misc/device-mapper/dev', 'utf8').trim();
  } catch {
    throw new UnavailableError(`${DM_CONTROL} is missing and the kernel has no device-mapper (no /sys/class/misc/device-mapper)`);
  }
  const [major, minor] = numbers.split(':').map(Number);
  fs.mkdirSync(DM_DIR, { recursive: true, mode: 0o755 });
  const S_IFCHR = 0o020000;
  mknod(DM_CONTROL, S_IFCHR | 0o600, makedev(major!, minor!));
}

/** dmAvailable tells whether device-mapper works here: it must open the control node (stat is not enough). */
export function dmAvailable(): boolean {
  try {
    control();
    return true;
  } catch {
    return false;
  }
}

/** DmCall is one answered DM command: its header and the whole buffer (for payloads). */
export interface DmCall {
  header: DmHeader;
  buf: Buffer;
}

// HEADER_ONLY are the commands whose answer is the dm_ioctl header alone:
// their buffer needs no room beyond the request (zeroing and copying 16 KiB
// per call is measurable under emulation). The rest start at MIN_BUFFER.
const HEADER_ONLY: ReadonlySet<number> = new Set([DmCmd.VERSION, DmCmd.DEV_CREATE, DmCmd.DEV_REMOVE, DmCmd.DEV_RENAME, DmCmd.DEV_SUSPEND, DmCmd.DEV_STATUS, DmCmd.TABLE_LOAD, DmCmd.TABLE_CLEAR]);

/** dmIoctl issues one DM command and grows the buffer while the kernel says its answer did not fit (BUFFER_FULL). */
export function dmIoctl(cmd: number, what: string, fields: Parameters<typeof encodeDmIoctl>[0], payload?: Buffer): DmCall {
  let size = HEADER_ONLY.has(cmd) ? 0 : MIN_BUFFER;
  for (;;) {
    const buf = encodeDmIoctl(fields, payload, size);
    try {
      ioctlBuffer(control(), dmRequest(cmd), buf, what);
    } catch (err) {
      throw fromDmErrno(err, what, fields.name);
    }
    const header = decodeDmHeader(buf);
    if ((header.flags & DmFlag.BUFFER_FULL) === 0) return { header, buf };
    if (size >= MAX_BUFFER) throw new Error(`${what}: answer larger than ${MAX_BUFFER} bytes`);
    size = Math.max(MIN_BUFFER, size * 2);
  }
}

/**
 * dmIoctlAsync issues a DM command that answers nothing but its header
 * (create, load, resume, messages without output) on a worker thread, so
 * the event loop keeps serving requests meanwhile. The kernel serialises dm
 * commands itself; callers serialise their own use of one device.
 */
export async function dmIoctlAsync(cmd: number, what: string, fields: Parameters<typeof encodeDmIoctl>[0], payload?: Buffer): Promise<DmHeader> {
  const buf = encodeDmIoctl(fields, payload, DM_IOCTL_SIZE + align8(payload?.length ?? 0) + 1024);
  try {
    await ioctlBufferAsync(control(), dmRequest(cmd), buf, what);
  } catch (err) {
    throw fromDmErrno(err, what, fields.name);
  }
  return decodeDmHeader(buf);
}

/** closeControl closes the cached control descriptor (tests, shutdown). */
export function closeControl(): void {
  if (controlFd === undefined) return;
  fs.closeSync(controlFd);
  controlFd = undefined;
}
