// `tsblock rm KEY`: remove one snapshot. While a daemon serves the root the
// request goes through its socket (the daemon serialises it with
// containerd's calls); otherwise the root is opened under its lock.

import { findInstance } from '../../config/index.js';
import { InvalidArgumentError, errorMessage } from '../../errdefs.js';
import { CONFIG_HELP, daemonHoldsRoot, daemonSocket, dial, parseVerb, printJson, stdio, unaryCall, type Io } from '../common.js';
import { withOffline } from '../offline.js';
import { openReadOnly } from '../../inspect/inspect.js';
import { LABEL_SEED } from '../../snapshots/labels.js';
import type { Info } from '../../snapshots/snapshotter.js';

/** SEED_PATH drops a `tsblock import` seed's mark (an explicit rm is the operator's decision). */
const SEED_PATH = `labels.${LABEL_SEED}`;

/** rmUsage is `tsblock help rm`. */
export const rmUsage = `usage: tsblock rm KEY… [options]

Removes snapshots (children first; a snapshot with children is refused).
containerd normally removes snapshots itself (image and container GC); use
this for what containerd no longer knows about, e.g. after its metadata was
reset, and for chains "tsblock import" seeded that no unpack has used yet
(containerd's GC leaves those alone). Goes through the daemon's socket when
it runs, else locks the root.

${CONFIG_HELP}`;

/** rmCommand removes snapshots by key. */
export async function rmCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, {}, io);
  if (p.positionals.length === 0) throw new InvalidArgumentError('rm needs at least one KEY');
  const inst = findInstance(p.config, p.values.snapshotter);
  // A root that was never served has nothing to remove; do not initialise one by accident.
  openReadOnly(inst.root).close();
  const results: { key: string; removed: boolean; error?: string }[] = [];
  if (daemonHoldsRoot(inst.root)) {
    const client = dial(daemonSocket(inst));
    try {
      for (const key of p.positionals) {
        try {
          // Errors here (NotFound) are reported by the Remove that follows.
          const st = await unaryCall<{ info?: { labels?: Record<string, string> } }>(client, 'Stat', { snapshotter: inst.name, key }).catch(() => undefined);
          if (st?.info?.labels?.[LABEL_SEED] !== undefined) {
            await unaryCall(client, 'Update', { snapshotter: inst.name, info: { name: key, labels: {} }, update_mask: { paths: [SEED_PATH] } });
          }
          await unaryCall(client, 'Remove', { snapshotter: inst.name, key });
          results.push({ key, removed: true });
        } catch (err) {
          results.push({ key, removed: false, error: errorMessage(err) });
        }
      }
    } finally {
      client.close();
    }
  } else {
    await withOffline(inst, async (o) => {
      for (const key of p.positionals) {
        try {
          const st = await o.snapshotter.stat(key).catch(() => undefined);
          if (st?.labels[LABEL_SEED] !== undefined) await o.snapshotter.update({ ...st, labels: {} } satisfies Info, [SEED_PATH]);
          await o.snapshotter.remove(key);
          results.push({ key, removed: true });
        } catch (err) {
          results.push({ key, removed: false, error: errorMessage(err) });
        }
      }
    });
  }
  if (p.values.json) printJson(io, results);
  else for (const r of results) (r.removed ? io.out : io.err)(r.removed ? `removed ${r.key}\n` : `tsblock rm: ${r.key}: ${r.error}\n`);
  return results.every((r) => r.removed) ? 0 : 1;
}
