// `tsblock import <oci-archive.tar | oci-layout dir>`: seed committed
// snapshots named by chain ID (as containerd names them), so a later
// `ctr images import/pull --snapshotter tsblock` finds the chain present.
// Goes through the daemon's socket when a daemon holds the root (safe while
// it serves containerd); otherwise opens the root under its lock.

import { findInstance } from '../../config/index.js';
import { InvalidArgumentError } from '../../errdefs.js';
import { importImages, type ImportSummary, type LayerEvent } from '../../import/importer.js';
import { openLayout } from '../../import/oci.js';
import { RemoteSnapshots } from '../../import/remote.js';
import { CONFIG_HELP, daemonHoldsRoot, daemonSocket, human, parseVerb, printJson, stdio, type Io } from '../common.js';
import { withOffline } from '../offline.js';

export const importUsage = `usage: tsblock import <oci-archive.tar | oci-layout-dir> [--name REF] [options]

Unpacks every layer of the image(s) into committed snapshots named by chain
ID with label containerd.io/snapshot.ref=<chainID>, exactly as containerd's
unpacker names them; layers already present are skipped. A following
\`ctr images import --snapshotter NAME\` (or pull) then reuses the chain.
Only the snapshots are made: containerd still needs the image itself
(import it with ctr afterwards; its unpack finds every layer present).

  --name REF            import only the image whose ref annotation is REF
                        (io.containerd.image.name or org.opencontainers.image.ref.name)
${CONFIG_HELP}`;

const short = (d: string) => d.replace(/^sha256:/, '').slice(0, 12);

function bar(done: number, total: number, width = 24): string {
  const n = total === 0 ? width : Math.round((done / total) * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}]`;
}

/** importCommand implements `tsblock import`. */
export async function importCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, { name: { type: 'string' } }, io);
  if (p.positionals.length !== 1) throw new InvalidArgumentError('import needs exactly one OCI archive or layout directory');
  const inst = findInstance(p.config, p.values.snapshotter);
  const layout = await openLayout(p.positionals[0]!, { name: p.values.name as string | undefined });
  const tty = io.tty && !p.values.json;
  const total = layout.images.reduce((n, i) => n + i.layers.length, 0);
  let seen = 0;
  const onLayerStart = (image: string, i: number, count: number): void => {
    if (tty) io.err(`\r${bar(seen, total)} ${image || 'image'} layer ${i + 1}/${count} …\x1b[K`);
  };
  const onLayer = (e: LayerEvent): void => {
    seen++;
    const what = e.skipped ? 'present' : `applied ${human(e.applied!.size)} in ${e.ms} ms`;
    if (tty) io.err(`\r${bar(seen, total)} ${e.image || 'image'} layer ${e.index + 1}/${e.count} ${short(e.layer.chainId)} ${what}\x1b[K`);
    else if (!p.values.json) io.out(`layer ${e.index + 1}/${e.count} ${e.layer.chainId} ${what}\n`);
  };
  let sum: ImportSummary;
  try {
    if (daemonHoldsRoot(inst.root)) {
      const remote = new RemoteSnapshots(daemonSocket(inst), inst.name);
      try {
        sum = await importImages(remote, layout.images, { onLayer, onLayerStart });
      } finally {
        remote.close();
      }
    } else {
      sum = await withOffline(inst, (o) => importImages(o.snapshotter, layout.images, { onLayer, onLayerStart }));
    }
  } finally {
    if (tty) io.err('\n');
    await layout.close();
  }
  if (p.values.json) printJson(io, sum);
  else {
    for (const img of sum.images) io.out(`${img.name || img.manifest}: ${img.layers} layers, chain ${img.chainId}\n`);
    const mbps = sum.ms > 0 ? (sum.bytes / 1048576 / (sum.ms / 1000)).toFixed(1) : '-';
    io.out(`imported: ${sum.applied} applied (${human(sum.bytes)}, ${mbps} MiB/s), ${sum.skipped} already present, ${sum.ms} ms\n`);
  }
  return 0;
}
