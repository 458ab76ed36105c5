// Wire compatibility of the hand-written proto/ files: every message, field
// (number, name, type, label), enum and RPC must equal containerd's own .proto
// files, from the github.com/containerd/containerd/api module version that
// test/go/ctrd2/go.mod pins (the containerd 2.4 line of test/versions.env).
// The module is located (downloaded when the module cache is cold) with
// `go mod download -json` in test/go/ctrd2. Without Go or the module this is
// skipped with the reason; under CI (CI=true or TSBLOCK_REQUIRE_ALL=1) it fails.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { protoDir } from '../../../src/proto/load.js';

const API_MODULE = 'github.com/containerd/containerd/api';
const ctrd2 = fileURLToPath(new URL('../../go/ctrd2', import.meta.url));
const requireAll = process.env.CI === 'true' || process.env.TSBLOCK_REQUIRE_ALL === '1';

/** upstreamApi finds the api module's directory and version, or why it cannot. */
function upstreamApi(): { dir?: string; version?: string; reason?: string } {
  const go = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/go/bin'].map((d) => join(d, 'go')).find((p) => existsSync(p));
  if (!go) return { reason: 'go is not installed' };
  try {
    // download -json reports Dir (fetching the module when the cache is cold) for the version go.mod requires.
    const out = execFileSync(go, ['mod', 'download', '-json', API_MODULE], { cwd: ctrd2, encoding: 'utf8', timeout: 300_000, stdio: ['ignore', 'pipe', 'pipe'] });
    const m = JSON.parse(out) as { Dir?: string; Version?: string; Error?: string };
    if (m.Error || !m.Dir) return { reason: `go mod download ${API_MODULE}: ${m.Error ?? 'no Dir'}` };
    if (!existsSync(join(m.Dir, 'services/snapshots/v1/snapshots.proto'))) return { reason: `${m.Dir} has no services/snapshots/v1/snapshots.proto` };
    return { dir: m.Dir, version: m.Version };
  } catch (err) {
    return { reason: `go mod download ${API_MODULE} in ${ctrd2} failed: ${(err as Error).message.slice(0, 300)}` };
  }
}

const api = upstreamApi();
if (!api.dir) console.warn(`proto.test: ${requireAll ? 'FAILING (CI)' : 'skipped'}: ${api.reason}`);
const upstream = api.dir ?? '';

/** NEWER_UPSTREAM: what containerd's api (as pinned) declares beyond proto/; see the test below. */
const NEWER_UPSTREAM: string[] = [
  // Diff service options tsblock's applier/differ does not implement (ignored when sent)
  '.containerd.services.diff.v1.ApplyRequest: 4 sync_fs bool repeated=false map=false',
  '.containerd.services.diff.v1.DiffRequest: 6 source_date_epoch .google.protobuf.Timestamp repeated=false map=false',
  // Commit with a parent (containerd 2.x rebase on commit); tsblock ignores it
  '.containerd.services.snapshots.v1.CommitSnapshotRequest: 5 parent string repeated=false map=false',
  // containerd 2.x mount manager types, not used by the snapshots or diff RPCs
  '.containerd.types.ActivationInfo (declared)',
  '.containerd.types.ActivationInfo: 1 name string repeated=false map=false',
  '.containerd.types.ActivationInfo: 2 active .containerd.types.ActiveMount repeated=true map=false',
  '.containerd.types.ActivationInfo: 3 system .containerd.types.Mount repeated=true map=false',
  '.containerd.types.ActivationInfo: 4 labels string repeated=false map=true',
  '.containerd.types.ActiveMount (declared)',
  '.containerd.types.ActiveMount: 1 mount .containerd.types.Mount repeated=false map=false',
  '.containerd.types.ActiveMount: 2 mounted_at .google.protobuf.Timestamp repeated=false map=false',
  '.containerd.types.ActiveMount: 3 mount_point string repeated=false map=false',
  '.containerd.types.ActiveMount: 4 data string repeated=false map=true',
  '.containerd.types.MountCapabilities (declared)',
  '.containerd.types.MountCapabilities: 1 types string repeated=true map=false',
  '.containerd.types.MountCapabilities: 2 transforms string repeated=true map=false',
];

const files: Record<string, string> = {
  'containerd/services/snapshots/v1/snapshots.proto': 'services/snapshots/v1/snapshots.proto',
  'containerd/services/diff/v1/diff.proto': 'services/diff/v1/diff.proto',
  'containerd/types/mount.proto': 'types/mount.proto',
  'containerd/types/descriptor.proto': 'types/descriptor.proto',
};

