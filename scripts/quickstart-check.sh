#!/usr/bin/env bash
# quickstart-check.sh: the README's quick start, checked the way a user meets it.
#   1. scripts/up.sh brings tsblock up with its defaults (blockfile, metrics on
#      127.0.0.1:9465), here on a scratch root and socket;
#   2. a private containerd 1.6 gets the README's [proxy_plugins.tsblock] snippet;
#   3. an image is imported with `ctr images import --snapshotter tsblock` and a
#      container started with `ctr run -d --snapshotter tsblock`;
#   4. `tsblock ls`, `tsblock usage` and `curl …/metrics` must show that
#      container's snapshot; then the container and image are removed, GC must
#      leave tsblock empty, and nothing may stay mounted or attached.
# Ends with "N passed, M failed". Needs root. The image (static busybox from
# Debian's busybox-static, /etc/hello) is built offline by the e2e suite's own
# builder, test/e2e/lib/build-image.ts (run with vitest's vite-node: Node 20
# cannot run .ts); nothing outside the checkout is used.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BUILD_IMAGE=(node_modules/.bin/vite-node test/e2e/lib/build-image.ts --)
[ "$(id -u)" = 0 ] || { echo "quickstart-check.sh needs root" >&2; exit 2; }
export PATH=/usr/local/bin:$PATH

W=$(mktemp -d /var/tmp/tsblock-quickstart.XXXXXX)
export TSBLOCK_ROOT=$W/root TSBLOCK_SOCKET=$W/run/tsblock.sock TSBLOCK_LOG=$W/tsblock.log
A=$W/containerd.sock
NS=quickstart
IMG=docker.io/library/tsblock-quickstart:latest
CTR=(ctr --address "$A" --namespace "$NS")
TSB=(node "$REPO/dist/cli.js")
PASSED=0 FAILED=0
pass() { echo "PASS $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $*"; FAILED=$((FAILED + 1)); }
CD_PID=""
cleanup() {
  "${CTR[@]}" tasks kill -s KILL qs-c >/dev/null 2>&1; sleep 0.5
  "${CTR[@]}" tasks rm -f qs-c >/dev/null 2>&1
  "${CTR[@]}" containers rm qs-c >/dev/null 2>&1
  [ -n "$CD_PID" ] && kill "$CD_PID" 2>/dev/null && wait "$CD_PID" 2>/dev/null
  scripts/up.sh --stop >/dev/null 2>&1
  # leaks: anything still mounted or attached under the scratch dir is a failure
  local left
  left=$( (grep -F " $W" /proc/mounts | cut -d' ' -f2; losetup -a 2>/dev/null | grep -F "$W" | cut -d: -f1) | sort -u)
  if [ -n "$left" ]; then
    fail "nothing left mounted or attached under $W: $left"
    for m in $(grep -F " $W" /proc/mounts | cut -d' ' -f2 | sort -r); do umount -l "$m"; done
    for l in $(losetup -a | grep -F "$W" | cut -d: -f1); do losetup -d "$l"; done
  else
    pass "nothing left mounted or attached"
  fi
  rm -rf "$W"
  echo
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}
trap 'cleanup; exit $?' EXIT

# 1. the README's first command
if scripts/up.sh >"$W/up.out" 2>&1; then pass "scripts/up.sh brings tsblock up ($(grep -m1 -o "serving on .*" "$W/up.out"))"
else fail "scripts/up.sh"; cat "$W/up.out"; exit 1; fi

# 2. containerd with the README's snippet
mkdir -p "$W/containerd"
cat >"$W/containerd/config.toml" <<TOML
version = 2
root = "$W/containerd/root"
state = "$W/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$A"
[ttrpc]
  address = "$A.ttrpc"

[proxy_plugins.tsblock]
  type = "snapshot"
  address = "$TSBLOCK_SOCKET"
