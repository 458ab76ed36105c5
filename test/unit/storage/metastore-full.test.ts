// A full filesystem under metadata.db: SQLite answers SQLITE_FULL, which the
// metastore turns into a ResourceExhaustedError naming the file (the gRPC
// edge sends RESOURCE_EXHAUSTED), rolls the transaction back, and reads keep
// working. A page limit (max_page_count) makes SQLite full without a full disk.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetaStore } from '../../../src/storage/metastore.js';

let dir: string;
let store: MetaStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tsblock-metafull-'));
  store = new MetaStore(join(dir, 'metadata.db'));
  store.db.exec('CREATE TABLE filler (v BLOB)');
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('metadata file full', () => {
  it('a write that does not fit is a ResourceExhaustedError naming the metadata file, rolled back; reads still work', () => {
    store.write((tx) => tx.prepare('INSERT INTO filler VALUES (?)').run(Buffer.alloc(100)));
    const pages = Number(store.db.pragma('page_count', { simple: true }));
    store.db.pragma(`max_page_count = ${pages + 2}`);
    let err: unknown;
    try {
      store.write((tx) => {
        tx.prepare('INSERT INTO filler VALUES (?)').run(Buffer.alloc(1000));
        tx.prepare('INSERT INTO filler VALUES (?)').run(Buffer.alloc(64 * 1024));
      });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'resource-exhausted', message: expect.stringMatching(/the filesystem holding the metadata file .*metadata\.db is full \(database or disk is full\)/) });
    expect(store.read((tx) => tx.prepare('SELECT count(*) AS n FROM filler').get())).toEqual({ n: 1 });
  });

  it('other errors pass through unchanged', () => {
    expect(() => store.write((tx) => tx.prepare('INSERT INTO nothere VALUES (1)').run())).toThrow(/no such table/);
  });
});
