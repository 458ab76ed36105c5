// Gate lets many operations that change storage run together (shared) and
// one sweep run alone (exclusive). Cleanup reads the set of live snapshot ids
// and then removes whatever storage is not in it; a Prepare that inserted a
// row and made its image or thin volume after that read would be swept as an
// orphan. Under the gate a sweep waits for in-flight creates, commits and
// removes to finish, and new ones wait for the sweep. Reads (Stat, List,
// Mounts, Usage) never take it.

/** Gate is a writer-preferring shared/exclusive async lock. */
export class Gate {
  private holders = 0;
  private sweep: Promise<void> | undefined;
  private drained: (() => void) | undefined;

  /** shared runs fn alongside other shared holders, never during exclusive(). */
  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.sweep) await this.sweep;
    this.holders++;
    try {
      return await fn();
    } finally {
      this.holders--;
      if (this.holders === 0) this.drained?.();
    }
  }

  /** exclusive waits for every shared holder to finish, then runs fn alone. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.sweep) await this.sweep;
    let release!: () => void;
    this.sweep = new Promise<void>((resolve) => (release = resolve));
    try {
      if (this.holders > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      return await fn();
    } finally {
      this.drained = undefined;
      this.sweep = undefined;
      release();
    }
  }
}
