// CoreSnapshotter is the one implementation of containerd's snapshotter
// rules in tsblock, over any Backend. It owns keys, parents, kinds, labels
// and timestamps in SQLite; the backend owns the bytes.
//
// Transaction shape of each operation (see core/backend.ts):
//   prepare/view  tx: validate + insert `creating` row → backend.create →
//                 tx: mark ready (on failure: tx delete row, backend.destroy)
//   commit        backend.commit (usage) → tx: re-validate + rename [+ unflushed row]
//                 → answer; backend.flush after it (durability.ts)
//   remove        tx: validate + delete row + backend.detach → backend.destroy
//   update        tx
// A crash between two steps leaves either a `creating` row or storage no row
// owns; open() reconciles both before the first request is served.

import type { Backend, BackendSnapshot, CleanupReport } from './backend.js';
import {
  AlreadyExistsError,
  DataLossError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  errorMessage,
} from '../errdefs.js';
import { fromErrno } from '../sys/errno.js';
import { parseFilters } from '../snapshots/filters.js';
import { validateKey } from '../snapshots/keys.js';
import { LABEL_SEED, LABEL_SNAPSHOT_REF, parseSizeLabel, validateLabels } from '../snapshots/labels.js';
import type { Mount } from '../snapshots/mount.js';
import { Kind, type Info, type SnapshotOpts, type Snapshotter, type Usage } from '../snapshots/snapshotter.js';
import type { MetaStore } from '../storage/metastore.js';
import { INODES_UNCOUNTED, SnapshotRows, now, type SnapshotRow } from '../storage/snapshots.js';
import type { CoreLogger } from '../base/log.js';
import { currentBootId } from './boot.js';
import { Flushes } from './durability.js';
import { updatedLabels } from './update.js';
import { Gate } from './gate.js';
import { KeyLock } from './keylock.js';
import { faultPoint } from '../base/faults.js';
import { checkSpace, DEFAULT_MIN_FREE, guardOn, hasRoom, shortage, type MinFree } from './space.js';

/** uncounted tells a committed row whose inodes its backend left to the first Usage. */
const uncounted = (row: SnapshotRow): boolean => row.kind === Kind.Committed && row.inodes === INODES_UNCOUNTED;


/** CoreOptions wire a store and a backend into a snapshotter. */
export interface CoreOptions {
  store: MetaStore;
  backend: Backend;
  log?: CoreLogger;
  /** minFree is the space reserve a new snapshot may not eat into (default DEFAULT_MIN_FREE; see space.ts). */
  minFree?: MinFree;
  /** bootId names this kernel boot (default: the kernel's; null: unknown, flushes stay on Commit's path; see durability.ts). */
  bootId?: string | null;
}

const noLog: CoreLogger = () => {};

/** WALK_PAGE is how many snapshots Walk reads per transaction. */
const WALK_PAGE = 500;

/** CoreSnapshotter implements Snapshotter over a MetaStore and a Backend. */
export class CoreSnapshotter implements Snapshotter {
  private readonly rows: SnapshotRows;
  private readonly locks = new KeyLock();
  /** gate keeps Cleanup's sweep apart from operations that make or drop storage. */
  private readonly gate = new Gate();
  private readonly log: CoreLogger;
  /** flushes makes committed content durable after Commit answers (durability.ts). */
  private readonly flushes: Flushes;
  private closed = false;
  private minFree: MinFree = DEFAULT_MIN_FREE;

  private constructor(
    readonly store: MetaStore,
    readonly backend: Backend,
    log: CoreLogger | undefined,
    bootId: string | undefined,
  ) {
    this.rows = new SnapshotRows(store.db);
    this.log = log ?? noLog;
    this.flushes = new Flushes(store, this.rows, backend, bootId, this.log);
  }

  /** open initialises the backend and reconciles what a crash may have left behind. */
  static async open(opts: CoreOptions): Promise<CoreSnapshotter> {
    const sn = new CoreSnapshotter(opts.store, opts.backend, opts.log, opts.bootId === undefined ? currentBootId() : (opts.bootId ?? undefined));
    sn.minFree = opts.minFree ?? DEFAULT_MIN_FREE;
    await opts.backend.init();
    await sn.reconcile();
    return sn;
  }

