// `tsblock gc`: find storage no snapshot owns — images or thin devices a
// crash orphaned, rm-* leftovers of interrupted removals, half-made
// snapshots — and, with --yes, reclaim it. Dry-run by default. Snapshot
// lifetimes are containerd's (its GC removes snapshots); gc never removes a
// snapshot that has a row.

import { imagesDirOf } from '../../backends/blockfile/layout.js';
import { XfsFileStore, storeExists } from '../../backends/blockfile/store.js';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { findInstance, type InstanceConfig } from '../../config/index.js';
import { devmapperPoolName, noDmMessage, openReadOnly } from '../../inspect/inspect.js';
import { errorMessage } from '../../errdefs.js';
import { CONFIG_HELP, daemonHoldsRoot, daemonSocket, dial, parseVerb, printJson, stdio, unaryCall, type Io } from '../common.js';
import { withOffline } from '../offline.js';

/** gcUsage is `tsblock help gc`. */
export const gcUsage = `usage: tsblock gc [--yes] [options]

Lists storage that no snapshot owns (orphan images or thin devices, rm-*
leftovers, unfinished creates); with --yes reclaims it — through the daemon
(containerd's Cleanup) when it runs, else under the root's lock.

  --yes                 act (default: dry run)
${CONFIG_HELP}`;

/** GcFinding is one thing gc would reclaim. */
export interface GcFinding {
  what: string;
  path: string;
}

/** gcCommand lists or reclaims orphans. */
export async function gcCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, { yes: { type: 'boolean', default: false } }, io);
  const inst = findInstance(p.config, p.values.snapshotter);
  const live = daemonHoldsRoot(inst.root);
  const { findings, notes } = await findOrphans(inst, live);
  let reclaimed: string[] = [];
  if (p.values.yes) {
    if (live) {
      const client = dial(daemonSocket(inst));
      try {
        await unaryCall(client, 'Cleanup', { snapshotter: inst.name });
      } finally {
        client.close();
      }
      reclaimed = findings.map((f) => f.path);
    } else {
      await withOffline(inst, async () => {}, (_level, _msg, fields) => {
        if (Array.isArray(fields?.removed)) reclaimed.push(...(fields!.removed as string[]).map(String));
      });
    }
  }
  if (p.values.json) {
    printJson(io, { snapshotter: inst.name, dryRun: !p.values.yes, daemonRunning: live, findings, reclaimed, notes });
    return 0;
  }
  for (const n of notes) io.err(`note: ${n}\n`);
  if (findings.length === 0 && reclaimed.length === 0) {
    io.out('nothing to reclaim\n');
    return 0;
  }
  if (!p.values.yes) {
    io.out(findings.map((f) => `would reclaim ${f.what}: ${f.path}`).join('\n') + '\n');
    io.out(`dry run: ${findings.length} item(s); run "tsblock gc --yes" to reclaim\n`);
  } else {
    io.out((reclaimed.length > 0 ? reclaimed : findings.map((f) => f.path)).map((r) => `reclaimed ${r}`).join('\n') + '\n');
  }
  return 0;
}

/** findOrphans computes the dry-run list from the store and the backend's storage. */
export async function findOrphans(inst: InstanceConfig, daemonRunning: boolean): Promise<{ findings: GcFinding[]; notes: string[] }> {
  const store = openReadOnly(inst.root);
  let ids: Set<number>;
  let creating: { id: number; key: string }[];
  try {
    ({ ids, creating } = store.read((tx) => ({
      ids: new Set((tx.prepare('SELECT id FROM snapshots').all() as { id: number }[]).map((r) => r.id)),
      creating: tx.prepare("SELECT id, key FROM snapshots WHERE state = 'creating'").all() as { id: number; key: string }[],
    })));
  } finally {
    store.close();
  }
  const findings: GcFinding[] = [];
  const notes: string[] = [];
  if (!daemonRunning) for (const c of creating) findings.push({ what: 'unfinished snapshot', path: `${c.key} (id ${c.id})` });
  else if (creating.length > 0) notes.push(`${creating.length} snapshot(s) are being created by the running daemon; not counted`);
  if (inst.backend === 'blockfile') {
    const dir = join(imagesDirOf(inst.root), 'snapshots');
    let names: string[] = [];
    // A stopped daemon unmounted an idle store: mount it for the listing.
    const store = storeExists(inst.root) && !daemonRunning ? new XfsFileStore({ root: inst.root }) : undefined;
    try {
      await store?.open();
      names = readdirSync(dir);
    } catch (err) {
      // never served: nothing on disk
      if (store) notes.push(`cannot open the store: ${errorMessage(err)}`);
    } finally {
      await store?.close();
    }
    for (const name of names) {
      const m = /^(rm-)?(\d+)(\.tmp)?$/.exec(name);
      if (!m) continue;
      // rm-<id> of a live id whose image is missing is a removal that never
      // committed: the backend renames it back at start-up, so it is not garbage.
      if (m[1] && !m[3] && ids.has(Number(m[2])) && !names.includes(m[2]!)) {
        notes.push(`${name} belongs to live snapshot id ${m[2]}; it is restored at the next start`);
      } else if (m[1]) findings.push({ what: 'leftover of a removal', path: join(dir, name) });
      else if (!ids.has(Number(m[2]))) findings.push({ what: m[3] ? 'partial image' : 'orphan image', path: join(dir, name) });
    }
  } else {
    try {
      const dm = await import('../../sys/dm.js');
      if (!dm.dmAvailable()) throw new Error(noDmMessage());
      const prefix = `${devmapperPoolName(inst)}-snap-`;
      for (const d of dm.listDevices()) {
        if (d.name.startsWith(prefix) && !ids.has(Number(d.name.slice(prefix.length)))) {
          findings.push({ what: 'orphan thin device', path: `/dev/mapper/${d.name}` });
        }
      }
    } catch (err) {
      notes.push(`cannot list thin devices: ${errorMessage(err)}`);
    }
  }
  return { findings, notes };
}
