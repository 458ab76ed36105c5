// KeyLock serialises asynchronous operations per key: a Commit's fsync and a
// Remove of the same snapshot never interleave. Different keys run in
// parallel. Waiters are served in arrival order.

/** KeyLock is a map of FIFO async mutexes, created and dropped on demand. */
export class KeyLock {
  private readonly tails = new Map<string, Promise<void>>();

  /** run executes fn once every earlier holder of any of `keys` is done. */
  async run<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const unique = [...new Set(keys)].sort();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const waits = unique.map((k) => this.tails.get(k) ?? Promise.resolve());
    for (const k of unique) this.tails.set(k, mine);
    try {
      await Promise.all(waits);
      return await fn();
    } finally {
      release();
      for (const k of unique) if (this.tails.get(k) === mine) this.tails.delete(k);
    }
  }
}
