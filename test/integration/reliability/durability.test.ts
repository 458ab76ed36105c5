// Deferred flush (src/core/durability.ts): blockfile's Commit answers before
// the image's fdatasync, and the `unflushed` row it leaves is settled by
// whatever comes next: a child Prepare, a Remove, close(), or start-up after a
// kill. A start-up in another boot (TSBLOCK_BOOT_ID stands for a reboot)
// undoes the Commit, since the image may not have reached the disk.

import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { rootReason } from '../../helpers/env.js';
import { KIND_ACTIVE, KIND_COMMITTED, TestClient, isRpcError } from '../../helpers/client.js';
import { leaksUnder } from '../../helpers/leaks.js';
import { withTempMount } from '../../../src/sys/mount.js';
import { MetaStore } from '../../../src/storage/metastore.js';
import { CoreSnapshotter } from '../../../src/core/snapshotter.js';
import { BlockfileBackend } from '../../../src/backends/blockfile/blockfile.js';
import { BOOT_ID_ENV } from '../../../src/core/boot.js';
import { ServerProc, distReason, tail } from '../../helpers/server.js';
import { imagesDirOf } from '../../../src/backends/blockfile/layout.js';
import { releaseStore } from '../../helpers/store.js';

const reason = rootReason ?? distReason;

function unflushedIds(root: string): number[] {
  const db = new Database(join(root, 'metadata.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT snapshot_id AS id FROM unflushed ORDER BY id').all() as { id: number }[]).map((r) => r.id);
  } finally {
    db.close();
  }
}

async function code(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return status.OK;
  } catch (err) {
    if (!isRpcError(err)) throw err;
    return err.code;
  }
}

