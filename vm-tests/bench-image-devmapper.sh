#!/bin/bash
# bench-image-devmapper.sh: the real-image benchmark on device-mapper
# (test/bench/image-devmapper.mjs: pull, `ctr run --rm … true`, N starts at
# once and GC through containerd 1.6, tsblock devmapper against containerd's
# devmapper snapshotter, interleaved), in the qemu guest where the host has
# no device-mapper, and optionally vm-tests/bench-devmapper.sh in the same
# guest session (Prepare+Commit: back to back and paced; each run also gives
# the cold path, TSBLOCK_DM_WARM_SPARES=0).
#
#   vm-tests/bench-image-devmapper.sh [--rounds N] [--starts N] [--full] [--base-size SIZE] [--prepare]
#        [--iterations N] [--pause MS] [--mem MB] [--out DIR]
#
# --prepare adds the bench-devmapper.sh runs (--iterations, default 20;
# --pause, default 1000 for the paced run). Results land in DIR (default
# bench-results/ in the checkout): image-devmapper.json, and with --prepare
# devmapper-steady.{json,md} and devmapper-paced.{json,md}. The image is
# built on the host first (the guest's root is the host's, read-only): the
# small 4-layer variant unless --full (lib/realimage.mjs; needs debootstrap
# and Debian's mirror once). Needs root and what run-in-vm.sh needs.
set -uo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(dirname "$HERE")
ROUNDS=2 STARTS=4 FULL= BASE=512M PREPARE=0 ITER=20 PAUSE=1000 MEM=6144 OUT=$REPO/bench-results
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --starts) STARTS=$2; shift 2 ;;
    --full) FULL=--full; shift ;;
    --base-size) BASE=$2; shift 2 ;;
    --prepare) PREPARE=1; shift ;;
    --iterations) ITER=$2; shift 2 ;;
    --pause) PAUSE=$2; shift 2 ;;
    --mem) MEM=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-image-devmapper.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
[ "$(id -u)" = 0 ] || { echo "bench-image-devmapper.sh: must run as root" >&2; exit 2; }
[ -f "$REPO/dist/cli.js" ] || { echo "bench-image-devmapper.sh: dist/cli.js missing (npm run build)" >&2; exit 1; }
mkdir -p "$OUT"

if ! dmsetup version >/dev/null 2>&1; then
  [ -z "${TSBLOCK_IN_VM:-}" ] || { echo "bench-image-devmapper.sh: no device-mapper even in the VM" >&2; exit 1; }
  case $OUT in "$REPO"/*) ;; *) echo "bench-image-devmapper.sh: --out must be inside $REPO when a VM is used" >&2; exit 2 ;; esac
  # the image, cached on the host: the guest sees it read-only
  SMALL=true; [ -z "$FULL" ] || SMALL=false
  node --input-type=module -e "const { buildRealImage } = await import('$REPO/test/bench/lib/realimage.mjs'); await buildRealImage({ small: $SMALL });" || exit 1
  TSBLOCK_BENCH_HOST_LOAD=$(cat /proc/loadavg) && export TSBLOCK_BENCH_HOST_LOAD
  args=(--rounds "$ROUNDS" --starts "$STARTS" --base-size "$BASE" --iterations "$ITER" --pause "$PAUSE" --out "$OUT")
  [ -z "$FULL" ] || args+=(--full)
  [ "$PREPARE" = 0 ] || args+=(--prepare)
  exec "$HERE/run-in-vm.sh" --mem "$MEM" --cwd "$REPO" --timeout 2400 -- "$HERE/bench-image-devmapper.sh" "${args[@]}"
fi

rc=0
t0=$(date +%s)
TSBLOCK_BENCH_LOGS=$OUT/image-devmapper-logs node "$REPO/test/bench/image-devmapper.mjs" --rounds "$ROUNDS" --starts "$STARTS" --base-size "$BASE" $FULL --json "$OUT/image-devmapper.json" || rc=1
echo "bench-image-devmapper.sh: image benchmark took $(( $(date +%s) - t0 )) s" >&2
if [ "$PREPARE" = 1 ]; then
  t0=$(date +%s)
  "$HERE/bench-devmapper.sh" --iterations "$ITER" --out "$OUT/devmapper-steady.json" || rc=1
  "$HERE/bench-devmapper.sh" --iterations "$ITER" --pause "$PAUSE" --out "$OUT/devmapper-paced.json" || rc=1
  echo "bench-image-devmapper.sh: bench-devmapper.sh (steady, paced) took $(( $(date +%s) - t0 )) s" >&2
fi
exit $rc
