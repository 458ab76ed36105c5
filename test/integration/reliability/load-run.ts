// load-run is the concurrency workload the load tests (blockfile on the host,
// devmapper in the VM) drive against a real server: `clients` clients run
// Prepare/Commit/View/Remove cycles on shared parents until the time is up.
// Only the expected errors are allowed (racing Prepares of one key:
// AlreadyExists; removing a shared parent: FailedPrecondition; the loser's
// Remove of a raced key: NotFound); every call has a deadline (the client's),
// so a deadlock is a failure, not a hang.

import { TestClient, failure, grpc } from '../../helpers/client.js';
import { Rng } from '../../helpers/model.js';

const S = grpc.status;

/** LoadOptions size a run. */
export interface LoadOptions {
  socket: string;
  clients: number;
  seconds: number;
  /** parents are committed snapshots the clients share (made by the caller). */
  parents: string[];
}

/** LoadResult is what the clients did. */
export interface LoadResult {
  elapsed: number;
  operations: number;
  ops: Record<string, number>;
  expectedErrors: Record<string, number>;
  unexpected: string[];
  /** kept are the snapshots that should exist at the end (parents + kept layers). */
  kept: Set<string>;
}

/** runLoad runs the workload and returns its counts; it stops early at the first unexpected error. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const until = Date.now() + o.seconds * 1000;
  const ops: Record<string, number> = {};
  const expectedErrors: Record<string, number> = {};
  const unexpected: string[] = [];
  const kept = new Set<string>(o.parents);
  const count = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
  const worker = async (w: number): Promise<void> => {
    const c = new TestClient(o.socket);
    const rng = new Rng(1000 + w);
    let n = 0;
    const run = async (what: string, p: () => Promise<unknown>, allowed: number[] = []): Promise<boolean> => {
      const f = await failure(p());
      count(ops, what);
      if (f.code === S.OK) return true;
      if (allowed.includes(f.code)) {
        count(expectedErrors, `${what}:${S[f.code]}`);
        return false;
      }
      unexpected.push(`client ${w} ${what}: ${S[f.code]} ${f.details}`);
      return false;
    };
    try {
      while (Date.now() < until && unexpected.length === 0) {
        const parent = rng.pick(o.parents)!;
        const key = `w${w}-${n++}`;
        switch (rng.int(5)) {
          case 0: // container-style: prepare on a shared parent, remove
            if (await run('Prepare', () => c.prepare(key, parent))) await run('Remove', () => c.remove(key));
            break;
          case 1: // layer-style: prepare, commit, remove the committed layer
            if (await run('Prepare', () => c.prepare(key, parent))) {
              if (await run('Commit', () => c.commit(`${key}-c`, key))) {
                if (rng.chance(0.1)) kept.add(`${key}-c`);
                else await run('Remove', () => c.remove(`${key}-c`));
              }
            }
            break;
          case 2: // view of a shared parent
            if (await run('View', () => c.view(key, parent))) await run('Remove', () => c.remove(key));
            break;
          case 3: {
            // Two clients race for one key: exactly the loser gets AlreadyExists.
            const shared = `race-${Math.floor(Date.now() / 50)}`;
            if (await run('Prepare', () => c.prepare(shared, parent), [S.ALREADY_EXISTS])) {
              await run('Remove', () => c.remove(shared), [S.NOT_FOUND]);
            }
            break;
          }
          default:
            // Removing a shared parent must fail while it has children: we
            // only ask it with a child of our own held.
            if (await run('Prepare', () => c.prepare(key, parent))) {
              await run('Remove', () => c.remove(parent), [S.FAILED_PRECONDITION]);
              await run('Stat', () => c.stat(parent));
              await run('Remove', () => c.remove(key));
            }
        }
      }
    } finally {
      c.close();
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: o.clients }, (_, w) => worker(w)));
  const elapsed = (Date.now() - started) / 1000;
  const operations = Object.values(ops).reduce((a, b) => a + b, 0);
  return { elapsed, operations, ops, expectedErrors, unexpected, kept };
}