describe.skipIf(reason)(`deferred flush of committed images${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it('Commit answers before the flush; a child Prepare, a Remove and close() wait for it', async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-durable-');
    const root = join(dir, 'root');
    mkdirSync(root);
    const open = async (): Promise<CoreSnapshotter> =>
      CoreSnapshotter.open({
        store: new MetaStore(join(root, 'metadata.db')),
        backend: new BlockfileBackend({ dir: imagesDirOf(root), baseSize: 64 * 1024 ** 2 }),
        bootId: 'boot-1',
      });
    let sn: CoreSnapshotter | undefined;
    try {
      sn = await open();
      await sn.prepare('a', '');
      await sn.commit('c1', 'a');
      // The flush is on the thread pool; no I/O callback has run since Commit answered.
      const [c1] = sn.listRows().filter((r) => r.key === 'c1');
      expect(unflushedIds(root)).toEqual([c1!.id]);
      await sn.prepare('b', 'c1');
      expect(unflushedIds(root)).toEqual([]);

      await sn.commit('c2', 'b');
      expect(unflushedIds(root)).toHaveLength(1);
      await sn.remove('c2');
      expect(unflushedIds(root)).toEqual([]);

      await sn.prepare('d', 'c1');
      await sn.commit('c3', 'd');
      expect(unflushedIds(root)).toHaveLength(1);
      await sn.close();
      sn = undefined;
      expect(unflushedIds(root)).toEqual([]);

      // Boot unknown (no /proc): the flush runs inside Commit and nothing is left unflushed.
      sn = await CoreSnapshotter.open({
        store: new MetaStore(join(root, 'metadata.db')),
        backend: new BlockfileBackend({ dir: imagesDirOf(root), baseSize: 64 * 1024 ** 2 }),
        bootId: null,
      });
      await sn.prepare('e', 'c3');
      await sn.commit('c4', 'e');
      expect(unflushedIds(root)).toEqual([]);
      expect(sn.listRows().map((r) => r.key).sort()).toEqual(['c1', 'c3', 'c4']);
    } finally {
      await sn?.close();
      expect(leaksUnder(dir)).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('a kill after Commit answered: the same boot flushes and keeps it; another boot undoes it', async () => {
    const dir = mkdtempSync('/var/tmp/tsblock-durable-');
    const socket = join(dir, 's.sock');
    const log = join(dir, 'serve.log');
    let proc: ServerProc | undefined;
    let c: TestClient | undefined;
    let served: string | undefined;
    const restart = async (env: Record<string, string>, root: string, faults?: string): Promise<void> => {
      c?.close();
      await proc?.kill9();
      // Leaving a root for good after a kill: release the store that daemon left mounted.
      if (served !== undefined && served !== root) releaseStore(served);
      served = root;
      ({ proc } = await ServerProc.start({ root, socket, log, faults, env }));
      c = new TestClient(socket);
    };
    const writeFile = async (key: string, name: string): Promise<void> => {
      await withTempMount(await c!.mounts(key), async (at) => writeFileSync(join(at, name), name), { parent: dir });
    };
    const readView = async (key: string, parent: string): Promise<string[]> => {
      const seen = await withTempMount(await c!.view(key, parent), async (at) => ['one', 'two'].filter((f) => {
        try {
          return readFileSync(join(at, f), 'utf8') === f;
        } catch {
          return false;
        }
      }), { parent: dir });
      await c!.remove(key);
      return seen;
    };
    try {
      for (const [boot, outcome] of [['boot-1', 'kept'], ['boot-2', 'undone']] as const) {
        const root = join(dir, `root-${outcome}`);
        // The first server dies right after Commit's transaction: the unflushed row is there, no flush ran.
        await restart({ [BOOT_ID_ENV]: 'boot-1' }, root);
        await c!.prepare('a', '');
        await writeFile('a', 'one');
        await c!.commit('base', 'a');
        await c!.prepare('b', 'base');
        await writeFile('b', 'two');
        await restart({ [BOOT_ID_ENV]: 'boot-1' }, root, 'core:commit:after-tx@1');
        expect(await code(c!.commit('top', 'b'))).not.toBe(status.OK);
        await proc!.exited;
        expect(unflushedIds(root)).toHaveLength(1);

        await restart({ [BOOT_ID_ENV]: boot }, root);
        expect(unflushedIds(root)).toEqual([]);
        const byName = new Map((await c!.list()).map((i) => [i.name, i]));
        if (outcome === 'kept') {
          expect(byName.get('top')?.kind).toBe(KIND_COMMITTED);
          expect(byName.has('b')).toBe(false);
          expect(await readView('v', 'top')).toEqual(['one', 'two']);
        } else {
          // As if the Commit had never happened: "b" is active again, with its writes, and can be committed anew.
          expect(byName.has('top')).toBe(false);
          expect(byName.get('b')?.kind).toBe(KIND_ACTIVE);
          expect(byName.get('b')?.parent).toBe('base');
          await c!.commit('top', 'b');
          expect(await readView('v', 'top')).toEqual(['one', 'two']);
        }
        expect(await readView('v0', 'base')).toEqual(['one']);
        await c!.remove('top');
        await c!.remove('base');
        expect(await c!.list()).toEqual([]);
      }

      // Another boot, and the active key is in use again: the unflushed commit
      // is removed instead. (Only a failed flush keeps a row unflushed long
      // enough for its key to be reused, so the row is pointed at a key in use.)
      const root = join(dir, 'root-reused');
      await restart({ [BOOT_ID_ENV]: 'boot-1' }, root, 'core:commit:after-tx@1');
      await c!.prepare('taken', '');
      await c!.prepare('a', '');
      expect(await code(c!.commit('top', 'a'))).not.toBe(status.OK);
      await proc!.exited;
      const db = new Database(join(root, 'metadata.db'));
      db.prepare("UPDATE unflushed SET active_key = 'taken'").run();
      db.close();
      await restart({ [BOOT_ID_ENV]: 'boot-3' }, root);
      expect((await c!.list()).map((i) => i.name)).toEqual(['taken']);
      expect(unflushedIds(root)).toEqual([]);
      await c!.remove('taken');
      await c!.cleanup();
      expect(readdirSync(join(imagesDirOf(root), 'snapshots'))).toEqual([]);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nlog:\n${tail(log)}`, { cause: err });
    } finally {
      c?.close();
      await proc?.stop();
      expect(leaksUnder(dir)).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
