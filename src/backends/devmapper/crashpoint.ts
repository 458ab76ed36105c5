// crashpoint lets the reconciliation tests stop a real server with SIGKILL at
// an exact step of an operation (between two kernel or store changes), which
// a kill from outside can only hit by luck. It is inert unless the variable
// is set; nothing in production sets it.

/** CRASH_ENV is the environment variable naming the step to die at. */
export const CRASH_ENV = 'TSBLOCK_DM_CRASH_AT';

/** CrashPoint names the steps tests can crash at. */
export type CrashPoint =
  | 'create:after-thin' // thin id made in the pool, row still 'trying'
  | 'create:after-activate' // device active, row still 'trying'
  | 'commit:before-deactivate' // measured, device still active, core row still active
  | 'commit:after-backend' // backend done, core transaction not yet run
  | 'remove:before-delete-thin' // core row gone, device deactivated, thin id still in the pool
  | 'remove:after-delete-thin'; // thin id gone from the pool, row still 'deleting'

// Read once: process.env is a call into the C++ environment on every access,
// and crashPoint sits on every Prepare/Commit/Remove. Tests set the variable
// when they start the server process.
const armedAt = process.env[CRASH_ENV] || undefined;

/** crashPoint kills this process with SIGKILL when TSBLOCK_DM_CRASH_AT (at start-up) names `point`. */
export function crashPoint(point: CrashPoint): void {
  if (armedAt === point) process.kill(process.pid, 'SIGKILL');
}
