// offline opens a root for a mutating verb when no daemon serves it, under
// the same exclusive lock the daemon takes, so the two can never race: if a
// daemon starts meanwhile, the open fails with UnavailableError and the verb
// tells the operator to retry (it will then go through the socket).

import { openSnapshotter, type OpenedSnapshotter } from '../daemon/open.js';
import { instanceServeOptions } from '../daemon/run.js';
import type { InstanceConfig } from '../config/types.js';
import type { CoreLogger } from '../base/log.js';

/** withOffline opens inst's root under its lock, runs fn, and closes it (releasing the lock). */
export async function withOffline<T>(inst: InstanceConfig, fn: (o: OpenedSnapshotter) => Promise<T>, log: CoreLogger = () => {}): Promise<T> {
  const { socket: _s, socketGid: _g, name: _n, ...settings } = instanceServeOptions(inst);
  const opened = await openSnapshotter(settings, log);
  try {
    return await fn(opened);
  } finally {
    await opened.close();
  }
}
