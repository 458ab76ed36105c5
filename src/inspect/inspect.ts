// inspect reads a root the way an operator looks at it — rows, the file or
// device behind each snapshot, space used, pool fill — without going through
// the daemon. It only reads: the SQLite store in WAL mode lets readers see
// a consistent snapshot while the daemon writes, and nothing here takes the
// root lock. Shared by the CLI verbs and the /metrics collector.

import { imagesDirOf } from '../backends/blockfile/layout.js';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MetaStore, metadataPath } from '../storage/metastore.js';
import { INODES_UNCOUNTED, SnapshotRows, type SnapshotRow } from '../storage/snapshots.js';
import { Kind, kindName } from '../snapshots/snapshotter.js';
import { allocatedBytes, fsInfo, readExt4Usage } from '../sys/fsinfo.js';
import { withDefaults, poolNameOf } from '../backends/devmapper/config.js';
import { NotFoundError, UnavailableError } from '../errdefs.js';
import type { InstanceConfig } from '../config/types.js';

/** SnapshotEntry is one snapshot as `tsblock ls` shows it. */
export interface SnapshotEntry {
  id: number;
  key: string;
  parent: string;
  kind: 'view' | 'active' | 'committed' | 'unknown';
  /** size is the virtual (apparent) size of the filesystem image or device, in bytes, when known. */
  size?: number;
  /** usage is the space this snapshot adds over its parent, in bytes. */
  usage: number;
  inodes: number;
  /** storage is the image file or /dev/mapper device that backs it. */
  storage: string;
  labels: Record<string, string>;
  created: string;
  updated: string;
}

/** openReadOnly opens a root's store for reading; NotFoundError when the root was never served. */
export function openReadOnly(root: string): MetaStore {
  const path = metadataPath(root);
  if (!existsSync(path)) throw new NotFoundError(`no tsblock store at ${path} (has this snapshotter been started with root ${root}?)`);
  return new MetaStore(path, { readonly: true });
}

/** listEntries returns every ready snapshot of an instance, parents first. */
export function listEntries(inst: InstanceConfig, store: MetaStore): SnapshotEntry[] {
  const { rows, infos, devs } = store.read((tx) => {
    const r = new SnapshotRows(tx);
    return { rows: r.rows(), infos: r.allInfos(), devs: deviceSizes(tx, inst) };
  });
  const byId = new Map(rows.map((row) => [row.id, row]));
  const infoByKey = new Map(infos.map((i) => [i.name, i]));
  return rows.map((row) => {
    const info = infoByKey.get(row.key);
    const storage = storageOf(inst, row, byId);
    let usage = row.size;
    let inodes = row.inodes;
    if (row.kind === Kind.Active) {
      // Active snapshots change under the daemon; measure them now, as the
      // Usage RPC would (blockfile: allocated blocks beyond the parent's).
      usage = inst.backend === 'blockfile' ? activeFileUsage(inst, row) : devs.get(row.id)?.mapped ?? 0;
      inodes = 0;
    } else if (row.kind === Kind.View) {
      usage = 0;
    } else if (inodes === INODES_UNCOUNTED) {
      inodes = inst.backend === 'blockfile' ? committedFileInodes(inst, row) : 0;
    }
    return {
      id: row.id,
      key: row.key,
      parent: info?.parent ?? (row.parentId !== null ? byId.get(row.parentId)?.key ?? '' : ''),
      kind: kindName(row.kind),
      size: sizeOf(inst, storage, devs.get(row.id)?.size),
      usage,
      inodes,
      storage,
      labels: info?.labels ?? {},
      created: isoOf(row.created),
      updated: isoOf(row.updated),
    };
  });
}

/** findEntry returns one snapshot by key or throws NotFoundError. */
export function findEntry(inst: InstanceConfig, store: MetaStore, key: string): SnapshotEntry {
  const e = listEntries(inst, store).find((x) => x.key === key);
  if (!e) throw new NotFoundError(`snapshot ${key}: not found in ${inst.name} (${inst.root})`);
  return e;
}

/**
 * storageOf names the file or device behind a row. A blockfile view reads
 * its parent's image; a devmapper view is its own read-only thin snapshot
 * (<pool>-snap-<view id>), like every other devmapper snapshot.
 */
export function storageOf(inst: InstanceConfig, row: SnapshotRow, byId: Map<number, SnapshotRow>): string {
  void byId;
  if (inst.backend === 'blockfile') {
    const id = row.kind === Kind.View ? row.parentId : row.id;
    const dir = imagesDirOf(inst.root);
    return id === null ? join(dir, 'base.img') : join(dir, 'snapshots', String(id));
  }
  return `/dev/mapper/${devmapperPoolName(inst)}-snap-${row.id}`;
}

