// faults: the fault-point spec parser, and that an unarmed process never dies.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { FAULT_POINTS, faultPoint, faultsArmed, parseFaultSpec } from '../../../src/base/faults.js';
import { Model, Rng } from '../../helpers/model.js';
import { KIND_ACTIVE, KIND_VIEW } from '../../helpers/client.js';

describe('fault points', () => {
  it('parses name@n, bare names and *@n', () => {
    const s = parseFaultSpec('core:commit:after-tx@3, blockfile:base:after-mkfs ,*@7')!;
    expect(s.byName.get('core:commit:after-tx')).toBe(3);
    expect(s.byName.get('blockfile:base:after-mkfs')).toBe(1);
    expect(s.any).toBe(7);
    expect(parseFaultSpec('')).toBeUndefined();
    expect(parseFaultSpec(undefined)).toBeUndefined();
    expect(() => parseFaultSpec('x@0')).toThrow(/bad count/);
  });

  it('is inert when TSBLOCK_FAULT_POINTS is unset', () => {
    expect(faultsArmed()).toBe(process.env.TSBLOCK_FAULT_POINTS !== undefined);
    if (!faultsArmed()) for (const p of FAULT_POINTS) faultPoint(p); // would SIGKILL vitest if armed
  });

  const built = new URL('../../../dist/src/base/faults.js', import.meta.url).pathname;
  it.skipIf(!existsSync(built))(`kills the process with SIGKILL at the selected hit${existsSync(built) ? '' : ' (skipped: needs npm run build)'}`, () => {
    const script = `import('${built}').then((f) => { f.faultPoint('core:commit:after-tx'); console.log('alive'); f.faultPoint('core:commit:after-tx'); console.log('not reached'); })`;
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, TSBLOCK_FAULT_POINTS: 'core:commit:after-tx@2' },
      encoding: 'utf8',
    });
    expect(r.signal).toBe('SIGKILL');
    expect(r.stdout).toBe('alive\n');
  });
});

describe('model', () => {
  it('follows containerd rules', () => {
    const m = new Model();
    expect(m.create(KIND_ACTIVE, 'a', '')).toBe(0);
    expect(m.create(KIND_ACTIVE, 'b', 'a')).toBe(3); // parent not committed
    expect(m.commit('c', 'a')).toBe(0);
    expect(m.create(KIND_VIEW, 'v', 'c')).toBe(0);
    expect(m.commit('x', 'v')).toBe(9);
    expect(m.remove('c')).toBe(9);
    expect(m.remove('v')).toBe(0);
    expect(m.remove('c')).toBe(0);
    expect(m.snaps.size).toBe(0);
  });

  it('replays a seed exactly', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    expect(Array.from({ length: 5 }, () => a.int(1000))).toEqual(Array.from({ length: 5 }, () => b.int(1000)));
  });
});
