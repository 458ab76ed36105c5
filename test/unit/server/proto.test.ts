// Wire compatibility of the hand-written proto/ files: every message, field
// (number, name, type, label), enum and RPC must equal containerd 1.6's own
// .proto files. Those come with Debian's golang-github-containerd-containerd-dev
// (installed by shared/tools/conformance/build.sh); without them this is skipped.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { protoDir } from '../../../src/server/service.js';

const upstream = '/usr/share/gocode/src/github.com/containerd/containerd';
const haveUpstream = existsSync(join(upstream, 'api/services/snapshots/v1/snapshots.proto'));
if (!haveUpstream) console.warn(`proto.test: skipped, containerd 1.6 sources not found under ${upstream}`);

const files: Record<string, string> = {
  'containerd/services/snapshots/v1/snapshots.proto': 'api/services/snapshots/v1/snapshots.proto',
  'containerd/services/diff/v1/diff.proto': 'api/services/diff/v1/diff.proto',
  'containerd/types/mount.proto': 'api/types/mount.proto',
  'containerd/types/descriptor.proto': 'api/types/descriptor.proto',
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

describe.skipIf(!haveUpstream)('proto/ matches containerd 1.6 on the wire (needs containerd sources)', () => {
  const wkt = ['empty', 'timestamp', 'field_mask', 'any'].map((n) => readFileSync(join(protoDir(), `google/protobuf/${n}.proto`), 'utf8'));
  const ours = describeRoot(rootOf([...wkt, ...Object.keys(files).map((f) => readFileSync(join(protoDir(), f), 'utf8'))]));
  const theirs = describeRoot(
    rootOf([...wkt, ...Object.values(files).map((f) => stripGogo(readFileSync(join(upstream, f), 'utf8')))]),
  );

  it('declares the same containerd types, fields and RPCs', () => {
    const containerdOnly = (d: Record<string, unknown>) =>
      Object.fromEntries(Object.entries(d).filter(([k]) => k.startsWith('.containerd.')));
    expect(Object.keys(containerdOnly(theirs)).length).toBeGreaterThan(25);
    expect(containerdOnly(ours)).toEqual(containerdOnly(theirs));
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
