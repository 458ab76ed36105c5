// `tsblock ls`: every snapshot with its parent, kind, size, usage and the
// file or device behind it, read from the store (safe while the daemon runs).

import { listEntries, openReadOnly, type SnapshotEntry } from '../../inspect/inspect.js';
import { CONFIG_HELP, human, refineActiveUsage, parseVerb, printJson, selectInstances, stdio, table, type Io } from '../common.js';

/** lsUsage is `tsblock help ls`. */
export const lsUsage = `usage: tsblock ls [options]

Lists snapshots: KEY, PARENT, KIND, SIZE (virtual), USAGE (space added over
the parent; active ones measured now) and the image file or device. With
several snapshotters configured, lists all unless --snapshotter is given.

${CONFIG_HELP}`;

/** lsCommand lists snapshots. */
export async function lsCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, {}, io);
  const all: (SnapshotEntry & { snapshotter: string })[] = [];
  for (const inst of selectInstances(p)) {
    const store = openReadOnly(inst.root);
    try {
      for (const e of listEntries(inst, store)) all.push({ snapshotter: inst.name, ...e });
    } finally {
      store.close();
    }
    await refineActiveUsage(inst, all.filter((e) => e.snapshotter === inst.name));
  }
  if (p.values.json) {
    printJson(io, all);
    return 0;
  }
  const many = new Set(all.map((e) => e.snapshotter)).size > 1;
  const header = [...(many ? ['SNAPSHOTTER'] : []), 'KEY', 'PARENT', 'KIND', 'SIZE', 'USAGE', 'STORAGE'];
  const rows = all.map((e) => [...(many ? [e.snapshotter] : []), e.key, e.parent || '-', e.kind, human(e.size), human(e.usage), e.storage]);
  io.out(table(header, rows, io.tty));
  return 0;
}
