// MemoryBackend is an in-memory Backend for unit tests of the core's rules
// (keys, parents, kinds, labels, transactions). The core is what those tests
// exercise; real backends run the shared suite in test/integration and
// test/devmapper. It records calls and can be told to fail, to check that a
// failed step changes nothing.

import type { Backend, BackendSnapshot, CleanupReport, CommitUsage } from '../../src/core/backend.js';
import { Kind, type Usage } from '../../src/snapshots/snapshotter.js';
import type { Mount } from '../../src/snapshots/mount.js';

export class MemoryBackend implements Backend {
  readonly name = 'memory';
  /** stored maps snapshot id → state of its storage. */
  readonly stored = new Map<number, 'live' | 'detached'>();
  readonly calls: string[] = [];
  failNext: Partial<Record<'create' | 'commit' | 'destroy' | 'detach', Error>> = {};
  /**
   * cleanupStall, when set, is awaited by cleanup() after it has looked at its
   * storage and before it deletes anything, as a real sweep awaits device
   * removal: what the core lets run meanwhile is what races the sweep.
   */
  cleanupStall: Promise<void> | undefined;
  /** commitLeavesInodes makes commit() leave the inode count to the first Usage, as blockfile does. */
  commitLeavesInodes = false;

  async init(): Promise<void> {
    this.calls.push('init');
  }

  async create(snap: BackendSnapshot): Promise<void> {
    this.calls.push(`create ${snap.id}`);
    this.throwIf('create');
    if (snap.kind !== Kind.View) this.stored.set(snap.id, 'live');
  }

  async mounts(snap: BackendSnapshot): Promise<Mount[]> {
    const view = snap.kind === Kind.View;
    const source = view ? `mem:${snap.parent?.id ?? 'base'}` : `mem:${snap.id}`;
    return [{ type: 'ext4', source, options: view ? ['ro'] : ['rw'] }];
  }

  async commit(snap: BackendSnapshot): Promise<CommitUsage> {
    this.calls.push(`commit ${snap.id}`);
    this.throwIf('commit');
    return this.commitLeavesInodes ? { size: 4096 * snap.id } : { size: 4096 * snap.id, inodes: snap.id };
  }

  async usage(snap: BackendSnapshot): Promise<Usage> {
    this.calls.push(`usage ${snap.id}`);
    return { size: 1000 + snap.id, inodes: 1 };
  }

  detach(snap: BackendSnapshot): void {
    this.calls.push(`detach ${snap.id}`);
    this.throwIf('detach');
    if (this.stored.has(snap.id)) this.stored.set(snap.id, 'detached');
  }

  reattach(snap: BackendSnapshot): void {
    this.calls.push(`reattach ${snap.id}`);
    if (this.stored.has(snap.id)) this.stored.set(snap.id, 'live');
  }

  async destroy(snap: BackendSnapshot): Promise<void> {
    this.calls.push(`destroy ${snap.id}`);
    this.throwIf('destroy');
    this.stored.delete(snap.id);
  }

  async cleanup(live: ReadonlySet<number>): Promise<CleanupReport> {
    this.calls.push('cleanup');
    const removed: string[] = [];
    if (this.cleanupStall) await this.cleanupStall;
    for (const [id, state] of this.stored) {
      if (state === 'detached' || !live.has(id)) {
        this.stored.delete(id);
        removed.push(`mem:${id}`);
      }
    }
    return { removed };
  }

  async close(): Promise<void> {}

  private throwIf(op: keyof MemoryBackend['failNext']): void {
    const err = this.failNext[op];
    if (err) {
      delete this.failNext[op];
      throw err;
    }
  }
}
