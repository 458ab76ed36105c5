// sleep provides a synchronous pause for retry loops inside synchronous
// kernel verbs (detach, unmount), which may run inside a metadata transaction
// and therefore cannot await.

const cell = new Int32Array(new SharedArrayBuffer(4));

/** sleepSync blocks the calling thread for ms milliseconds. */
export function sleepSync(ms: number): void {
  Atomics.wait(cell, 0, 0, ms);
}
