// `tsblock diff KEY -o layer.tar[.gz|.zst]`: export a snapshot's changes
// over its parent (or --parent P) as an OCI layer, deletions as whiteouts.

import { findInstance } from '../../config/index.js';
import { InvalidArgumentError } from '../../errdefs.js';
import { LAYER_GZIP, LAYER_TAR, LAYER_ZSTD } from '../../apply/export.js';
import { diffSnapshot } from '../../apply/snapshot-diff.js';
import { RemoteSnapshots } from '../../import/remote.js';
import { CONFIG_HELP, daemonHoldsRoot, daemonSocket, human, parseVerb, printJson, stdio, type Io } from '../common.js';
import { withOffline } from '../offline.js';

export const diffUsage = `usage: tsblock diff KEY -o FILE [--parent P] [options]

Writes the changes of snapshot KEY over its parent (or over snapshot P;
--parent "" means over an empty tree) as an OCI layer: deleted files become
.wh.<name> whiteouts. The compression follows FILE's name: .tar.gz/.tgz
gzip, .tar.zst zstd, anything else an uncompressed tar. Prints the blob
digest and the diffID. Committed snapshots are read through temporary
Views; an active one is mounted read-only, so stop its container first.

  -o, --output FILE     where to write the layer
  --parent P            diff against snapshot P instead of KEY's parent
${CONFIG_HELP}`;

/** mediaTypeForFile picks the layer media type from an output file name. */
export function mediaTypeForFile(file: string): string {
  if (/\.(tar\.gz|tgz|gz)$/.test(file)) return LAYER_GZIP;
  if (/\.(tar\.zst|zst|zstd)$/.test(file)) return LAYER_ZSTD;
  return LAYER_TAR;
}

/** diffCommand implements `tsblock diff`. */
export async function diffCommand(argv: string[], io: Io = stdio): Promise<number> {
  const p = parseVerb(argv, { output: { type: 'string', short: 'o' }, parent: { type: 'string' } }, io);
  if (p.positionals.length !== 1) throw new InvalidArgumentError('diff needs exactly one snapshot KEY');
  const out = p.values.output as string | undefined;
  if (!out) throw new InvalidArgumentError('diff needs -o FILE');
  const key = p.positionals[0]!;
  const inst = findInstance(p.config, p.values.snapshotter);
  const opts = { parent: p.values.parent as string | undefined, mediaType: mediaTypeForFile(out) };
  let res;
  if (daemonHoldsRoot(inst.root)) {
    const remote = new RemoteSnapshots(daemonSocket(inst), inst.name);
    try {
      res = await diffSnapshot(remote, key, out, opts);
    } finally {
      remote.close();
    }
  } else {
    res = await withOffline(inst, (o) => diffSnapshot(o.snapshotter, key, out, opts));
  }
  if (p.values.json) printJson(io, { file: out, ...res });
  else io.out(`${out}: ${res.mediaType} ${res.digest} (${human(res.size)}), diffID ${res.diffId} (${human(res.uncompressedSize)})\n`);
  return 0;
}
