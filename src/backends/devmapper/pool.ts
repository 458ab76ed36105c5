// pool brings up the thin-pool the backend allocates from. With poolName
// set it only checks that the pool exists (production: the operator made it
// on real disks). Otherwise tsblock owns a pool over two sparse files,
// <root>/devmapper/{data,metadata}, on loop devices, and re-creates it at
// every start: loop and dm devices do not survive a reboot, the files do
// (Kata's docs make users write a devmapper_reload.service for this).
//
// The loops are attached with autoclear and the attach descriptor is closed
// once the pool holds them, so tearing the pool down releases the loops and
// a crash mid-way leaks nothing.
//
// PoolSpace reads the pool's free data space for the low-space guard.

import fs from 'node:fs';
import { join } from 'node:path';
import { activate, deviceInfo, devicePath, removeDevice, status, tableStatus } from '../../sys/dm.js';
import { parsePoolStatus, poolStatus, poolZeroesNewBlocks, thinPoolTable } from '../../sys/dm-thin.js';
import { attachLoop, findLoopsFor, releaseLoop, type LoopDevice } from '../../sys/loop.js';
import { InternalError, NotFoundError, UnavailableError } from '../../errdefs.js';
import type { FreeSpace } from '../../core/backend.js';
import { poolNameOf, type DevmapperConfig } from './config.js';
import { faultPoint } from '../../base/faults.js';

/** PoolHandle is a running thin-pool. */
export interface PoolHandle {
  name: string;
  /** path is /dev/mapper/<name>, what thin tables reference. */
  path: string;
  /** owned is true when tsblock made the pool from its own files. */
  owned: boolean;
  /** created is true when this start-up activated the pool device. */
  created: boolean;
  /** fresh is true when the metadata file was new (empty pool). */
  fresh: boolean;
  /**
   * zeroesNewBlocks is true when the pool has no skip_block_zeroing, so a
   * fresh thin device reads zeros wherever it was not written (mkfs may then
   * skip the inode tables; see makeExt4's prezeroed).
   */
  zeroesNewBlocks: boolean;
}

/** poolDir is where an owned pool's files live. */
export function poolDir(cfg: DevmapperConfig): string {
  return join(cfg.root, 'devmapper');
}

/** openPool finds or (for an owned pool) creates and activates the pool. */
export function openPool(cfg: DevmapperConfig): PoolHandle {
  const name = poolNameOf(cfg);
  const info = deviceInfo(name);
  if (cfg.poolName !== undefined) {
    if (!info || !info.activeTable) throw new NotFoundError(`thin-pool ${JSON.stringify(name)} does not exist or has no table (create it first, or unset poolName to let tsblock own a pool)`);
    const zeroesNewBlocks = checkPool(name);
    return { name, path: devicePath(name), owned: false, created: false, fresh: false, zeroesNewBlocks };
  }
  if (info?.activeTable) {
    const zeroesNewBlocks = checkPool(name);
    return { name, path: devicePath(name), owned: true, created: false, fresh: false, zeroesNewBlocks };
  }
  return createOwnedPool(cfg, name);
}

// checkPool refuses a pool that is not a healthy thin-pool and returns
// whether it zeroes newly provisioned blocks.
function checkPool(name: string): boolean {
  const t = tableStatus(name).find((x) => x.type === 'thin-pool');
  if (!t) throw new UnavailableError(`device ${name} is not a thin-pool`);
  const st = poolStatus(name);
  if (st.failed) throw new UnavailableError(`thin-pool ${name} has failed; run thin_check on its metadata`);
  if (st.needsCheck) throw new UnavailableError(`thin-pool ${name} needs a metadata check (thin_check/thin_repair)`);
  return poolZeroesNewBlocks(t.params);
}