  /** reconcile deletes half-made snapshots and reclaims storage no row owns. */
  async reconcile(): Promise<CleanupReport> {
    const removed: string[] = [];
    for (const row of this.store.read(() => this.rows.creating())) {
      await this.backend.destroy(this.toBackend(row));
      faultPoint('core:reconcile:after-destroy');
      this.store.write(() => this.rows.delete(row.id));
      removed.push(`unfinished snapshot ${row.id} (${row.key})`);
    }
    removed.push(...await this.flushes.recover());
    const live = this.store.read(() => this.rows.allIds());
    const report = await this.backend.cleanup(live);
    removed.push(...report.removed);
    if (removed.length > 0) this.log('info', 'reconciled storage', { removed });
    return { removed };
  }

  async stat(key: string): Promise<Info> {
    validateKey(key);
    return this.store.read(() => this.rows.info(this.mustGet(key)));
  }

  async update(info: Info, fieldpaths: string[] = []): Promise<Info> {
    validateKey(info?.name, 'name');
    validateLabels(info.labels);
    return this.locks.run([info.name], async () =>
      this.store.write(() => {
        const row = this.mustGet(info.name);
        const next = updatedLabels(info.name, this.rows.labels(row.id), info.labels ?? {}, fieldpaths);
        this.rows.writeLabels(row.id, next);
        this.rows.touch(row.id, now());
        return this.rows.info(this.mustGet(info.name));
      }),
    );
  }

  async usage(key: string): Promise<Usage> {
    validateKey(key);
    const row = this.store.read(() => this.mustGet(key));
    if (!uncounted(row)) return this.measured(row);
    // A committed snapshot whose backend left the inode count out of Commit
    // (blockfile: it costs a superblock read on Commit's path): count it once,
    // under the key's lock so a Remove cannot take the storage away meanwhile.
    return this.locks.run([key], async () => {
      const cur = this.store.read(() => this.mustGet(key));
      if (!uncounted(cur)) return this.measured(cur);
      const counted = await this.wrap(() => this.backend.usage(this.toBackend(cur)));
      this.store.write(() => this.rows.setCountedInodes(cur.id, counted.inodes));
      return { size: cur.size, inodes: counted.inodes };
    });
  }

  /** measured is a row's usage where no counting is left to do: stored (committed), none (view), or measured now (active). */
  private measured(row: SnapshotRow): Promise<Usage> | Usage {
    if (row.kind === Kind.Committed) return { size: row.size, inodes: row.inodes };
    if (row.kind === Kind.View) return { size: 0, inodes: 0 };
    return this.wrap(() => this.backend.usage(this.toBackend(row)));
  }

  async mounts(key: string): Promise<Mount[]> {
    validateKey(key);
    const row = this.store.read(() => this.mustGet(key));
    if (row.kind === Kind.Committed) {
      throw new FailedPreconditionError(`requested snapshot ${key} not active or view`);
    }
    return this.wrap(() => this.backend.mounts(this.toBackend(row)));
  }

  prepare(key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]> {
    return this.create(Kind.Active, key, parent, opts);
  }

  view(key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]> {
    return this.create(Kind.View, key, parent, opts);
  }

  async commit(name: string, key: string, opts?: SnapshotOpts): Promise<void> {
    validateKey(name, 'name');
    validateKey(key);
    validateLabels(opts?.labels);
    await this.gate.shared(() => this.locks.run([key, name], async () => {
      const row = this.store.read(() => this.checkCommit(name, key));
      // Storage below the reserve at Commit means the snapshot's writes may
      // have met ENOSPC underneath its filesystem (a layer applied into a
      // loop-mounted image loses those writes silently: the applier, e.g.
      // containerd's, never sees them). Such a snapshot is not committed:
      // the caller (containerd's unpacker) removes it and fails the pull.
      if (row.kind === Kind.Active && this.backend.freeSpace && guardOn(this.minFree)) {
        await this.guardSpace(`cannot commit snapshot ${key} as ${name}: the storage ran below its reserve while it was written, so writes to it may have failed`);
      }
      const snap = this.toBackend(row);
      const usage = await this.wrap(() => this.backend.commit(snap));
      const deferred = this.flushes.deferred;
      if (!deferred) await this.wrap(() => this.flushes.flushNow(snap));
      faultPoint('core:commit:after-backend');
      this.store.write(() => {
        const again = this.checkCommit(name, key);
        this.rows.commit(again.id, name, now(), usage);
        this.rows.writeLabels(again.id, opts?.labels ?? {});
        if (deferred) this.flushes.mark(again.id, key);
      });
      faultPoint('core:commit:after-tx');
      if (deferred) this.flushes.start({ ...snap, kind: Kind.Committed });
    }));
  }

