// Durability: a committed layer's bytes must be on disk before anything
// durable says it is committed. A backend whose content needs an explicit
// flush (blockfile: fdatasync of the image) has it run here, *after* Commit
// answers, instead of on Commit's path:
//
//   Commit   tx: row → committed + `unflushed` row (active key, boot id)
//            → answer → backend.flush → tx: delete the `unflushed` row
//
// Everything that builds on, drops or outlives the snapshot waits for its
// flush first (Prepare/View with it as parent, Remove, close), so no row that
// depends on a snapshot is ever written before that snapshot's flush is.
//
// Why this loses nothing: SQLite runs with synchronous=NORMAL, so after a
// power loss the store holds a prefix of its committed transactions. A
// snapshot whose `unflushed` row did not survive either never became
// committed or had its flush done; one whose row survived is recovered at
// start-up by the row's boot id:
//   - same boot (the process died, the kernel did not): every write is still
//     in the page cache, so the flush is done now and the row dropped;
//   - another boot: its content may be torn, so the Commit is undone: the
//     snapshot is the active one again under its old key (removed instead if
//     that key has been reused), as if the Commit's transaction had been
//     lost, which NORMAL allows anyway.
// containerd then sees the layer missing and unpacks it again.

import type { Backend, BackendSnapshot } from './backend.js';
import { errorMessage } from '../errdefs.js';
import { Kind } from '../snapshots/snapshotter.js';
import type { MetaStore } from '../storage/metastore.js';
import type { SnapshotRows } from '../storage/snapshots.js';
import { UnflushedRows } from '../storage/unflushed.js';
import { faultPoint } from '../base/faults.js';
import type { CoreLogger } from '../base/log.js';

/** Flushes runs and tracks the deferred flushes of one snapshotter. */
export class Flushes {
  private readonly unflushed: UnflushedRows;
  /** running holds the flush under way per snapshot id; it never rejects. */
  private readonly running = new Map<number, Promise<void>>();
  /** failed holds ids whose last flush failed: the next durable() tries again and reports. */
  private readonly failed = new Set<number>();

  constructor(
    private readonly store: MetaStore,
    private readonly rows: SnapshotRows,
    private readonly backend: Backend,
    /** bootId is this boot's id; undefined turns deferral off (flushes run inside Commit). */
    readonly bootId: string | undefined,
    private readonly log: CoreLogger,
  ) {
    this.unflushed = new UnflushedRows(store.db);
  }

  /** deferred tells whether a Commit leaves its flush to start() (else it awaits flushNow() first). */
  get deferred(): boolean {
    return this.backend.flush !== undefined && this.bootId !== undefined;
  }

  /** flushNow runs the backend's flush, when it has one, on Commit's path (deferral off). */
  async flushNow(snap: BackendSnapshot): Promise<void> {
    await this.backend.flush?.(snap);
  }

  /** mark records, inside Commit's transaction, that snapshot `id` (committed from `activeKey`) awaits its flush. */
  mark(id: number, activeKey: string): void {
    this.unflushed.mark(id, activeKey, this.bootId!);
  }

  /** start begins the flush of a snapshot whose Commit transaction (with mark()) just committed. */
  start(snap: BackendSnapshot): void {
    const p = this.flushOne(snap)
      .then(() => void this.failed.delete(snap.id))
      .catch((err: unknown) => this.flushFailed(snap.id, err))
      .finally(() => this.running.delete(snap.id));
    this.running.set(snap.id, p);
  }

  /** idle tells that no flush is under way or owed (callers may skip looking up what to wait for). */
  get idle(): boolean {
    return this.running.size === 0 && this.failed.size === 0;
  }

  /** durable resolves once snapshot `id`'s content is on disk; it throws when a flush that failed fails again. */
  async durable(snap: BackendSnapshot): Promise<void> {
    const p = this.running.get(snap.id);
    if (p) await p;
    if (this.failed.has(snap.id)) {
      await this.flushOne(snap);
      this.failed.delete(snap.id);
    }
  }

  /** drain waits for every flush under way (close). */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running.values());
  }

  /**
   * recover settles, at start-up, every snapshot whose flush a stopped process
   * left undone (see the file comment); returns what it did, for the log.
   * An `unflushed` row always has its snapshot row (ON DELETE CASCADE).
   */
  async recover(): Promise<string[]> {
    const done: string[] = [];
    for (const u of this.store.read(() => this.unflushed.list())) {
      const snap: BackendSnapshot = { id: u.id, kind: Kind.Committed };
      const sameBoot = this.bootId !== undefined && u.bootId === this.bootId;
      if (sameBoot || this.store.read(() => this.rows.hasChildren(u.id))) {
        // A child is never made before its parent's flush, so a committed
        // snapshot with children here is only kept for safety's sake.
        try {
          await this.flushOne(snap);
          done.push(`flushed committed snapshot ${u.id}`);
        } catch (err) {
          this.flushFailed(u.id, err);
        }
        continue;
      }
      const undone = this.store.write(() => {
        if (this.rows.get(u.activeKey)) {
          this.rows.delete(u.id);
          return 'removed';
        }
        this.rows.uncommit(u.id, u.activeKey);
        this.unflushed.clear(u.id);
        return 'reverted';
      });
      if (undone === 'removed') await this.backend.destroy(snap);
      const what = undone === 'removed' ? `removed (its active key ${JSON.stringify(u.activeKey)} is in use)` : `reverted to active snapshot ${JSON.stringify(u.activeKey)}`;
      this.log('warn', 'a commit not flushed before the machine restarted was undone', { id: u.id, outcome: what });
      done.push(`unflushed commit ${u.id} ${what}`);
    }
    return done;
  }

  private flushFailed(id: number, err: unknown): void {
    this.failed.add(id);
    this.log('error', 'flushing a committed snapshot failed; it is retried before it is used', { id, error: errorMessage(err) });
  }

  private async flushOne(snap: BackendSnapshot): Promise<void> {
    await this.backend.flush!(snap);
    faultPoint('core:flush:after-backend');
    this.store.write(() => this.unflushed.clear(snap.id));
  }
}
