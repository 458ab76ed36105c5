// UnflushedRows is the data access layer for the `unflushed` table: committed
// snapshots whose content the backend has not yet made durable, each with the
// active key it was committed from and the boot it was committed in. Every
// method must run inside a MetaStore transaction.

import type Database from 'better-sqlite3';

/** UnflushedRow is one committed snapshot still waiting for its flush. */
export interface UnflushedRow {
  id: number;
  /** activeKey is the key the snapshot had before Commit (a rollback restores it). */
  activeKey: string;
  /** bootId is the kernel boot the Commit ran in (/proc/sys/kernel/random/boot_id). */
  bootId: string;
}

/** UnflushedRows holds the prepared statements of one connection. */
export class UnflushedRows {
  private readonly ins: Database.Statement;
  private readonly del: Database.Statement;
  private readonly all: Database.Statement;

  constructor(db: Database.Database) {
    this.ins = db.prepare('INSERT INTO unflushed (snapshot_id, active_key, boot_id) VALUES (?, ?, ?)');
    this.del = db.prepare('DELETE FROM unflushed WHERE snapshot_id = ?');
    this.all = db.prepare('SELECT snapshot_id AS id, active_key AS activeKey, boot_id AS bootId FROM unflushed ORDER BY snapshot_id');
  }

  /** mark records that snapshot `id`, committed from `activeKey` in boot `bootId`, is not durable yet. */
  mark(id: number, activeKey: string, bootId: string): void {
    this.ins.run(id, activeKey, bootId);
  }

  /** clear records that snapshot `id` is durable (a no-op when it was removed meanwhile). */
  clear(id: number): void {
    this.del.run(id);
  }

  list(): UnflushedRow[] {
    return this.all.all() as UnflushedRow[];
  }
}
