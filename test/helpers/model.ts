// model is an in-memory statement of containerd's snapshotter rules: what
// each request must answer (a gRPC status code) and how the set of snapshots
// changes. The fuzz and crash tests run the same requests against a real
// server and this model and compare after every step, so any divergence
// (a wrong code, a half-applied change, a lost snapshot) fails the test.

import { status } from '@grpc/grpc-js';
import { KIND_ACTIVE, KIND_COMMITTED, KIND_VIEW, type InfoMsg } from './client.js';

/** ModelKind is a snapshot's kind as the proto numbers it. */
export type ModelKind = typeof KIND_VIEW | typeof KIND_ACTIVE | typeof KIND_COMMITTED;

/** ModelSnap is what the model knows about one snapshot. */
export interface ModelSnap {
  kind: ModelKind;
  parent: string;
  labels: Record<string, string>;
  /** markers are the marker files its filesystem must hold (crash test). */
  markers: string[];
}

/** Outcome is the code a request must get (status.OK when it succeeds). */
export type Outcome = status;

/** Model is the expected state: key → snapshot. */
export class Model {
  readonly snaps = new Map<string, ModelSnap>();

  /** clone copies the model (the crash test keeps "before" and "after" of an uncertain request). */
  clone(): Model {
    const m = new Model();
    for (const [k, v] of this.snaps) m.snaps.set(k, { ...v, labels: { ...v.labels }, markers: [...v.markers] });
    return m;
  }

  hasChildren(key: string): boolean {
    for (const s of this.snaps.values()) if (s.parent === key) return true;
    return false;
  }

  /** create applies Prepare (active) or View; the code is what the server must answer. */
  create(kind: typeof KIND_ACTIVE | typeof KIND_VIEW, key: string, parent: string, labels: Record<string, string> = {}): Outcome {
    if (this.snaps.has(key)) return status.ALREADY_EXISTS;
    let markers: string[] = [];
    if (parent !== '') {
      const p = this.snaps.get(parent);
      if (!p) return status.NOT_FOUND;
      if (p.kind !== KIND_COMMITTED) return status.INVALID_ARGUMENT;
      markers = [...p.markers];
    }
    this.snaps.set(key, { kind, parent, labels: { ...labels }, markers });
    return status.OK;
  }

  /** commit applies Commit(name, key). */
  commit(name: string, key: string, labels: Record<string, string> = {}): Outcome {
    const s = this.snaps.get(key);
    if (!s) return status.NOT_FOUND;
    if (s.kind !== KIND_ACTIVE) return status.FAILED_PRECONDITION;
    if (this.snaps.has(name)) return status.ALREADY_EXISTS;
    this.snaps.delete(key);
    this.snaps.set(name, { kind: KIND_COMMITTED, parent: s.parent, labels: { ...labels }, markers: s.markers });
    return status.OK;
  }

  /** remove applies Remove(key). */
  remove(key: string): Outcome {
    if (!this.snaps.has(key)) return status.NOT_FOUND;
    if (this.hasChildren(key)) return status.FAILED_PRECONDITION;
    this.snaps.delete(key);
    return status.OK;
  }

  /** stat is the code Stat(key) must get. */
  stat(key: string): Outcome {
    return this.snaps.has(key) ? status.OK : status.NOT_FOUND;
  }

  /** mounts is the code Mounts(key) must get. */
  mounts(key: string): Outcome {
    const s = this.snaps.get(key);
    if (!s) return status.NOT_FOUND;
    return s.kind === KIND_COMMITTED ? status.FAILED_PRECONDITION : status.OK;
  }

  /** updateLabels applies Update with paths ["labels.<k>"…] (empty value deletes). */
  updateLabels(key: string, labels: Record<string, string>, paths: string[]): Outcome {
    const s = this.snaps.get(key);
    if (!s) return status.NOT_FOUND;
    const next = paths.length === 0 ? { ...labels } : { ...s.labels };
    for (const p of paths) {
      if (!p.startsWith('labels.')) return status.INVALID_ARGUMENT;
      next[p.slice(7)] = labels[p.slice(7)] ?? '';
    }
    for (const [k, v] of Object.entries(next)) if (v === '') delete next[k];
    s.labels = next;
    return status.OK;
  }

  /** diff lists differences between the model and a List result (empty = equal). */
  diff(listed: InfoMsg[]): string[] {
    const out: string[] = [];
    const seen = new Set<string>();
    for (const info of listed) {
      seen.add(info.name);
      const s = this.snaps.get(info.name);
      if (!s) {
        out.push(`unexpected snapshot ${JSON.stringify(info.name)} (kind ${info.kind})`);
        continue;
      }
      if (s.kind !== Number(info.kind)) out.push(`${info.name}: kind ${info.kind}, expected ${s.kind}`);
      if (s.parent !== info.parent) out.push(`${info.name}: parent ${JSON.stringify(info.parent)}, expected ${JSON.stringify(s.parent)}`);
      const a = JSON.stringify(sorted(info.labels ?? {}));
      const b = JSON.stringify(sorted(s.labels));
      if (a !== b) out.push(`${info.name}: labels ${a}, expected ${b}`);
    }
    for (const k of this.snaps.keys()) if (!seen.has(k)) out.push(`missing snapshot ${JSON.stringify(k)}`);
    return out;
  }

  /** keys lists keys of one kind (all kinds when undefined). */
  keys(kind?: ModelKind): string[] {
    return [...this.snaps].filter(([, s]) => kind === undefined || s.kind === kind).map(([k]) => k);
  }

  /** leaves lists keys without children. */
  leaves(): string[] {
    return this.keys().filter((k) => !this.hasChildren(k));
  }
}

function sorted(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Rng is a small seeded PRNG (mulberry32): a failing run is replayed from its seed. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}
