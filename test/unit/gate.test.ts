// Gate: shared holders overlap, an exclusive holder runs alone, and new
// shared holders wait behind a waiting exclusive one (no starvation of sweeps).

import { describe, expect, it } from 'vitest';
import { Gate } from '../../src/core/gate.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('Gate', () => {
  it('lets shared holders overlap', async () => {
    const gate = new Gate();
    const d = deferred();
    let running = 0;
    let peak = 0;
    const op = () =>
      gate.shared(async () => {
        running++;
        peak = Math.max(peak, running);
        await d.promise;
        running--;
      });
    const all = Promise.all([op(), op(), op()]);
    await tick();
    expect(peak).toBe(3);
    d.resolve();
    await all;
  });

  it('runs exclusive only once shared holders are done, and holds new ones back', async () => {
    const gate = new Gate();
    const events: string[] = [];
    const first = deferred();
    const a = gate.shared(async () => {
      events.push('a start');
      await first.promise;
      events.push('a end');
    });
    await tick();
    const sweep = gate.exclusive(async () => {
      events.push('sweep');
      await tick();
      events.push('sweep end');
    });
    await tick();
    const b = gate.shared(async () => void events.push('b'));
    await tick();
    expect(events).toEqual(['a start']);
    first.resolve();
    await Promise.all([a, sweep, b]);
    expect(events).toEqual(['a start', 'a end', 'sweep', 'sweep end', 'b']);
  });

  it('releases the gate when a holder throws', async () => {
    const gate = new Gate();
    await expect(gate.shared(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(gate.exclusive(async () => Promise.reject(new Error('sweep failed')))).rejects.toThrow('sweep failed');
    expect(await gate.exclusive(async () => 'ok')).toBe('ok');
    expect(await gate.shared(async () => 'ok')).toBe('ok');
  });
});
