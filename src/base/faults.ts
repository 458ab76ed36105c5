// faults lets the reliability tests kill a real server with SIGKILL at an
// exact step of an operation (between two store, file or kernel changes),
// which a kill from outside hits only by luck. It is the one fault-injection
// mechanism of every layer (core, blockfile, devmapper, apply). It is
// compiled in but inert unless TSBLOCK_FAULT_POINTS is set when the process
// starts; nothing in production sets it, and an unarmed faultPoint() is one
// boolean test (the variable is read once, not on every call).
//
//   TSBLOCK_FAULT_POINTS="spec[,spec…]"   spec := name[@n] | *@n
//     name@n  die at the n-th time (default 1st) the point `name` is reached
//     *@n     die at the n-th fault point reached, whatever its name
//   TSBLOCK_FAULT_TRACE=FILE   append "<name>\n" for the point that kills
//                              (fsync'd first, so the test knows where it died)
//
// Point names are "<layer>:<operation>:<step>", e.g. core:commit:after-backend.

import { appendFileSync, closeSync, fsyncSync, openSync } from 'node:fs';

/** FAULT_ENV is the environment variable that arms fault points. */
export const FAULT_ENV = 'TSBLOCK_FAULT_POINTS';
/** FAULT_TRACE_ENV names the file the killing point is written to. */
export const FAULT_TRACE_ENV = 'TSBLOCK_FAULT_TRACE';

/** FAULT_POINTS lists every point the code declares, for tests and docs. */
export const FAULT_POINTS = [
  'core:create:after-insert',
  'core:create:after-backend',
  'core:create:after-ready',
  'core:commit:after-backend',
  'core:commit:after-tx',
  'core:flush:after-backend',
  'core:remove:in-tx',
  'core:remove:after-tx',
  'core:remove:after-destroy',
  'core:reconcile:after-destroy',
  'core:cleanup:after-backend',
  'blockfile:base:after-truncate',
  'blockfile:base:after-mkfs',
  'blockfile:base:after-rename',
  'blockfile:create:after-clone',
  'blockfile:detach:after-rename',
  'blockfile:destroy:after-unlink',
  'blockfile:cleanup:after-rm',
  'apply:after-mount',
  'apply:entry',
  'apply:after-apply',
  'apply:after-unmount',
  'unpack:after-prepare',
  'unpack:before-commit',
  'devmapper:pool:after-files',
  'devmapper:pool:after-activate',
  'devmapper:base:after-thin',
  'devmapper:base:after-mkfs',
  'devmapper:create:after-thin', // thin id made in the pool, row still 'trying'
  'devmapper:create:after-activate', // device active, row still 'trying'
  'devmapper:commit:before-deactivate', // measured, device still active, core row still active
  'devmapper:commit:after-backend', // backend done, core transaction not yet run
  'devmapper:remove:before-delete-thin', // core row gone, device deactivated, thin id still in the pool
  'devmapper:remove:after-delete-thin', // thin id gone from the pool, row still 'deleting'
] as const;

/** FaultPointName is a declared point. */
export type FaultPointName = (typeof FAULT_POINTS)[number];

interface Armed {
  byName: Map<string, number>;
  any?: number;
  seen: Map<string, number>;
  total: number;
  trace?: string;
}

/** parseFaultSpec reads TSBLOCK_FAULT_POINTS; undefined when nothing is armed. */
export function parseFaultSpec(spec: string | undefined): { byName: Map<string, number>; any?: number } | undefined {
  if (spec === undefined || spec.trim() === '') return undefined;
  const byName = new Map<string, number>();
  let any: number | undefined;
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = part.lastIndexOf('@');
    const name = at < 0 ? part : part.slice(0, at);
    const n = at < 0 ? 1 : Number(part.slice(at + 1));
    if (!Number.isInteger(n) || n < 1) throw new Error(`${FAULT_ENV}: bad count in ${JSON.stringify(part)}`);
    if (name === '*') any = n;
    else byName.set(name, n);
  }
  return { byName, any };
}

const armed: Armed | undefined = (() => {
  const parsed = parseFaultSpec(process.env[FAULT_ENV]);
  if (!parsed) return undefined;
  return { ...parsed, seen: new Map(), total: 0, trace: process.env[FAULT_TRACE_ENV] || undefined };
})();

/** faultsArmed tells whether this process was started with fault points armed. */
export function faultsArmed(): boolean {
  return armed !== undefined;
}

/** faultPoint kills this process with SIGKILL when TSBLOCK_FAULT_POINTS selects this hit of `name`. */
export function faultPoint(name: FaultPointName): void {
  if (armed === undefined) return;
  armed.total++;
  const seen = (armed.seen.get(name) ?? 0) + 1;
  armed.seen.set(name, seen);
  if (armed.any === armed.total || armed.byName.get(name) === seen) die(name, armed.trace);
}

function die(name: string, trace: string | undefined): never {
  if (trace) {
    try {
      appendFileSync(trace, `${name}\n`);
      const fd = openSync(trace, 'r');
      fsyncSync(fd);
      closeSync(fd);
    } catch {
      // The trace is a test aid; dying matters more.
    }
  }
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL is not deliverable-later: never reached, but keep the type honest.
  throw new Error(`fault point ${name}: SIGKILL did not stop the process`);
}
