#!/bin/bash
# bench-devmapper.sh: one Prepare-with-parent and one Commit through gRPC,
# tsblock devmapper next to containerd 1.6's own devmapper snapshotter,
# measured the same way (vm-tests/bench-client.mjs) in the same machine.
#
#   vm-tests/bench-devmapper.sh [--iterations N] [--warmup N] [--pause MS] [--out FILE]
#
# Where device-mapper is missing (this dev host, CI) it re-runs itself in a
# vm-tests/run-in-vm.sh guest; inside a VM (or a Vagrant box) it runs
# directly. Needs root, containerd 1.6 (Debian package), dmsetup, node.
#
# Setup: tsblock serves `--backend devmapper` on its owned loop-backed pool
# under a temp root, twice: as configured by default (warm spares on: a
# parent that keeps getting children has a ready-made snapshot to hand
# over, src/backends/devmapper/spares.ts) and with TSBLOCK_DM_WARM_SPARES=0
# (every Prepare does create_snap + activation: the cold path).
# TSBLOCK_BENCH_BEFORE_CLI=<other checkout>/dist/cli.js adds a third row,
# "tsblock-devmapper-before", served by that build (before/after, same run).
# TSBLOCK_BENCH_CPU_PROF=<dir in the checkout> runs each tsblock server with
# node --cpu-prof into <dir>/<label>/ (a profile of where a Prepare goes).
# A private containerd (own root/state/socket, CRI off) gets its devmapper
# snapshotter on a pool made here from two sparse loop files (dmsetup
# create ... thin-pool, 64 KiB blocks, block zeroing off; tsblock's owned pool
# zeroes partly written new blocks, which costs nothing here: nothing is
# written).
# All get the same client: Prepare(key, parent=<committed one-layer
# snapshot>) then Commit, each timed alone, N iterations (default 20) after
# --warmup N untimed rounds (default 1); nothing is mounted. --pause MS (default 0: back to back) waits
# that long, untimed, before each iteration, for every row alike: a
# Prepare on an idle snapshotter, as a kubelet's are (pulls, mounts and VM
# boots run between them), where back to back the work a call leaves
# behind (tsblock's spare refill, containerd's GC) competes with the next.
#
# Output: FILE (default bench-results/devmapper-vm.json in the checkout) holds
#   {
#     "when": ISO time, "machine": "run-in-vm (qemu TCG)" | "native",
#     "kernel": uname -r, "iterations": N,
#     "hostLoad": /proc/loadavg of the machine that started the run,
#     "results": [
#       { "label": "tsblock-devmapper" | "tsblock-devmapper-nospare" |
#                  "tsblock-devmapper-before" | "containerd-devmapper",
#         "snapshotter": name sent in requests, "iterations": N,
#         "prepareWithParentMs": { "n", "p50", "p99", "min", "max", "mean" },
#         "commitMs":            { "n", "p50", "p99", "min", "max", "mean" },
#         "statMs":              { ... }  (Stat of the parent: one RPC's floor),
#         "rawMs": { "prepare": [...], "commit": [...] } },
#       ... ],
#     "ratios": { "<tsblock label>": { "prepare": containerd p50 / its p50, "commit": … } },
#     "errors": { label: message }   (only for a side that could not run)
#   }
# FILE with .md instead of .json gets the same table in Markdown, and
# stdout ends with it. Exit 0 when every side ran.
set -uo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(dirname "$HERE")
ITER=20
PAUSE=0
WARMUP=1
OUTF=$REPO/bench-results/devmapper-vm.json
while [ $# -gt 0 ]; do
  case $1 in
    --iterations) ITER=$2; shift 2 ;;
    --pause) PAUSE=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --out) OUTF=$2; shift 2 ;;
    -h|--help) sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-devmapper.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case $OUTF in /*) ;; *) OUTF=$PWD/$OUTF ;; esac
[ "$(id -u)" = 0 ] || { echo "bench-devmapper.sh: must run as root" >&2; exit 2; }

# No usable device-mapper here: run in the project's qemu guest (the
# checkout, where the JSON lands, is shared read-write).
if ! dmsetup version >/dev/null 2>&1; then
  [ -z "${TSBLOCK_IN_VM:-}" ] || { echo "bench-devmapper.sh: no device-mapper even in the VM" >&2; exit 1; }
  mkdir -p "$(dirname "$OUTF")"
  case $OUTF in "$REPO"/*) ;; *) echo "bench-devmapper.sh: --out must be inside $REPO when a VM is used" >&2; exit 2 ;; esac
  # the guest cannot see how busy the host is: the timings depend on it
  TSBLOCK_BENCH_HOST_LOAD=$(cat /proc/loadavg) && export TSBLOCK_BENCH_HOST_LOAD
  exec "$HERE/run-in-vm.sh" --cwd "$REPO" --timeout 1800 -- "$HERE/bench-devmapper.sh" --iterations "$ITER" --warmup "$WARMUP" --pause "$PAUSE" --out "$OUTF"
fi
[ -f "$REPO/dist/cli.js" ] || { echo "bench-devmapper.sh: dist/cli.js missing (npm run build)" >&2; exit 1; }
export DM_DISABLE_UDEV=1

W=$(mktemp -d /var/tmp/tsblock-bench-dm.XXXXXX)
POOL=tsbench-ctrd-pool-$$
TSB_PID= CTRD_PID=
cleanup() {
  [ -z "$TSB_PID" ] || { kill -TERM "$TSB_PID" 2>/dev/null; wait "$TSB_PID" 2>/dev/null; }
  [ -z "$CTRD_PID" ] || { kill -TERM "$CTRD_PID" 2>/dev/null; wait "$CTRD_PID" 2>/dev/null; }
  # containerd's devmapper leaves its thin devices active: remove them, then its pool
  for d in $(dmsetup ls 2>/dev/null | awk -v p="$POOL" '$1 ~ "^"p"-snap-" {print $1}'); do dmsetup remove --retry "$d" >/dev/null 2>&1; done
  dmsetup remove --retry "$POOL" >/dev/null 2>&1
  for l in $(losetup -j "$W/ctrd-data" -O NAME -n 2>/dev/null) $(losetup -j "$W/ctrd-meta" -O NAME -n 2>/dev/null); do losetup -d "$l"; done
  rm -rf "$W"
}
trap cleanup EXIT

wait_sock() { # socket, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do [ -S "$1" ] && return 0; sleep 0.1; done
  return 1
}
declare -A ERR=()
RESULTS=()

# ---- tsblock devmapper (owned pool on loop files, the default) ----
run_tsblock() { # label, warm spares (empty = default), cli
  local label=$1 spares=$2 cli=${3:-$REPO/dist/cli.js} r
  rm -rf "$W/tsb" "$W/tsb.sock"
  local prof=()
  [ -z "${TSBLOCK_BENCH_CPU_PROF:-}" ] || prof=(--cpu-prof --cpu-prof-dir="$TSBLOCK_BENCH_CPU_PROF/$label")
  TSBLOCK_DM_WARM_SPARES=$spares node "${prof[@]}" "$cli" serve --backend devmapper --root "$W/tsb" --socket "$W/tsb.sock" \
    --data-size 2G --base-size 64M --log-level warn >"$W/$label.log" 2>&1 &
  TSB_PID=$!
  if wait_sock "$W/tsb.sock" 180 && r=$(node "$HERE/bench-client.mjs" --socket "$W/tsb.sock" --snapshotter tsblock \
      --namespace bench --iterations "$ITER" --warmup "$WARMUP" --pause "$PAUSE" --label "$label" 2>"$W/$label-client.err"); then
    RESULTS+=("$r")
  else
    ERR[$label]="$(head -2 "$W/$label-client.err" 2>/dev/null | tr '\n' ' ')"
  fi
  kill -TERM "$TSB_PID" 2>/dev/null; wait "$TSB_PID" 2>/dev/null; TSB_PID=
}
run_tsblock tsblock-devmapper ""
run_tsblock tsblock-devmapper-nospare 0
# another build (e.g. the commit before a change), same run: TSBLOCK_BENCH_BEFORE_CLI=<checkout>/dist/cli.js
[ -z "${TSBLOCK_BENCH_BEFORE_CLI:-}" ] || run_tsblock tsblock-devmapper-before "" "$TSBLOCK_BENCH_BEFORE_CLI"

# ---- containerd 1.6 devmapper on a pool made here ----
truncate -s 2G "$W/ctrd-data"; truncate -s 256M "$W/ctrd-meta"
dd if=/dev/zero of="$W/ctrd-meta" bs=4096 count=1 conv=notrunc status=none
DATA_DEV=$(losetup -f --show "$W/ctrd-data"); META_DEV=$(losetup -f --show "$W/ctrd-meta")
SECTORS=$(($(blockdev --getsize64 "$DATA_DEV") / 512))
dmsetup create "$POOL" --table "0 $SECTORS thin-pool $META_DEV $DATA_DEV 128 32768 1 skip_block_zeroing"
mkdir -p "$W/ctrd"
cat >"$W/ctrd/config.toml" <<EOF
version = 2
root = "$W/ctrd/root"
state = "$W/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/ctrd.sock"
[ttrpc]
  address = "$W/ctrd.sock.ttrpc"
[plugins."io.containerd.snapshotter.v1.devmapper"]
  root_path = "$W/ctrd/devmapper"
  pool_name = "$POOL"
  base_image_size = "64MB"
  discard_blocks = false
EOF
containerd --config "$W/ctrd/config.toml" >"$W/ctrd.log" 2>&1 &
CTRD_PID=$!
if wait_sock "$W/ctrd.sock" 120 && r=$(node "$HERE/bench-client.mjs" --socket "$W/ctrd.sock" --snapshotter devmapper \
    --namespace bench --iterations "$ITER" --warmup "$WARMUP" --pause "$PAUSE" --label containerd-devmapper 2>"$W/ctrd-client.err"); then
  RESULTS+=("$r")
else
  ERR[containerd-devmapper]="$(head -2 "$W/ctrd-client.err" | tr '\n' ' ')"
fi

# ---- JSON + table (server logs kept beside the JSON) ----
mkdir -p "$(dirname "$OUTF")" "${OUTF%.json}-logs"
cp "$W"/*.log "$W"/*.err "${OUTF%.json}-logs/" 2>/dev/null
errs=$(for k in "${!ERR[@]}"; do printf '%s\0%s\0' "$k" "${ERR[$k]}"; done | base64 -w0)
printf '%s\n' "${RESULTS[@]}" | node -e '
  const fs = require("fs");
  const [out, iter, errs, pauseArg, warmup] = process.argv.slice(1);
  const pause = Number(pauseArg);
  const lines = fs.readFileSync(0, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const e = Buffer.from(errs, "base64").toString().split("\0"); const errors = {};
  for (let i = 0; i + 1 < e.length; i += 2) errors[e[i]] = e[i + 1];
  const ctrd = lines.find((r) => r.label === "containerd-devmapper");
  const ratios = {};
  const r2 = (x) => Math.round(x * 100) / 100;
  if (ctrd) for (const r of lines) if (r !== ctrd) ratios[r.label] = { prepare: r2(ctrd.prepareWithParentMs.p50 / r.prepareWithParentMs.p50), commit: r2(ctrd.commitMs.p50 / r.commitMs.p50) };
  const doc = { when: new Date().toISOString(), machine: process.env.TSBLOCK_IN_VM ? "run-in-vm (qemu TCG)" : "native",
    kernel: require("os").release(), iterations: Number(iter), warmup: Number(warmup), pauseMs: pause, hostLoad: process.env.TSBLOCK_BENCH_HOST_LOAD ?? null,
    results: lines, ratios, ...(Object.keys(errors).length ? { errors } : {}) };
  fs.writeFileSync(out, JSON.stringify(doc, null, 2) + "\n");
  const md = [`Run ${doc.when}, ${doc.machine}, kernel ${doc.kernel}, ${iter} iterations after ${warmup} warm-up, ${pause > 0 ? `${pause} ms idle before each` : "back to back"}, host load ${doc.hostLoad ?? "?"} (ms; ratio = containerd p50 / this p50)`, "",
    "| snapshotter | Prepare p50 | p99 | Commit p50 | p99 | Stat p50 | Prepare ratio | Commit ratio |", "| --- | --- | --- | --- | --- | --- | --- | --- |"];
  for (const r of lines) md.push(`| ${r.label} | ${r.prepareWithParentMs.p50} | ${r.prepareWithParentMs.p99} | ${r.commitMs.p50} | ${r.commitMs.p99} | ${r.statMs?.p50 ?? ""} | ${ratios[r.label]?.prepare ?? ""} | ${ratios[r.label]?.commit ?? ""} |`);
  for (const [k, v] of Object.entries(errors)) md.push(`| ${k} | FAILED: ${v} | | | | | | |`);
  fs.writeFileSync(out.replace(/\.json$/, "") + ".md", md.join("\n") + "\n");
  console.log("\n" + md.join("\n"));
  console.log(`JSON: ${out}`);
' "$OUTF" "$ITER" "$errs" "$PAUSE" "$WARMUP"
[ ${#ERR[@]} = 0 ]
