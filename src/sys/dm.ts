// dm is tsblock's device-mapper client: typed verbs over the DM_* ioctls on
// /dev/mapper/control (no dmsetup, no libdevmapper). Kernel errnos become
// the typed errors callers act on (sys/errno.ts, fromDmErrno): an unknown
// name is NotFoundError, a name in use AlreadyExistsError, a device still
// open FailedPreconditionError. The control node and the ioctl loop are in
// dm-control.ts; the /dev/mapper/<name> nodes (made here when no udev runs)
// in dm-nodes.ts.

import fs from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { ioctlBuffer } from '../../ffi/libc.js';
import { BLKDISCARD } from '../../ffi/fs.js';
import { blockDeviceSize } from './blockdev.js';
import {
  DM_NAME_LEN,
  DmCmd,
  DmFlag,
  decodeDataString,
  decodeKernelDev,
  decodeNameList,
  decodeTargetStatus,
  align8,
  encodeTargetMsg,
  encodeTargets,
  type DevNumber,
  type DmHeader,
  type DmTarget,
  type DmTargetStatus,
} from '../../ffi/dm.js';
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '../errdefs.js';
import { dmIoctl, dmIoctlAsync } from './dm-control.js';
import { devicePath, ensureNode, removeNode } from './dm-nodes.js';

export type { DmTarget, DmTargetStatus, DevNumber } from '../../ffi/dm.js';
export { DM_CONTROL, DM_DIR, closeControl, dmAvailable } from './dm-control.js';
export { devicePath } from './dm-nodes.js';

const REMOVE_TRIES = 20;
const REMOVE_PAUSE_MS = 50;

/** dmVersion returns the kernel's dm ioctl interface version [major, minor, patch]. */
export function dmVersion(): [number, number, number] {
  return dmIoctl(DmCmd.VERSION, 'DM_VERSION', {}).header.version;
}

/** DeviceInfo is what DEV_STATUS says about a device. */
export interface DeviceInfo {
  name: string;
  uuid: string;
  major: number;
  minor: number;
  openCount: number;
  eventNr: number;
  targetCount: number;
  suspended: boolean;
  readOnly: boolean;
  activeTable: boolean;
  inactiveTable: boolean;
}

function toInfo(h: DmHeader): DeviceInfo {
  const { major, minor } = decodeKernelDev(h.dev);
  return {
    name: h.name,
    uuid: h.uuid,
    major,
    minor,
    openCount: h.openCount,
    eventNr: h.eventNr,
    targetCount: h.targetCount,
    suspended: (h.flags & DmFlag.SUSPEND) !== 0,
    readOnly: (h.flags & DmFlag.READONLY) !== 0,
    activeTable: (h.flags & DmFlag.ACTIVE_PRESENT) !== 0,
    inactiveTable: (h.flags & DmFlag.INACTIVE_PRESENT) !== 0,
  };
}

/** createDevice makes an empty (table-less, suspended) device. */
export function createDevice(name: string, opts: { uuid?: string; readOnly?: boolean } = {}): DeviceInfo {
  const flags = opts.readOnly ? DmFlag.READONLY : 0;
  try {
    return toInfo(dmIoctl(DmCmd.DEV_CREATE, 'DM_DEV_CREATE', { name, uuid: opts.uuid, flags }).header);
  } catch (err) {
    // The kernel answers EBUSY, not EEXIST, when the name or uuid is taken.
    if (err instanceof FailedPreconditionError) throw new AlreadyExistsError(`device-mapper device ${JSON.stringify(name)} already exists`, { cause: err });
    throw err;
  }
}

/** loadTable loads targets into the device's inactive slot; resume() makes it live. */
export function loadTable(name: string, targets: readonly DmTarget[], opts: { readOnly?: boolean } = {}): void {
  const flags = opts.readOnly ? DmFlag.READONLY : 0;
  dmIoctl(DmCmd.TABLE_LOAD, 'DM_TABLE_LOAD', { name, flags, targetCount: targets.length }, encodeTargets(targets));
}

