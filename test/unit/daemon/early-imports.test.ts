// What a restarting daemon loads before its socket answers decides how soon
// containerd's handshake is answered (containerd 1.6 gives it ~1 s,
// docs/reliability.md). `tsblock serve`'s modules up to listening — the CLI
// verb, daemon/run and daemon/serve — must not load the protos' parser
// (protobufjs, proto-loader), the store (SQLite), FFI, metrics or the OCI
// code: those are imported after the socket answers. Loaded in a fresh
// process (vite-node), then Node's module cache is read.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';

const REPO = resolve(import.meta.dirname, '../../..');

describe('serve before listening', () => {
  it('loads grpc-js but not protobufjs, proto-loader, better-sqlite3, ffi-rs, prom-client, tar-stream or zstd', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsblock-early-imports-'));
    try {
      const script = join(dir, 'probe.ts');
      writeFileSync(
        script,
        [
          `import { createRequire } from 'node:module';`,
          `await import(${JSON.stringify(join(REPO, 'src/cli/commands/serve.ts'))});`,
          `await import(${JSON.stringify(join(REPO, 'src/daemon/serve.ts'))});`,
          `await import(${JSON.stringify(join(REPO, 'src/daemon/run.ts'))});`,
          `const pkgs = new Set(Object.keys(createRequire(import.meta.url).cache).map((f) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(f)?.[1]).filter(Boolean));`,
          `console.log(JSON.stringify([...pkgs].sort()));`,
        ].join('\n'),
      );
      const out = execFileSync(join(REPO, 'node_modules/.bin/vite-node'), [script], { cwd: REPO, encoding: 'utf8' });
      const pkgs = JSON.parse(out.trim().split('\n').pop()!) as string[];
      expect(pkgs).toContain('@grpc/grpc-js');
      for (const late of ['protobufjs', '@grpc/proto-loader', 'better-sqlite3', 'ffi-rs', 'prom-client', 'tar-stream', 'zstd-napi']) expect(pkgs, late).not.toContain(late);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
