// schema holds the versioned DDL. Each migration runs once, in order, inside
// one transaction together with the bump of user_version; a backend adds its
// own tables as named migrations tracked in the `migrations` table.

import type Database from 'better-sqlite3';

/** Migration is one named, append-only schema step. */
export interface Migration {
  /** id must be unique and never change once released (e.g. "core-1", "devmapper-1"). */
  id: string;
  sql: string;
}

/** coreMigrations define snapshots and labels; append only. */
export const coreMigrations: readonly Migration[] = [
  {
    id: 'core-1',
    sql: `
      CREATE TABLE snapshots (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        key         TEXT NOT NULL UNIQUE,
        parent_id   INTEGER REFERENCES snapshots(id),
        kind        INTEGER NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('creating', 'ready')),
        created_s   INTEGER NOT NULL,
        created_ns  INTEGER NOT NULL,
        updated_s   INTEGER NOT NULL,
        updated_ns  INTEGER NOT NULL,
        size        INTEGER NOT NULL DEFAULT 0,
        inodes      INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX snapshots_parent ON snapshots(parent_id);
      CREATE TABLE labels (
        snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        value       TEXT NOT NULL,
        PRIMARY KEY (snapshot_id, name)
      ) WITHOUT ROWID;
    `,
  },
  {
    // Lookups by label value (containerd.io/snapshot.ref on every Prepare of an unpack).
    id: 'core-2',
    sql: 'CREATE INDEX labels_name_value ON labels(name, value);',
  },
  {
    // Committed snapshots whose content a backend has still to make durable
    // (blockfile's image flush runs after Commit answers; see core/durability.ts).
    id: 'core-3',
    sql: `
      CREATE TABLE unflushed (
        snapshot_id INTEGER PRIMARY KEY REFERENCES snapshots(id) ON DELETE CASCADE,
        active_key  TEXT NOT NULL,
        boot_id     TEXT NOT NULL
      );
    `,
  },
];

/** migrate applies every migration not yet recorded. */
export function migrate(db: Database.Database, extra: readonly Migration[]): void {
  db.exec('CREATE TABLE IF NOT EXISTS migrations (id TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)');
  const applied = new Set(
    (db.prepare('SELECT id FROM migrations').all() as { id: string }[]).map((r) => r.id),
  );
  const record = db.prepare('INSERT INTO migrations (id, applied_at) VALUES (?, ?)');
  for (const m of [...coreMigrations, ...extra]) {
    if (applied.has(m.id)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.id, Date.now());
    }).immediate();
  }
}