/** stripGogo removes gogoproto imports and options, which only shape generated Go code. */
function stripGogo(src: string): string {
  return src
    .replace(/import weak "gogoproto\/gogo.proto";/g, '')
    .replace(/\[\s*\(gogoproto[^\]]*\]/g, '')
    .replace(/^\s*option \(gogoproto[^;]*;/gm, '')
    .replace(/^import "(?:github\.com\/containerd\/containerd\/api\/)?(?:types\/)[^"]*";/gm, '');
}

function rootOf(sources: string[]): protobuf.Root {
  const root = new protobuf.Root();
  for (const src of sources) protobuf.parse(src.replace(/^import "[^"]*";/gm, ''), root, { keepCase: true });
  root.resolveAll();
  return root;
}

function describeRoot(root: protobuf.Root): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const walk = (o: protobuf.ReflectionObject): void => {
    if (o instanceof protobuf.Type) {
      out[o.fullName] = Object.values(o.fields)
        .map((f) => `${f.id} ${f.name} ${f.resolvedType?.fullName ?? f.type} repeated=${f.repeated} map=${f.map}`)
        .sort();
    } else if (o instanceof protobuf.Enum) {
      out[o.fullName] = o.values;
    } else if (o instanceof protobuf.Service) {
      out[o.fullName] = Object.values(o.methods)
        .map((m) => `${m.name}(${m.resolvedRequestType?.fullName}) ${m.responseStream ? 'stream ' : ''}${m.resolvedResponseType?.fullName}`)
        .sort();
    }
    if (o instanceof protobuf.Namespace) o.nestedArray.forEach(walk);
  };
  walk(root);
  return out;
}

describe('containerd api module', () => {
  it.skipIf(!requireAll && !api.dir)(`is found for the version test/go/ctrd2 pins${api.dir ? '' : ` (${api.reason})`}`, () => {
    expect(api.reason).toBeUndefined();
    expect(api.version).toMatch(/^v1\./);
  });
});

describe.skipIf(!api.dir)(`proto/ matches containerd's api ${api.version ?? ''} on the wire${api.dir ? '' : ` (skipped: ${api.reason})`}`, () => {
  const wkt = ['empty', 'timestamp', 'field_mask', 'any'].map((n) => readFileSync(join(protoDir(), `google/protobuf/${n}.proto`), 'utf8'));
  const ours = describeRoot(rootOf([...wkt, ...Object.keys(files).map((f) => readFileSync(join(protoDir(), f), 'utf8'))]));
  const theirs = describeRoot(
    rootOf([...wkt, ...Object.values(files).map((f) => stripGogo(readFileSync(join(upstream, f), 'utf8')))]),
  );

  // flat lists every message, field, enum value and RPC as one string each
  const flat = (d: Record<string, unknown>): string[] =>
    Object.entries(d)
      .filter(([k]) => k.startsWith('.containerd.'))
      .flatMap(([k, v]) =>
        Array.isArray(v) ? [`${k} (declared)`, ...v.map((x) => `${k}: ${String(x)}`)] : [`${k} (declared)`, ...Object.entries(v as object).map(([n, x]) => `${k}: ${n}=${String(x)}`)],
      )
      .sort();

  it('declares every type, field and RPC exactly as containerd does', () => {
    const theirsFlat = new Set(flat(theirs));
    expect(theirsFlat.size).toBeGreaterThan(80);
    // nothing in proto/ may differ from containerd's declaration
    expect(flat(ours).filter((x) => !theirsFlat.has(x))).toEqual([]);
  });

  it('lacks only the additions of newer containerd releases it knows of', () => {
    // Fields and types containerd added after 1.6 that proto/ does not carry
    // (protobuf skips unknown fields, so requests that set them still parse).
    // A new pin that adds more fails here until proto/ or this list follows.
    const oursFlat = new Set(flat(ours));
    expect(flat(theirs).filter((x) => !oursFlat.has(x))).toEqual(NEWER_UPSTREAM);
  });

  it('has the field numbers the brief relies on', () => {
    expect(ours['.containerd.services.snapshots.v1.Info']).toContain('4 created_at .google.protobuf.Timestamp repeated=false map=false');
    expect(ours['.containerd.types.Mount']).toContain('4 options string repeated=true map=false');
    expect(ours['.containerd.services.snapshots.v1.Kind']).toEqual({ UNKNOWN: 0, VIEW: 1, ACTIVE: 2, COMMITTED: 3 });
  });
});

describe('well-known types', () => {
  it('google/protobuf files carry the standard field numbers', () => {
    const d = describeRoot(
      rootOf(['empty', 'timestamp', 'field_mask', 'any'].map((n) => readFileSync(join(protoDir(), `google/protobuf/${n}.proto`), 'utf8'))),
    );
    expect(d['.google.protobuf.Timestamp']).toEqual(['1 seconds int64 repeated=false map=false', '2 nanos int32 repeated=false map=false']);
    expect(d['.google.protobuf.FieldMask']).toEqual(['1 paths string repeated=true map=false']);
    expect(d['.google.protobuf.Empty']).toEqual([]);
    expect(d['.google.protobuf.Any']).toEqual(['1 type_url string repeated=false map=false', '2 value bytes repeated=false map=false']);
  });
});