  async remove(key: string): Promise<void> {
    validateKey(key);
    await this.gate.shared(() => this.locks.run([key], async () => {
      // A snapshot is not dropped while its flush may still write to it.
      if (!this.flushes.idle) {
        const current = this.store.read(() => this.rows.get(key));
        if (current) await this.flushes.durable(this.toBackend(current));
      }
      let detached: BackendSnapshot | undefined;
      try {
        this.store.write((tx) => {
          const row = this.mustGet(key);
          if (this.rows.hasChildren(row.id)) {
            throw new FailedPreconditionError(`cannot remove snapshot ${key} with child`);
          }
          if (row.kind === Kind.Committed && this.rows.labels(row.id)[LABEL_SEED] !== undefined) {
            throw new FailedPreconditionError(
              `snapshot ${key} was seeded by tsblock import and no unpack has used it yet; "tsblock rm" removes it`,
            );
          }
          this.rows.delete(row.id);
          const snap = this.toBackend(row);
          this.backend.detach(snap, tx);
          detached = snap;
          faultPoint('core:remove:in-tx');
        });
      } catch (err) {
        if (detached) this.backend.reattach(detached);
        throw err;
      }
      const snap = detached!;
      faultPoint('core:remove:after-tx');
      try {
        await this.backend.destroy(snap);
        faultPoint('core:remove:after-destroy');
      } catch (err) {
        // The snapshot is gone from the metadata; its storage is an orphan that
        // cleanup() reclaims. containerd's GC must not be stopped by it.
        this.log('warn', 'snapshot removed, storage left for cleanup', { key, id: snap.id, error: errorMessage(err) });
      }
    }));
  }

  async walk(fn: (info: Info) => void | Promise<void>, filters: string[] = []): Promise<void> {
    const match = parseFilters(filters);
    // Page by id, one short read transaction per page: memory stays flat with
    // 10,000s of snapshots (daemon RSS, docs/performance.md) and a slow List
    // client never pins a read snapshot. Every snapshot that exists for the
    // whole walk is reported exactly once.
    for (let after = 0; ; ) {
      const page = this.store.read(() => this.rows.infoPage(after, WALK_PAGE));
      for (const [id, info] of page) {
        after = id;
        if (match(info)) await fn(info);
      }
      if (page.length < WALK_PAGE) return;
    }
  }

