#!/usr/bin/env bash
# Long-form reliability runs: the same tests npm test runs in bounded form
# (test/integration/reliability, test/unit/reliability), sized up:
#   crash consistency: TSBLOCK_REL_KILLS SIGKILLs at fault points (default 240)
#   fuzz:              TSBLOCK_REL_FUZZ random requests vs the model (default 20000)
#   load:              32 clients for TSBLOCK_REL_LOAD_SECONDS (default 60)
# Figures go to .tmp/reliability/figures.txt (one "RELIABILITY <test> {json}"
# line each) and are printed at the end. Seeded: TSBLOCK_REL_SEED replays a run.
# --devmapper runs test/devmapper/reliability.test.ts in the VM instead
# (vm-tests/run-in-vm.sh; Node is ~20x slower there): --kills, --fuzz and
# --seconds then size the devmapper campaign (defaults 30, 300, 60 s with
# --clients 8) and every apply fault point is armed.
# --faults runs test/faults in long form (TSBLOCK_FAULTS_LONG=1: tsblock killed
# at every fault point of every layer of a 10-layer pull, containerd killed
# after every layer's Prepare, plus the disk-full, rootfs-full and corruption
# cases) through containerd 1.6 and 2.4; figures ("FAULTS <test> {json}")
# go to .tmp/faults/figures.txt.
#
# Usage: sudo scripts/reliability.sh [--devmapper|--faults] [--kills N] [--fuzz N] [--seconds N] [--clients N] [--seed N] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=; FUZZ=; SECONDS_=60; CLIENTS=8; SEED=${TSBLOCK_REL_SEED:-$(date +%s)}; BUILD=1; DM=0; FAULTS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) KILLS=$2; shift 2 ;;
    --fuzz) FUZZ=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --devmapper) DM=1; shift ;;
    --faults) FAULTS=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then echo "scripts/reliability.sh needs root (loop devices, mounts)" >&2; exit 2; fi
OUT=.tmp/reliability
mkdir -p "$OUT"
FIG=$PWD/$OUT/figures.txt
: >"$FIG"
if [ "$BUILD" = 1 ]; then npm run build >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }; fi
rc=0
if [ "$DM" = 1 ]; then
  KILLS=${KILLS:-30}; FUZZ=${FUZZ:-300}
  echo "devmapper (VM): seed $SEED, kills $KILLS, fuzz $FUZZ, load $CLIENTS clients ${SECONDS_}s"
  # The VM gets the host's environment; the checkout (and so $FIG) is shared read-write.
  TSBLOCK_REL_DM_KILLS=$KILLS TSBLOCK_REL_DM_FUZZ=$FUZZ TSBLOCK_REL_DM_LOAD_SECONDS=$SECONDS_ TSBLOCK_REL_DM_CLIENTS=$CLIENTS \
    TSBLOCK_REL_DM_APPLY=all TSBLOCK_REL_DM_TIMEOUT_MS=14400000 TSBLOCK_REL_SEED=$SEED TSBLOCK_REL_FIGURES=$FIG \
    vm-tests/run-in-vm.sh --timeout "${TSBLOCK_REL_VM_TIMEOUT:-14400}" -- \
    node_modules/.bin/vitest run test/devmapper/reliability.test.ts || rc=$?
  echo
  echo "== devmapper figures (seed $SEED) =="
  cat "$FIG"
  exit $rc
fi
if [ "$FAULTS" = 1 ]; then
  mkdir -p .tmp/faults
  : >.tmp/faults/figures.txt
  for c in containerd-1.6 containerd-2.4; do
    bin=$(scripts/install-tools.sh --print "$c") || { echo "$c: not built (scripts/install-tools.sh)"; rc=1; continue; }
    echo "faults, long form, $c"
    TSBLOCK_FAULTS_LONG=1 TSBLOCK_FAULTS_CONTAINERD=$bin node_modules/.bin/vitest run --testTimeout=3600000 --hookTimeout=600000 test/faults || rc=$?
  done
  echo
  echo "== faults figures =="
  cat .tmp/faults/figures.txt
  exit $rc
fi
KILLS=${KILLS:-240}; FUZZ=${FUZZ:-20000}
echo "seed $SEED, kills $KILLS, fuzz $FUZZ, load ${SECONDS_}s"
TSBLOCK_REL_KILLS=$KILLS TSBLOCK_REL_FUZZ=$FUZZ TSBLOCK_REL_LOAD_SECONDS=$SECONDS_ TSBLOCK_REL_SEED=$SEED \
  TSBLOCK_REL_FIGURES=$FIG node_modules/.bin/vitest run --testTimeout=3600000 --hookTimeout=600000 \
  test/unit/reliability test/integration/reliability || rc=$?
echo
echo "== figures (seed $SEED) =="
cat "$FIG"
exit $rc
