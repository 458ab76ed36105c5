import { describe, expect, it } from 'vitest';
import { DAEMON_HEAP_FLAGS, tuneDaemonHeap } from '../../../src/daemon/heap.js';

describe('tuneDaemonHeap', () => {
  it('sets the daemon heap flags when the operator gave none', () => {
    expect(tuneDaemonHeap({}, [])).toEqual([...DAEMON_HEAP_FLAGS]);
  });
  it('leaves a flag the operator set on the command line or in NODE_OPTIONS alone', () => {
    expect(tuneDaemonHeap({}, ['--semi-space-growth-factor=4'])).toEqual([]);
    expect(tuneDaemonHeap({ NODE_OPTIONS: '--max-old-space-size=512 --semi_space_growth_factor=2' }, [])).toEqual([]);
    expect(tuneDaemonHeap({ NODE_OPTIONS: '--max-old-space-size=512' }, ['--inspect'])).toEqual([...DAEMON_HEAP_FLAGS]);
  });
});
