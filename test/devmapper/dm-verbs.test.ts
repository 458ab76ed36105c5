// The dm verbs of src/sys/dm.ts and src/sys/dm-thin.ts against a real kernel:
// create/load/resume/status/message/remove, node creation, typed errors.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, statSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import {
  activate,
  createDevice,
  deviceInfo,
  devicePath,
  dmVersion,
  listDevices,
  loadTable,
  removeDevice,
  resume,
  suspend,
  tableStatus,
} from '../../src/sys/dm.js';
import { createSnap, createThin, deleteThin, poolStatus, thinPoolTable, thinStatus, thinTable } from '../../src/sys/dm-thin.js';
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from '../../src/errdefs.js';
import { HAS_DM, SKIP_REASON, makeLoopFiles, releaseLoopFiles, removeDevicesWithPrefix, scratchDir, type LoopPool } from './helpers.js';

describe.skipIf(!HAS_DM)(`dm verbs${HAS_DM ? '' : ` (skipped: ${SKIP_REASON})`}`, () => {
  const prefix = `tsbv${process.pid}`;
  const pool = `${prefix}-pool`;
  let lp: LoopPool | undefined;

  beforeAll(() => {
    lp = makeLoopFiles(scratchDir('dmv-'), 256 * 1024 * 1024, 16 * 1024 * 1024);
    activate(pool, [thinPoolTable(lp.meta, lp.data, lp.dataSectors, 128, 64)]);
  });
  afterEach(async () => {
    await removeDevicesWithPrefix(`${prefix}-t`);
  });
  afterAll(async () => {
    await removeDevicesWithPrefix(prefix);
    releaseLoopFiles(lp);
  });

  it('reports the interface version 4', () => {
    expect(dmVersion()[0]).toBe(4);
  });

  it('creates a pool whose node and status are right', () => {
    const info = deviceInfo(pool)!;
    expect(info.activeTable).toBe(true);
    expect(info.suspended).toBe(false);
    const st = statSync(devicePath(pool), { bigint: false });
    expect(st.isBlockDevice()).toBe(true);
    const ps = poolStatus(pool);
    expect(ps.mode).toBe('rw');
    expect(ps.totalDataBlocks).toBe(256 * 1024 * 1024 / (128 * 512));
    expect(ps.failed).toBe(false);
    expect(listDevices().some((d) => d.name === pool && d.major === info.major && d.minor === info.minor)).toBe(true);
    expect(tableStatus(pool)[0]).toMatchObject({ type: 'thin-pool', start: 0, length: lp!.dataSectors });
  });

  it('creates, writes, snapshots and deletes thin devices via messages', async () => {
    createThin(pool, 1);
    expect(() => createThin(pool, 1)).toThrow(AlreadyExistsError);
    const t1 = `${prefix}-t1`;
    activate(t1, [thinTable(devicePath(pool), 1, 8192)]);
    expect(thinStatus(t1).mappedSectors).toBe(0);
    const fd = openSync(devicePath(t1), 'r+');
    writeSync(fd, Buffer.alloc(4096, 0xab), 0, 4096, 0);
    closeSync(fd);
    expect(thinStatus(t1).mappedSectors).toBe(128);
    suspend(t1);
    expect(deviceInfo(t1)!.suspended).toBe(true);
    createSnap(pool, 2, 1);
    resume(t1);
    const t2 = `${prefix}-t2`;
    activate(t2, [thinTable(devicePath(pool), 2, 8192)], { readOnly: true });
    expect(deviceInfo(t2)!.readOnly).toBe(true);
    const buf = Buffer.alloc(4096);
    const fd2 = openSync(devicePath(t2), 'r');
    readSync(fd2, buf, 0, 4096, 0);
    closeSync(fd2);
    expect(buf[100]).toBe(0xab);
    expect(() => deleteThin(pool, 2)).toThrow(FailedPreconditionError); // active
    await removeDevice(t2);
    expect(existsSync(devicePath(t2))).toBe(false);
    deleteThin(pool, 2);
    expect(() => deleteThin(pool, 2)).toThrow(NotFoundError);
    await removeDevice(t1);
    deleteThin(pool, 1);
  });

  it('maps errors to typed errors', async () => {
    expect(deviceInfo(`${prefix}-tnone`)).toBeUndefined();
    await expect(removeDevice(`${prefix}-tnone`)).rejects.toBeInstanceOf(NotFoundError);
    const n = `${prefix}-tdup`;
    createDevice(n);
    expect(() => createDevice(n)).toThrow(AlreadyExistsError);
    expect(deviceInfo(n)!.activeTable).toBe(false);
    loadTable(n, [{ start: 0, length: 8, type: 'zero', params: '' }]);
    expect(deviceInfo(n)!.inactiveTable).toBe(true);
    resume(n);
    const fd = openSync(devicePath(n), 'r');
    try {
      await expect(removeDevice(n, { tries: 2 })).rejects.toBeInstanceOf(FailedPreconditionError);
    } finally {
      closeSync(fd);
    }
    await removeDevice(n);
  });
});
