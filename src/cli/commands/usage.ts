// `tsblock usage`: space per snapshot and in total, the root filesystem's
// size and free space, and (devmapper) the thin-pool's data and metadata use.

import { XfsFileStore, storeExists, type StoreStatus } from '../../backends/blockfile/store.js';
import { listEntries, noDmMessage, openReadOnly, poolSpace, rootSpace, type PoolSpace, type RootSpace } from '../../inspect/inspect.js';
import { errorMessage } from '../../errdefs.js';
import { CONFIG_HELP, human, refineActiveUsage, parseVerb, printJson, selectInstances, stdio, table, type Io } from '../common.js';

/** usageUsage is `tsblock help usage`. */
export const usageUsage = `usage: tsblock usage [options]

Shows what each snapshot adds over its parent, the total, the root
filesystem's free space and, for devmapper, the thin-pool's data/metadata use.

${CONFIG_HELP}`;

interface InstanceUsage {
  snapshotter: string;
  backend: string;
  snapshots: { key: string; kind: string; usage: number; inodes: number }[];
  totalBytes: number;
  root: RootSpace & { path: string };
  pool?: PoolSpace;
  poolError?: string;
  /** store is the blockfile root's XFS store, when it has one. */
  store?: StoreStatus;
}

/** usageCommand prints space use. */
export async function usageCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, {}, io);
  const report: InstanceUsage[] = [];
  for (const inst of selectInstances(p)) {
    const store = openReadOnly(inst.root);
    let entries;
    try {
      entries = listEntries(inst, store);
    } finally {
      store.close();
    }
    await refineActiveUsage(inst, entries);
    const u: InstanceUsage = {
      snapshotter: inst.name,
      backend: inst.backend,
      snapshots: entries.map((e) => ({ key: e.key, kind: e.kind, usage: e.usage, inodes: e.inodes })),
      totalBytes: entries.reduce((n, e) => n + e.usage, 0),
      root: { path: inst.root, ...rootSpace(inst.root) },
    };
    if (inst.backend === 'blockfile' && storeExists(inst.root)) u.store = new XfsFileStore({ root: inst.root }).status();
    if (inst.backend === 'devmapper') {
      try {
        u.pool = await poolSpace(inst);
      } catch (err) {
        u.poolError = errorMessage(err);
      }
    }
    report.push(u);
  }
  if (p.values.json) {
    printJson(io, report);
    return 0;
  }
  for (const u of report) {
    if (report.length > 1) io.out(`== ${u.snapshotter} (${u.backend})\n`);
    io.out(table(['KEY', 'KIND', 'USAGE', 'INODES'], [
      ...u.snapshots.map((s) => [s.key, s.kind, human(s.usage), String(s.inodes)]),
      ['TOTAL', '', human(u.totalBytes), String(u.snapshots.reduce((n, s) => n + s.inodes, 0))],
    ], io.tty));
    io.out(`\nroot ${u.root.path} (${u.root.fsType}): ${human(u.root.freeBytes)} free of ${human(u.root.totalBytes)}\n`);
    if (u.store) {
      const st = u.store;
      io.out(`store ${st.file}: ${human(st.allocated)} on disk` +
        (st.mounted ? `, XFS ${human((st.fsSize ?? 0) - (st.fsFree ?? 0))} used of ${human(st.fsSize ?? 0)} (grows into the root's free space)\n` : ', not mounted\n'));
    }
    if (u.pool) {
      const pct = (a: number, b: number) => (b === 0 ? '0' : ((100 * a) / b).toFixed(1));
      io.out(`pool ${u.pool.pool}: data ${human(u.pool.dataUsedBytes)} / ${human(u.pool.dataTotalBytes)} (${pct(u.pool.dataUsedBytes, u.pool.dataTotalBytes)}%), ` +
        `metadata ${human(u.pool.metadataUsedBytes)} / ${human(u.pool.metadataTotalBytes)} (${pct(u.pool.metadataUsedBytes, u.pool.metadataTotalBytes)}%), mode ${u.pool.mode}\n`);
    } else if (u.poolError) {
      io.out(`pool: unavailable — ${u.poolError}\n`);
    }
  }
  void noDmMessage;
  return 0;
}