  async cleanup(): Promise<void> {
    // Exclusive: the live set read here stays true until the sweep is done
    // (a Prepare running meanwhile would otherwise lose its new storage).
    await this.gate.exclusive(async () => {
      const live = this.store.read(() => this.rows.allIds());
      const report = await this.wrap(() => this.backend.cleanup(live));
      faultPoint('core:cleanup:after-backend');
      if (report.removed.length > 0) this.log('info', 'cleanup reclaimed storage', { removed: report.removed });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushes.drain();
    await this.backend.close();
    this.store.close();
  }

  /** rowsView exposes read-only row access for CLI verbs and tests. */
  listRows(): SnapshotRow[] {
    return this.store.read(() => this.rows.rows());
  }

  private async create(kind: Kind, key: string, parent: string, opts?: SnapshotOpts): Promise<Mount[]> {
    validateKey(key);
    if (parent !== '') validateKey(parent, 'parent');
    validateLabels(opts?.labels);
    const sizeBytes = parseSizeLabel(opts?.labels);
    // A view of a committed image allocates nothing (blockfile) or next to
    // nothing; an active snapshot is where containers write, so it is the one
    // refused when the storage is below the reserve.
    if (kind === Kind.Active && this.backend.freeSpace && guardOn(this.minFree)) await this.guardSpace();
    return this.gate.shared(() => this.locks.run([key], async () => {
      const made = this.store.write((): SnapshotRow | { claimed: string } => {
        if (this.rows.get(key)) throw new AlreadyExistsError(`snapshot ${key}: already exists`);
        let parentId: number | null = null;
        if (parent !== '') {
          const p = this.rows.get(parent);
          if (!p || p.state !== 'ready') throw new NotFoundError(`parent snapshot ${parent} does not exist`);
          if (p.kind !== Kind.Committed) {
            throw new InvalidArgumentError(`parent ${JSON.stringify(parent)} is not committed snapshot`);
          }
          parentId = p.id;
        }
        const target = this.findTarget(opts?.labels, parentId);
        if (target !== undefined) return { claimed: target };
        const id = this.rows.insert({ key, parentId, kind, state: 'creating', labels: opts?.labels ?? {}, at: now() });
        return this.rows.getById(id)!;
      });
      if ('claimed' in made) throw new AlreadyExistsError(`target snapshot ${JSON.stringify(made.claimed)}: already exists`);
      const row = made;
      faultPoint('core:create:after-insert');
      const snap: BackendSnapshot = { ...this.toBackend(row), sizeBytes };
      try {
        // A child is made only from a parent whose content is on disk
        // (durability.ts); usually its flush finished long ago.
        if (row.parentId !== null && !this.flushes.idle) await this.flushes.durable({ id: row.parentId, kind: Kind.Committed });
        await this.wrap(() => this.backend.create(snap));
        faultPoint('core:create:after-backend');
        this.store.write(() => this.rows.markReady(row.id));
        faultPoint('core:create:after-ready');
        return await this.wrap(() => this.backend.mounts(snap));
      } catch (err) {
        await this.undoCreate(snap, err);
        // A damaged parent (backends name it by id): say which snapshot it is.
        if (err instanceof DataLossError && parent !== '') throw new DataLossError(`parent snapshot ${parent}: ${err.message}`, { cause: err });
        throw err;
      }
    }));
  }

  /**
   * guardSpace refuses a new active snapshot below the reserve. A backend may
   * answer from a recent reading (devmapper: one pool status per 250 ms),
   * which space freed since only makes too low: it is read afresh before a
   * refusal, so a refusal is never stale.
   */
  private async guardSpace(refused?: string): Promise<void> {
    let space = await this.backend.freeSpace!();
    if (!hasRoom(space, this.minFree)) space = await this.backend.freeSpace!({ fresh: true });
    checkSpace(space, this.minFree, refused);
  }

  /**
   * spaceShortage says, in words, why the storage is below its reserve
   * (undefined when it is not, or when the guard is off): callers that saw a
   * write fail use it to name the cause.
   */
  async spaceShortage(): Promise<string | undefined> {
    if (!this.backend.freeSpace || !guardOn(this.minFree)) return undefined;
    const why = shortage(await this.backend.freeSpace({ fresh: true }), this.minFree);
    return why === undefined ? undefined : `the storage ran out of space: ${why}`;
  }

  private async undoCreate(snap: BackendSnapshot, cause: unknown): Promise<void> {
    try {
      await this.backend.destroy(snap);
      this.store.write(() => this.rows.delete(snap.id));
    } catch (err) {
      // Left as a `creating` row: the next start-up or cleanup removes it.
      this.log('error', 'could not undo a failed create', { id: snap.id, error: errorMessage(err), cause: errorMessage(cause) });
    }
  }

  /**
   * findTarget implements containerd's remote-snapshot protocol: when Prepare
   * carries containerd.io/snapshot.ref=<chainID> and a committed snapshot with
   * that label and the same parent exists (e.g. seeded by `tsblock import`),
   * the caller answers AlreadyExists; containerd then finds it with Walk and
   * adopts it instead of unpacking the layer again. Adoption is when a seed
   * becomes containerd's: its LABEL_SEED mark is dropped (in the caller's
   * transaction), unless this Prepare is itself an import's.
   */
  private findTarget(labels: Record<string, string> | undefined, parentId: number | null): string | undefined {
    const target = labels?.[LABEL_SNAPSHOT_REF];
    if (!target) return undefined;
    const found = this.rows.findCommittedByRef(LABEL_SNAPSHOT_REF, target, parentId);
    if (!found) return undefined;
    if (labels?.[LABEL_SEED] === undefined) {
      const current = this.rows.labels(found.id);
      if (current[LABEL_SEED] !== undefined) {
        delete current[LABEL_SEED];
        this.rows.writeLabels(found.id, current);
      }
    }
    return target;
  }

  private checkCommit(name: string, key: string): SnapshotRow {
    const row = this.rows.get(key);
    if (!row || row.state !== 'ready') throw new NotFoundError(`failed to get active snapshot ${JSON.stringify(key)}: not found`);
    if (row.kind !== Kind.Active) throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is not active`);
    if (this.rows.get(name)) throw new AlreadyExistsError(`committed snapshot ${name}: already exists`);
    return row;
  }

  private mustGet(key: string): SnapshotRow {
    const row = this.rows.get(key);
    if (!row || row.state !== 'ready') throw new NotFoundError(`snapshot ${key}: not found`);
    return row;
  }

  private toBackend(row: SnapshotRow): BackendSnapshot {
    return { id: row.id, key: row.key, kind: row.kind, parent: row.parentId === null ? undefined : { id: row.parentId } };
  }

  /** wrap turns raw kernel errors callers can act on into typed ones (sys/errno.ts). */
  private async wrap<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw fromErrno(err, 'snapshot storage');
    }
  }
}