function createOwnedPool(cfg: DevmapperConfig, name: string): PoolHandle {
  const dir = poolDir(cfg);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const metaFile = join(dir, 'metadata');
  const dataFile = join(dir, 'data');
  const fresh = !fs.existsSync(metaFile);
  if (fresh) {
    // A pool whose metadata starts with zeros formats itself. Write the
    // zeros explicitly (the first 4 KiB hold the superblock) and size the
    // file in a temp name, so a crash never leaves a half-made metadata file
    // that a later start would take for an existing pool.
    const tmp = `${metaFile}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, Buffer.alloc(4096), 0, 4096, 0);
      fs.ftruncateSync(fd, cfg.metadataSize);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (!fs.existsSync(dataFile) || fs.statSync(dataFile).size < cfg.dataSize) {
      fs.closeSync(fs.openSync(dataFile, 'a', 0o600));
      fs.truncateSync(dataFile, cfg.dataSize);
    }
    fs.renameSync(tmp, metaFile);
  } else if (!fs.existsSync(dataFile)) {
    throw new UnavailableError(`thin-pool metadata ${metaFile} exists but its data file ${dataFile} is missing`);
  }
  faultPoint('devmapper:pool:after-files');
  const blockBytes = cfg.blockSizeSectors * 512;
  const dataBytes = Math.floor(fs.statSync(dataFile).size / blockBytes) * blockBytes;
  const dataBlocks = dataBytes / blockBytes;
  const lowWater = Math.max(1, Math.floor(dataBlocks / 100));

  const held: LoopDevice[] = [];
  try {
    const meta = reuseOrAttach(metaFile, held);
    const data = reuseOrAttach(dataFile, held);
    activate(name, [thinPoolTable(meta, data, dataBytes / 512, cfg.blockSizeSectors, lowWater)]);
  } finally {
    // The pool now holds the loops; with autoclear they go when it goes.
    for (const l of held) releaseLoop(l);
  }
  faultPoint('devmapper:pool:after-activate');
  let zeroesNewBlocks: boolean;
  try {
    zeroesNewBlocks = checkPool(name);
  } catch (err) {
    void removeDevice(name).catch(() => {});
    throw err;
  }
  return { name, path: devicePath(name), owned: true, created: true, fresh, zeroesNewBlocks };
}

// reuseOrAttach returns a loop already bound to file (a previous run that
// died between attach and pool creation) or binds a new one.
function reuseOrAttach(file: string, held: LoopDevice[]): string {
  const existing = findLoopsFor(file);
  if (existing.length > 0) return existing[0]!;
  const l = attachLoop(file, { autoclear: true });
  held.push(l);
  return l.path;
}

/** closeOwnedPool removes an owned pool device (its loops auto-clear). Thin devices must be gone first. */
export async function closeOwnedPool(p: PoolHandle): Promise<void> {
  if (!p.owned) return;
  await removeDevice(p.name);
}

/** FREE_SPACE_TTL_MS is how long one pool status reading answers PoolSpace.read(). */
const FREE_SPACE_TTL_MS = 250;

/**
 * PoolSpace is the pool's unallocated data space, for the core's --min-free
 * guard: a full pool then fails Prepare early rather than a container's
 * writes. The block size comes from the live table, so a shared pool made by
 * someone else is measured right too. One reading serves the next
 * FREE_SPACE_TTL_MS (a status ioctl per Prepare was ~4 ms under emulation).
 * A cached reading can be too hopeful only by what was written since, and
 * too low by what was freed since; the core reads afresh (`fresh`) before it
 * refuses anything, so freed space counts at once where it matters. The
 * kernel's error_if_no_space is the hard stop either way.
 */
export class PoolSpace {
  private reading: { at: number; value: FreeSpace } | undefined;

  constructor(private readonly poolName: string) {}

  read(opts: { fresh?: boolean } = {}): FreeSpace {
    const now = performance.now();
    if (!opts.fresh && this.reading && now - this.reading.at < FREE_SPACE_TTL_MS) return this.reading.value;
    // noflush: the figures of the last metadata commit (every create_snap
    // commits), without making the pool commit again for every Prepare.
    const t = status(this.poolName, { noflush: true }).find((x) => x.type === 'thin-pool');
    if (!t) throw new InternalError(`device ${this.poolName} has no thin-pool target`);
    const st = parsePoolStatus(t.params);
    const total = t.length * 512;
    const blockBytes = st.totalDataBlocks > 0 ? total / st.totalDataBlocks : 0;
    const full = st.mode !== 'rw' || st.failed || st.usedMetadataBlocks >= st.totalMetadataBlocks;
    const free = full ? 0 : (st.totalDataBlocks - st.usedDataBlocks) * blockBytes;
    const value = { free, total, what: `thin-pool ${this.poolName}` };
    this.reading = { at: now, value };
    return value;
  }
}
