// helpers for CLI and daemon integration tests: a captured Io, a logger that
// records JSON lines, a gRPC client, and a small Prometheus text parser.

import { pino, type Logger } from 'pino';
import type { Io } from '../../../src/cli/common.js';
import { dial, unaryCall, type SnapshotsClient } from '../../../src/cli/common.js';

/** Captured is an Io whose output tests read back. */
export interface Captured {
  io: Io;
  out(): string;
  err(): string;
}

/** capture returns an Io writing into strings; env is empty so the host's TSBLOCK_* never leak in. */
export function capture(tty = false, env: NodeJS.ProcessEnv = {}): Captured {
  let out = '';
  let err = '';
  return { io: { out: (s) => void (out += s), err: (s) => void (err += s), tty, env }, out: () => out, err: () => err };
}

/** recordingLogger returns a pino logger whose records land in `lines`. */
export function recordingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** Client is a tiny typed façade over the Snapshots gRPC client. */
export class Client {
  readonly raw: SnapshotsClient;
  constructor(socket: string, private readonly snapshotter = 'tsblock') {
    this.raw = dial(socket);
  }
  prepare(key: string, parent = '', labels: Record<string, string> = {}) {
    return unaryCall<{ mounts: { type: string; source: string; options: string[] }[] }>(this.raw, 'Prepare', { snapshotter: this.snapshotter, key, parent, labels });
  }
  view(key: string, parent: string) {
    return unaryCall<{ mounts: { type: string; source: string; options: string[] }[] }>(this.raw, 'View', { snapshotter: this.snapshotter, key, parent });
  }
  commit(name: string, key: string, labels: Record<string, string> = {}) {
    return unaryCall(this.raw, 'Commit', { snapshotter: this.snapshotter, name, key, labels });
  }
  remove(key: string) {
    return unaryCall(this.raw, 'Remove', { snapshotter: this.snapshotter, key });
  }
  stat(key: string) {
    return unaryCall(this.raw, 'Stat', { snapshotter: this.snapshotter, key });
  }
  close(): void {
    this.raw.close();
  }
}

/** Sample is one parsed Prometheus sample. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** parseProm parses the Prometheus text exposition format (enough for tests: no escapes in label values beyond \\" and \\\\). */
export function parseProm(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name!, type!);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (let l = re.exec(m[3] ?? ''); l; l = re.exec(m[3] ?? '')) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return { samples, types };
}

/** sample finds one sample by name and a subset of labels. */
export function sample(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}
