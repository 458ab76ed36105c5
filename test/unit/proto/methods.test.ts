// The method tables the daemon registers its services from before the protos
// load (proto/methods.ts) are the services proto/load.ts parses, and a
// LazyService built from them refuses a parsed definition that differs.

import { describe, expect, it } from 'vitest';
import { DIFF_METHODS, SNAPSHOTS_METHODS } from '../../../src/proto/methods.js';
import { loadDiffService, loadSnapshotsService } from '../../../src/proto/load.js';
import { LazyService } from '../../../src/server/gated.js';

const shapes = (d: object) =>
  Object.fromEntries(Object.entries(d as Record<string, { path: string; requestStream: boolean; responseStream: boolean; originalName?: string }>).map(([n, m]) => [n, { path: m.path, requestStream: m.requestStream, responseStream: m.responseStream, originalName: m.originalName }]));

describe('proto/methods', () => {
  it('SNAPSHOTS_METHODS are the parsed Snapshots service', () => {
    expect(shapes(SNAPSHOTS_METHODS)).toEqual(shapes(loadSnapshotsService()));
  });

  it('DIFF_METHODS are the parsed Diff service', () => {
    expect(shapes(DIFF_METHODS)).toEqual(shapes(loadDiffService()));
  });

  it('a LazyService holds requests as bytes and decodes them with the loaded definition', () => {
    const svc = new LazyService(SNAPSHOTS_METHODS);
    const real = loadSnapshotsService();
    const bytes = real.Stat.requestSerialize({ key: 'k1' });
    expect(svc.definition.Stat!.requestDeserialize(bytes)).toBe(bytes);
    expect(() => svc.decode('Stat', bytes)).toThrow(/not loaded/);
    expect(() => svc.definition.Stat!.responseSerialize({})).toThrow(/not loaded/);
    svc.load(real);
    expect(svc.decode('Stat', bytes)).toMatchObject({ key: 'k1' });
    const info = { info: { name: 'k1', parent: '', kind: 3 as const, labels: {} } };
    expect(svc.definition.Stat!.responseSerialize(info)).toEqual(real.Stat.responseSerialize(info));
  });

  it('a LazyService refuses a parsed definition with other methods', () => {
    expect(() => new LazyService(SNAPSHOTS_METHODS).load(loadDiffService())).toThrow(/differs from its method table/);
    const { List: _list, ...fewer } = SNAPSHOTS_METHODS;
    expect(() => new LazyService(fewer).load(loadSnapshotsService())).toThrow(/differs/);
  });
});
