// `tsblock pool create|status`: the devmapper thin-pool. `create` brings up
// the pool tsblock owns (sparse data/metadata files under the root on loop
// devices — the same thing the daemon does at start, e.g. to check a config
// before enabling the service); `status` shows fill, mode and health.

import { findInstance } from '../../config/index.js';
import { noDmMessage, poolSpace } from '../../inspect/inspect.js';
import { FailedPreconditionError, InvalidArgumentError, UnavailableError } from '../../errdefs.js';
import { CONFIG_HELP, daemonHoldsRoot, human, parseVerb, printJson, stdio, type Io } from '../common.js';

/** poolUsage is `tsblock help pool`. */
export const poolUsage = `usage: tsblock pool create | status [options]

devmapper only.
  create   create and activate the thin-pool tsblock owns for this snapshotter
           (sparse <root>/devmapper/{data,metadata} on loop devices, sized by
           data_size/metadata_size); an existing pool is left as it is
  status   data and metadata use, mode (rw / ro / out_of_data_space), needs_check

${CONFIG_HELP}`;

/** poolCommand manages the devmapper pool. */
export async function poolCommand(argv: string[], io: Io = stdio): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'create' && sub !== 'status') throw new InvalidArgumentError(`pool: expected "create" or "status", got ${JSON.stringify(sub ?? '')}`);
  const p = parseVerb(rest, {}, io);
  const inst = findInstance(p.config, p.values.snapshotter);
  if (inst.backend !== 'devmapper') {
    throw new FailedPreconditionError(`snapshotter ${inst.name} uses the ${inst.backend} backend; pool commands are for devmapper (set backend = "devmapper" or pass --snapshotter)`);
  }
  const dm = await import('../../sys/dm.js');
  if (!dm.dmAvailable()) throw new UnavailableError(noDmMessage());
  if (sub === 'create') {
    if (inst.pool !== undefined) {
      throw new FailedPreconditionError(`snapshotter ${inst.name} uses the external pool ${inst.pool}; tsblock only creates the pool it owns (unset pool, or create yours with lvcreate --type thin-pool / dmsetup)`);
    }
    if (!daemonHoldsRoot(inst.root)) {
      const { openPool } = await import('../../backends/devmapper/pool.js');
      const { devmapperConfigFrom } = await import('../../backends/devmapper/index.js');
      const { mkdirSync } = await import('node:fs');
      mkdirSync(inst.root, { recursive: true, mode: 0o700 });
      const h = openPool(devmapperConfigFrom({ backend: 'devmapper', root: inst.root, dataSize: inst.dataSize, metadataSize: inst.metadataSize, baseSize: inst.baseSize }));
      io.err(h.created ? `created thin-pool ${h.name}\n` : `thin-pool ${h.name} already active\n`);
    } else {
      io.err('the daemon is running; its pool is already up\n');
    }
  }
  const s = await poolSpace(inst);
  if (p.values.json) {
    printJson(io, { snapshotter: inst.name, ...s });
    return 0;
  }
  io.out(`pool      ${s.pool}
mode      ${s.mode}${s.needsCheck ? ' (needs_check)' : ''}${s.failed ? ' (FAILED)' : ''}
data      ${human(s.dataUsedBytes)} / ${human(s.dataTotalBytes)}
metadata  ${human(s.metadataUsedBytes)} / ${human(s.metadataTotalBytes)}
`);
  return s.failed || s.needsCheck ? 1 : 0;
}
