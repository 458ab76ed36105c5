// The devmapper backend's device rows (src/backends/devmapper/devices.ts) on
// a real SQLite store: thin-id allocation, and the keys of warm spares, which
// must never collide with snapshot ids or faulty rows.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetaStore } from '../../../src/storage/metastore.js';
import {
  SPARE_ROW_BASE,
  adoptSpare,
  allDevices,
  allocateDevice,
  allocateSpare,
  devmapperMigrations,
  getDevice,
  isSpareRow,
} from '../../../src/backends/devmapper/devices.js';

describe('devmapper device rows', () => {
  let dir = '';
  let store: MetaStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tsblock-dmrows-'));
    store = new MetaStore(join(dir, 'metadata.db'), { extraMigrations: devmapperMigrations });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('allocates increasing thin ids, spares included, as trying rows', () => {
    const a = store.write((tx) => allocateDevice(tx, { snapshotId: 0, size: 64, readOnly: false, originThin: null }));
    const b = store.write((tx) => allocateDevice(tx, { snapshotId: 1, size: 64, readOnly: false, originThin: a.thinId }));
    const s = store.write((tx) => allocateSpare(tx, b));
    const c = store.write((tx) => allocateDevice(tx, { snapshotId: 2, size: 64, readOnly: true, originThin: b.thinId }));
    expect([a.thinId, b.thinId, s.thinId, c.thinId]).toEqual([0, 1, 2, 3]);
    expect(b.state).toBe('trying');
    expect(getDevice(store.db, 2)).toMatchObject({ thinId: 3, readOnly: true, originThin: 1, state: 'trying' });
  });

  it('keys a spare below every snapshot id and faulty row, and hands it over to a snapshot', () => {
    const origin = store.write((tx) => allocateDevice(tx, { snapshotId: 7, size: 128, readOnly: false, originThin: null }));
    const spare = store.write((tx) => allocateSpare(tx, origin));
    expect(spare.snapshotId).toBe(SPARE_ROW_BASE - spare.thinId);
    expect(isSpareRow(spare.snapshotId)).toBe(true);
    expect(isSpareRow(-1 - 0xffffff)).toBe(false); // the lowest faulty key
    expect(isSpareRow(0)).toBe(false);
    expect(spare).toMatchObject({ state: 'ready', size: 128, readOnly: false, originThin: origin.thinId });
    store.write((tx) => adoptSpare(tx, spare.snapshotId, 9));
    expect(getDevice(store.db, spare.snapshotId)).toBeUndefined();
    expect(getDevice(store.db, 9)).toMatchObject({ thinId: spare.thinId, state: 'ready', originThin: origin.thinId });
    expect(store.read((tx) => allDevices(tx)).map((r) => r.snapshotId)).toEqual([7, 9]);
  });
});
