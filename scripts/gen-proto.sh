#!/usr/bin/env bash
# gen-proto regenerates src/proto/gen/ (TypeScript types for containerd's
# Snapshots and Diff services) from proto/ with @grpc/proto-loader's
# proto-loader-gen-types. The options must match LOADER_OPTIONS in
# src/proto/load.ts, which decide the shapes proto-loader produces at run
# time. The output is committed; test/unit/proto/gen.test.ts fails when it
# differs from what this script makes. Usage: scripts/gen-proto.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src/proto/gen}"
rm -rf "$out"
node_modules/.bin/proto-loader-gen-types \
  --keepCase --longs=Number --enums=Number --defaults --oneofs \
  --grpcLib=@grpc/grpc-js --importFileExtension=.js \
  -I proto -O "$out" \
  containerd/services/snapshots/v1/snapshots.proto containerd/services/diff/v1/diff.proto >/dev/null