/** devmapperPoolName is the thin-pool an instance uses (configured or owned). */
export function devmapperPoolName(inst: InstanceConfig): string {
  return poolNameOf(withDefaults({ root: inst.root, poolName: inst.pool, dataSize: inst.dataSize, metadataSize: inst.metadataSize, baseSize: inst.baseSize }));
}

/** RootSpace is the filesystem under a root. */
export interface RootSpace {
  fsType: string;
  totalBytes: number;
  freeBytes: number;
}

/** rootSpace measures the filesystem holding the root. */
export function rootSpace(root: string): RootSpace {
  const f = fsInfo(root);
  return { fsType: f.type, totalBytes: f.totalBytes, freeBytes: f.freeBytes };
}

/** PoolSpace is a thin-pool's fill. */
export interface PoolSpace {
  pool: string;
  dataUsedBytes: number;
  dataTotalBytes: number;
  metadataUsedBytes: number;
  metadataTotalBytes: number;
  mode: string;
  needsCheck: boolean;
  failed: boolean;
}

/** THIN_METADATA_BLOCK is dm-thin's metadata block size (4 KiB). */
const THIN_METADATA_BLOCK = 4096;

/** poolSpace reads the pool's status; UnavailableError without device-mapper. */
export async function poolSpace(inst: InstanceConfig): Promise<PoolSpace> {
  const dm = await import('../sys/dm.js');
  if (!dm.dmAvailable()) throw new UnavailableError(noDmMessage());
  const thin = await import('../sys/dm-thin.js');
  const pool = devmapperPoolName(inst);
  if (!dm.deviceInfo(pool)) throw new NotFoundError(`thin-pool ${pool} does not exist (start the daemon, or run "tsblock pool create")`);
  const st = thin.poolStatus(pool);
  const table = dm.tableStatus(pool).find((t) => t.type === 'thin-pool');
  // The table is "<meta dev> <data dev> <block sectors> <low water> …".
  const blockSectors = Number(table?.params.split(/\s+/)[2] ?? 128);
  const dataBlock = blockSectors * 512;
  return {
    pool,
    dataUsedBytes: st.usedDataBlocks * dataBlock,
    dataTotalBytes: st.totalDataBlocks * dataBlock,
    metadataUsedBytes: st.usedMetadataBlocks * THIN_METADATA_BLOCK,
    metadataTotalBytes: st.totalMetadataBlocks * THIN_METADATA_BLOCK,
    mode: st.mode,
    needsCheck: st.needsCheck,
    failed: st.failed,
  };
}

/** noDmMessage explains a missing device-mapper and what to do. */
export function noDmMessage(): string {
  return 'device-mapper is not available on this kernel (/dev/mapper/control cannot be opened): ' +
    'load it with "modprobe dm_thin_pool", or use the blockfile backend';
}

function activeFileUsage(inst: InstanceConfig, row: SnapshotRow): number {
  const { image, parent } = imageFiles(inst, row);
  try {
    return Math.max(0, allocatedBytes(image) - allocatedBytes(parent));
  } catch {
    return 0; // removed while we looked
  }
}

/** committedFileInodes counts what the Usage RPC would for a committed image whose Commit left the count out. */
function committedFileInodes(inst: InstanceConfig, row: SnapshotRow): number {
  const { image, parent } = imageFiles(inst, row);
  try {
    return Math.max(0, readExt4Usage(image).inodesUsed - readExt4Usage(parent).inodesUsed);
  } catch {
    return 0; // removed while we looked
  }
}

/** imageFiles are a blockfile snapshot's image and its parent's (or the base). */
function imageFiles(inst: InstanceConfig, row: SnapshotRow): { image: string; parent: string } {
  const dir = imagesDirOf(inst.root);
  return {
    image: join(dir, 'snapshots', String(row.id)),
    parent: row.parentId === null ? join(dir, 'base.img') : join(dir, 'snapshots', String(row.parentId)),
  };
}

function sizeOf(inst: InstanceConfig, storage: string, devSize: number | undefined): number | undefined {
  if (inst.backend === 'devmapper') return devSize;
  try {
    return statSync(storage).size;
  } catch {
    return undefined;
  }
}

function deviceSizes(tx: MetaStore['db'], inst: InstanceConfig): Map<number, { size: number; mapped: number }> {
  const out = new Map<number, { size: number; mapped: number }>();
  if (inst.backend !== 'devmapper') return out;
  try {
    const rows = tx.prepare('SELECT snapshot_id AS id, size, mapped_bytes AS mapped FROM dm_devices').all() as { id: number; size: number; mapped: number | null }[];
    for (const r of rows) out.set(r.id, { size: r.size, mapped: r.mapped ?? 0 });
  } catch {
    // A store the devmapper backend never opened has no dm_devices table.
  }
  return out;
}

function isoOf(t: { seconds: number; nanos: number }): string {
  return new Date(t.seconds * 1000 + Math.floor(t.nanos / 1e6)).toISOString();
}
