// MetaStore opens the SQLite database that holds every snapshot's metadata
// and runs each operation in exactly one transaction.
//
// better-sqlite3 transactions are synchronous: the callback must not await.
// Short kernel calls (FICLONE, rename, a dm message) may run inside one; slow
// work (copies, mkfs, tar apply) runs outside, bracketed by state rows so a
// crash between two transactions is recognisable and reconciled at start-up.

import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InternalError, ResourceExhaustedError, errorMessage } from '../errdefs.js';
import { migrate, type Migration } from './schema.js';

/** metadataPath is where a root keeps its SQLite database. */
export function metadataPath(root: string): string {
  return join(root, 'metadata.db');
}

/** Tx is the handle a transaction callback receives; it is the database, inside a transaction. */
export type Tx = Database.Database;

/** MetaStoreOptions tune how the database is opened. */
export interface MetaStoreOptions {
  /** readonly opens for inspection (CLI verbs while the daemon runs). */
  readonly?: boolean;
  /** extraMigrations are a backend's own tables (e.g. devmapper devices). */
  extraMigrations?: readonly Migration[];
}

/** MetaStore wraps one better-sqlite3 connection in WAL mode. */
export class MetaStore {
  readonly db: Database.Database;
  private closed = false;
  /**
   * The transaction wrappers are made once: better-sqlite3's transaction()
   * builds four closures and their properties on every call, which was a
   * measurable share of a Stat's server time (docs/performance.md).
   */
  private readonly readTx: (fn: (tx: Tx) => unknown) => unknown;
  private readonly writeTx: (fn: (tx: Tx) => unknown) => unknown;

  constructor(readonly path: string, opts: MetaStoreOptions = {}) {
    if (!opts.readonly) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    this.db.pragma('busy_timeout = 5000');
    if (!opts.readonly) {
      this.db.pragma('journal_mode = WAL');
      // NORMAL in WAL mode is durable across process crashes (kill -9), which is
      // the failure the snapshotter must survive without loss; FULL would add an
      // fsync per commit for power loss on top.
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('foreign_keys = ON');
      migrate(this.db, opts.extraMigrations ?? []);
    }
    this.readTx = this.db.transaction((fn: (tx: Tx) => unknown) => fn(this.db)).deferred;
    this.writeTx = this.db.transaction((fn: (tx: Tx) => unknown) => {
      const value = fn(this.db);
      if (value instanceof Promise) {
        throw new InternalError('a transaction callback returned a promise; transactions must be synchronous');
      }
      return value;
    }).immediate;
  }

  /** read runs fn in a read transaction (a consistent snapshot of the data). */
  read<T>(fn: (tx: Tx) => T): T {
    this.assertOpen();
    return this.readTx(fn) as T;
  }

  /**
   * write runs fn in one IMMEDIATE transaction: all of it commits, or none.
   * A full filesystem under the metadata file (SQLITE_FULL; SQLITE_IOERR
   * with ENOSPC underneath reports as the same) rolls it back and becomes a
   * ResourceExhaustedError naming the file: new work is refused while reads
   * keep being served.
   */
  write<T>(fn: (tx: Tx) => T): T {
    this.assertOpen();
    try {
      return this.writeTx(fn) as T;
    } catch (err) {
      if (isDiskFull(err)) {
        throw new ResourceExhaustedError(`the filesystem holding the metadata file ${this.path} is full (${errorMessage(err)}): free space there; reads keep working`, { cause: err });
      }
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new InternalError('metadata store is closed');
  }
}

/** isDiskFull tells SQLite's "database or disk is full" (and a write I/O error that is ENOSPC). */
function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_FULL' || (typeof code === 'string' && code.startsWith('SQLITE_IOERR') && /ENOSPC|disk is full|No space/i.test(errorMessage(err)));
}
