// `tsblock info KEY`: one snapshot in full — kind, parent chain, labels,
// times, size, usage and storage.

import { findEntry, listEntries, openReadOnly } from '../../inspect/inspect.js';
import { InvalidArgumentError } from '../../errdefs.js';
import { findInstance } from '../../config/index.js';
import { CONFIG_HELP, human, parseVerb, printJson, stdio, type Io } from '../common.js';

/** infoUsage is `tsblock help info`. */
export const infoUsage = `usage: tsblock info KEY [options]

Shows one snapshot: kind, parent chain, labels, created/updated, size,
usage and the file or device behind it.

${CONFIG_HELP}`;

/** infoCommand prints one snapshot. */
export async function infoCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, {}, io);
  if (p.positionals.length !== 1) throw new InvalidArgumentError('info takes exactly one KEY');
  const inst = findInstance(p.config, p.values.snapshotter);
  const store = openReadOnly(inst.root);
  try {
    const e = findEntry(inst, store, p.positionals[0]!);
    const byKey = new Map(listEntries(inst, store).map((x) => [x.key, x]));
    const chain: string[] = [];
    for (let k = e.parent; k && chain.length < 10_000; k = byKey.get(k)?.parent ?? '') chain.push(k);
    if (p.values.json) {
      printJson(io, { snapshotter: inst.name, ...e, chain });
      return 0;
    }
    const lines = [
      ['Key', e.key],
      ['Snapshotter', `${inst.name} (${inst.backend}, ${inst.root})`],
      ['Kind', e.kind],
      ['Parent', e.parent || '-'],
      ['Chain depth', String(chain.length)],
      ['Size', `${human(e.size)}${e.size !== undefined ? ` (${e.size} bytes)` : ''}`],
      ['Usage', `${human(e.usage)} (${e.usage} bytes), ${e.inodes} inodes`],
      ['Storage', e.storage],
      ['Created', e.created],
      ['Updated', e.updated],
    ];
    io.out(lines.map(([k, v]) => `${(k + ':').padEnd(13)} ${v}`).join('\n') + '\n');
    const labels = Object.entries(e.labels);
    io.out(labels.length === 0 ? 'Labels:       -\n' : `Labels:\n${labels.map(([k, v]) => `  ${k}=${v}`).join('\n')}\n`);
    return 0;
  } finally {
    store.close();
  }
}
