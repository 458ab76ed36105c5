// boot names the running kernel boot, so start-up can tell a restarted
// process (the page cache, and every write not yet flushed, survived) from a
// restarted machine (writes not flushed may be gone).
//
//   TSBLOCK_BOOT_ID=ID   use ID instead of the kernel's; the reliability
//                        tests set it to stand for a reboot. Nothing in
//                        production sets it.

import { readFileSync } from 'node:fs';

/** BOOT_ID_ENV overrides the kernel's boot id (tests: a simulated reboot). */
export const BOOT_ID_ENV = 'TSBLOCK_BOOT_ID';

const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';

/** currentBootId is this boot's id, or undefined when the kernel does not say (no /proc). */
export function currentBootId(): string | undefined {
  const forced = process.env[BOOT_ID_ENV];
  if (forced) return forced;
  try {
    return readFileSync(BOOT_ID_PATH, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
