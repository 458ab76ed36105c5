// heap keeps the daemon's young generation from growing past its start-up
// size. A snapshotter spends almost all its time idle or answering small
// RPCs; its one allocation-heavy call is List (10,000s of Info messages
// through grpc-js/protobufjs). V8 sizes the young generation by survival
// rate: loading the modules already takes it to 2×8 MiB, and a few large
// Lists double it to 2×16 MiB, pages that then stay resident for good
// (+16 MiB RSS with 10,000 snapshots; docs/performance.md, "Daemon memory").
//
// --semi-space-growth-factor is read by V8 each time it considers growing
// the young generation, so setting it to 1 once the daemon listens freezes
// the size start-up reached. Setting it before start-up (or capping the
// semi-space on the command line) was measured too: a 1 MiB semi-space
// makes scavenges so frequent that every RPC got 10-40% slower.

import v8 from 'node:v8';

/** DAEMON_HEAP_FLAGS are the V8 flags the daemon sets for itself once it serves. */
export const DAEMON_HEAP_FLAGS = ['--semi-space-growth-factor=1'] as const;

/**
 * tuneDaemonHeap sets DAEMON_HEAP_FLAGS unless the operator set any of them
 * (on the node command line or in NODE_OPTIONS), which always wins; returns
 * the flags it set. Call it once start-up is done.
 */
export function tuneDaemonHeap(env: NodeJS.ProcessEnv = process.env, execArgv: readonly string[] = process.execArgv): string[] {
  const given = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  const set: string[] = [];
  for (const flag of DAEMON_HEAP_FLAGS) {
    const name = flag.slice(0, flag.indexOf('='));
    const alt = `--${name.slice(2).replace(/-/g, '_')}`; // V8 accepts either spelling
    if (given.some((g) => g.startsWith(name) || g.startsWith(alt))) continue;
    v8.setFlagsFromString(flag);
    set.push(flag);
  }
  return set;
}