/** suspend stops I/O on a device (flushing and freezing its filesystem unless told not to). */
export function suspend(name: string, opts: { noflush?: boolean; skipLockfs?: boolean } = {}): void {
  let flags = DmFlag.SUSPEND;
  if (opts.noflush) flags |= DmFlag.NOFLUSH;
  if (opts.skipLockfs) flags |= DmFlag.SKIP_LOCKFS;
  dmIoctl(DmCmd.DEV_SUSPEND, 'DM_DEV_SUSPEND', { name, flags });
}

/** resume swaps in a loaded table (if any), restarts I/O and makes sure /dev/mapper/<name> exists. */
export function resume(name: string): DeviceInfo {
  const info = toInfo(dmIoctl(DmCmd.DEV_SUSPEND, 'DM_DEV_SUSPEND(resume)', { name }).header);
  ensureNode(name, info);
  return info;
}

/**
 * activate creates a device, loads its table and resumes it; on any failure
 * the half-made device is removed so no orphan stays behind.
 */
export function activate(name: string, targets: readonly DmTarget[], opts: { uuid?: string; readOnly?: boolean } = {}): DeviceInfo {
  createDevice(name, opts);
  try {
    loadTable(name, targets, opts);
    return resume(name);
  } catch (err) {
    try {
      dmIoctl(DmCmd.DEV_REMOVE, 'DM_DEV_REMOVE', { name });
    } catch {
      // the original error matters more
    }
    removeNode(name);
    throw err;
  }
}

/** activateAsync is activate() with the ioctls on a worker thread (see dmIoctlAsync). */
export async function activateAsync(name: string, targets: readonly DmTarget[], opts: { readOnly?: boolean } = {}): Promise<DeviceInfo> {
  const flags = opts.readOnly ? DmFlag.READONLY : 0;
  try {
    await dmIoctlAsync(DmCmd.DEV_CREATE, 'DM_DEV_CREATE', { name, flags });
  } catch (err) {
    if (err instanceof FailedPreconditionError) throw new AlreadyExistsError(`device-mapper device ${JSON.stringify(name)} already exists`, { cause: err });
    throw err;
  }
  try {
    await dmIoctlAsync(DmCmd.TABLE_LOAD, 'DM_TABLE_LOAD', { name, flags, targetCount: targets.length }, encodeTargets(targets));
    const info = toInfo(await dmIoctlAsync(DmCmd.DEV_SUSPEND, 'DM_DEV_SUSPEND(resume)', { name }));
    ensureNode(name, info);
    return info;
  } catch (err) {
    try {
      dmIoctl(DmCmd.DEV_REMOVE, 'DM_DEV_REMOVE', { name });
    } catch {
      // the original error matters more
    }
    removeNode(name);
    throw err;
  }
}

/**
 * renameDevice gives a device a new name (DM_DEV_RENAME) and moves its
 * /dev/mapper node along: the device, its table and its open count are
 * untouched, so an active device changes name in one cheap call.
 */
export function renameDevice(from: string, to: string): DeviceInfo {
  const bytes = Buffer.from(to, 'utf8');
  if (bytes.length === 0 || bytes.length >= DM_NAME_LEN || bytes.includes(0)) throw new RangeError(`bad device-mapper name ${JSON.stringify(to)}`);
  const payload = Buffer.alloc(align8(bytes.length + 1));
  bytes.copy(payload);
  let info: DeviceInfo;
  try {
    info = toInfo(dmIoctl(DmCmd.DEV_RENAME, 'DM_DEV_RENAME', { name: from }, payload).header);
  } catch (err) {
    // EBUSY: the new name is taken
    if (err instanceof FailedPreconditionError) throw new AlreadyExistsError(`device-mapper device ${JSON.stringify(to)} already exists`, { cause: err });
    throw err;
  }
  removeNode(from);
  ensureNode(to, info);
  return info;
}

/**
 * removeDevice removes a device and its node. EBUSY (a udev probe or a lazy
 * unmount still holding it) is retried a bounded number of times, then
 * surfaces as FailedPreconditionError. A missing device is NotFoundError.
 * `deferred` asks the kernel to remove it at last close instead.
 */