TOML
setsid containerd --config "$W/containerd/config.toml" >"$W/containerd.log" 2>&1 &
CD_PID=$!
for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
# Output is captured before it is matched: under pipefail, `ctr … | grep -q` fails
# whenever grep exits at its match while ctr is still writing the rows after it
# (ctr's table is ~450 small writes), and CI's loaded machine hit exactly that.
plugins=$("${CTR[@]}" plugins ls 2>&1)
if grep -Eq 'io.containerd.snapshotter.v1 +tsblock +- +ok' <<<"$plugins"; then pass "ctr plugins ls: tsblock ok"
else fail "ctr plugins ls shows tsblock ok"; echo "$plugins"; tail -20 "$W/containerd.log"; exit 1; fi

# 3. an image and a running container on tsblock
# (node_modules comes with up.sh's build, so the builder runs after step 1)
if ! "${BUILD_IMAGE[@]}" hello --busybox /bin/busybox --ref "$IMG" --out "$W/hello.tar" >"$W/build-image.out" 2>&1; then
  fail "build the quick-start image (test/e2e/lib/build-image.ts)"; cat "$W/build-image.out"; exit 1
fi
if "${CTR[@]}" images import --snapshotter tsblock "$W/hello.tar" >/dev/null; then pass "ctr images import --snapshotter tsblock"
else fail "ctr images import"; exit 1; fi
if "${CTR[@]}" run -d --snapshotter tsblock "$IMG" qs-c /bin/sleep 600 >/dev/null; then pass "ctr run -d --snapshotter tsblock"
else fail "ctr run -d"; exit 1; fi
root_mount=$("${CTR[@]}" tasks exec --exec-id m1 qs-c /bin/head -1 /proc/mounts 2>/dev/null)
case $root_mount in "/dev/loop"*" / ext4 "*) pass "the container's root is ext4 on a loop device ($root_mount)" ;; *) fail "container root is an ext4 block device (got: $root_mount)" ;; esac

# 4. tsblock ls / usage / metrics show that container's snapshot
key=$("${TSB[@]}" ls --json | node -e 'const l=JSON.parse(require("fs").readFileSync(0,"utf8"));const e=l.find(x=>x.kind==="active"&&x.key.endsWith("/qs-c"));if(e)console.log(e.key)')
if [ -n "$key" ]; then pass "tsblock ls shows the container's active snapshot ($key)"; else fail "tsblock ls shows the container's snapshot"; "${TSB[@]}" ls; fi
if grep -Fq "$key" <<<"$("${TSB[@]}" ls)"; then pass "tsblock ls (table) lists it"; else fail "tsblock ls (table) lists it"; fi
if "${TSB[@]}" usage --json | node -e 'const u=JSON.parse(require("fs").readFileSync(0,"utf8"))[0];process.exit(u.snapshots.some(s=>s.key===process.argv[1])&&u.totalBytes>0?0:1)' "$key"; then
  pass "tsblock usage reports it"
else fail "tsblock usage reports it"; "${TSB[@]}" usage; fi
metrics=$(curl -sf 127.0.0.1:9465/metrics)
if grep -Eq '^tsblock_snapshots\{snapshotter="tsblock",kind="active"\} 1$' <<<"$metrics" \
  && grep -Fq "tsblock_snapshot_usage_bytes{snapshotter=\"tsblock\",key=\"$key\",kind=\"active\"}" <<<"$metrics"; then
  pass "curl 127.0.0.1:9465/metrics shows it"
else
  fail "metrics show the container's snapshot"; grep -E '^tsblock_snapshot' <<<"$metrics" | head
fi

# and the way out: containerd's GC empties tsblock
"${CTR[@]}" tasks kill -s KILL qs-c >/dev/null 2>&1
for _ in $(seq 1 50); do grep -qx qs-c <<<"$("${CTR[@]}" tasks ls -q)" || break; "${CTR[@]}" tasks rm -f qs-c >/dev/null 2>&1; sleep 0.2; done
"${CTR[@]}" containers rm qs-c >/dev/null 2>&1
"${CTR[@]}" images rm --sync "$IMG" >/dev/null 2>&1
left=$("${TSB[@]}" ls --json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0,"utf8")).length)')
if [ "$left" = 0 ]; then pass "container and image removal leave tsblock empty"; else fail "tsblock empty after removal ($left left)"; "${TSB[@]}" ls; fi
