// leaks lists kernel objects still tied to a directory: mounts under it and
// loop devices whose backing file is under it. A test that leaves any fails.

import { readFileSync, readdirSync, existsSync } from 'node:fs';

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** mountsUnder returns mount points at or below dir. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => unescape(l.split(' ')[4]!))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** loopsUnder returns loop devices backed by files at or below dir. */
export function loopsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync('/sys/block')) {
    const f = `/sys/block/${name}/loop/backing_file`;
    if (!name.startsWith('loop') || !existsSync(f)) continue;
    let backing: string;
    try {
      backing = readFileSync(f, 'utf8').trim().replace(/ \(deleted\)$/, '');
    } catch {
      continue; // detached since the listing (another test's device)
    }
    if (backing.startsWith(`${dir}/`)) out.push(`/dev/${name} -> ${backing}`);
  }
  return out;
}

/** LeakOptions tune leaksUnder. */
export interface LeakOptions {
  /**
   * allowStores leaves out blockfile stores (<root>/store mounted from the
   * loop device on <root>/store.xfs): a killed or running daemon's storage,
   * not a leak. After a clean stop with nothing in use a store is a leak.
   */
  allowStores?: boolean;
}

/** leaksUnder combines both. */
export function leaksUnder(dir: string, opts: LeakOptions = {}): string[] {
  const isStoreMount = (m: string) => m.endsWith('/store') && existsSync(`${m}.xfs`);
  const mounts = mountsUnder(dir).filter((m) => !(opts.allowStores && isStoreMount(m)));
  const loops = loopsUnder(dir).filter((l) => !(opts.allowStores && l.endsWith('/store.xfs')));
  return [...mounts.map((m) => `mount ${m}`), ...loops.map((l) => `loop ${l}`)];
}