export async function removeDevice(name: string, opts: { deferred?: boolean; tries?: number } = {}): Promise<void> {
  const tries = opts.tries ?? REMOVE_TRIES;
  const flags = opts.deferred ? DmFlag.DEFERRED_REMOVE : 0;
  for (let attempt = 1; ; attempt++) {
    try {
      dmIoctl(DmCmd.DEV_REMOVE, 'DM_DEV_REMOVE', { name, flags });
      removeNode(name);
      return;
    } catch (err) {
      if (err instanceof NotFoundError) removeNode(name);
      if (!(err instanceof FailedPreconditionError) || attempt >= tries) throw err;
    }
    await delay(REMOVE_PAUSE_MS);
  }
}

/** message sends a target message (TARGET_MSG) to the target at sector; returns its output if any. */
export function message(name: string, sector: number, msg: string): string | undefined {
  const { header, buf } = dmIoctl(DmCmd.TARGET_MSG, `DM_TARGET_MSG "${msg}" to`, { name }, encodeTargetMsg(sector, msg));
  if ((header.flags & DmFlag.DATA_OUT) === 0) return undefined;
  return decodeDataString(buf, header);
}

/** messageAsync is message() on a worker thread, for messages that answer nothing (create_snap, delete). */
export async function messageAsync(name: string, sector: number, msg: string): Promise<void> {
  await dmIoctlAsync(DmCmd.TARGET_MSG, `DM_TARGET_MSG "${msg}" to`, { name }, encodeTargetMsg(sector, msg));
}

/**
 * status returns each live target with its status string (e.g. a thin
 * device's mapped sectors). A thin-pool commits its metadata before it
 * answers unless `noflush` is set; then the figures are those of the last
 * commit (every pool message commits), at a fraction of the cost.
 */
export function status(name: string, opts: { noflush?: boolean } = {}): DmTargetStatus[] {
  const flags = opts.noflush ? DmFlag.NOFLUSH : 0;
  const { header, buf } = dmIoctl(DmCmd.TABLE_STATUS, 'DM_TABLE_STATUS', { name, flags });
  return decodeTargetStatus(buf, header);
}

/** tableStatus returns each live target with its table line (what was loaded, as the kernel prints it). */
export function tableStatus(name: string): DmTargetStatus[] {
  const { header, buf } = dmIoctl(DmCmd.TABLE_STATUS, 'DM_TABLE_STATUS(table)', { name, flags: DmFlag.STATUS_TABLE });
  return decodeTargetStatus(buf, header);
}

/** deviceInfo returns a device's state, or undefined when no device has that name. */
export function deviceInfo(name: string): DeviceInfo | undefined {
  try {
    return toInfo(dmIoctl(DmCmd.DEV_STATUS, 'DM_DEV_STATUS', { name }).header);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** DmDevice is one LIST_DEVICES entry. */
export interface DmDevice extends DevNumber {
  name: string;
}

/** listDevices names every device-mapper device on the system. */
export function listDevices(): DmDevice[] {
  const { header, buf } = dmIoctl(DmCmd.LIST_DEVICES, 'DM_LIST_DEVICES', {});
  return decodeNameList(buf, header).map((e) => ({ name: e.name, ...decodeKernelDev(e.dev) }));
}

/**
 * discardDevice discards every block of an active device (BLKDISCARD): on a
 * thin device it unmaps the blocks, and a pool with discard_passdown passes
 * that down to the storage under it.
 */
export function discardDevice(name: string): void {
  const path = devicePath(name);
  const size = blockDeviceSize(path);
  const fd = fs.openSync(path, fs.constants.O_RDWR);
  try {
    const range = Buffer.alloc(16);
    range.writeBigUInt64LE(0n, 0);
    range.writeBigUInt64LE(BigInt(size), 8);
    ioctlBuffer(fd, BLKDISCARD, range, path);
  } finally {
    fs.closeSync(fd);
  }
}
