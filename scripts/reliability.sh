#!/usr/bin/env bash
# Long-form reliability runs: the same tests npm test runs in bounded form
# (test/integration/reliability, test/unit/reliability), sized up:
#   crash consistency: TSBLOCK_REL_KILLS SIGKILLs at fault points (default 240)
#   fuzz:              TSBLOCK_REL_FUZZ random requests vs the model (default 20000)
#   load:              32 clients for TSBLOCK_REL_LOAD_SECONDS (default 60)
# Figures go to .tmp/reliability/figures.txt (one "RELIABILITY <test> {json}"
# line each) and are printed at the end. Seeded: TSBLOCK_REL_SEED replays a run.
#
# Usage: sudo scripts/reliability.sh [--kills N] [--fuzz N] [--seconds N] [--seed N] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=240; FUZZ=20000; SECONDS_=60; SEED=${TSBLOCK_REL_SEED:-$(date +%s)}; BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) KILLS=$2; shift 2 ;;
    --fuzz) FUZZ=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then echo "scripts/reliability.sh needs root (loop devices, mounts)" >&2; exit 2; fi
OUT=.tmp/reliability
mkdir -p "$OUT"
FIG=$PWD/$OUT/figures.txt
: >"$FIG"
if [ "$BUILD" = 1 ]; then npm run build >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }; fi
echo "seed $SEED, kills $KILLS, fuzz $FUZZ, load ${SECONDS_}s"
rc=0
TSBLOCK_REL_KILLS=$KILLS TSBLOCK_REL_FUZZ=$FUZZ TSBLOCK_REL_LOAD_SECONDS=$SECONDS_ TSBLOCK_REL_SEED=$SEED \
  TSBLOCK_REL_FIGURES=$FIG node_modules/.bin/vitest run --testTimeout=3600000 --hookTimeout=600000 \
  test/unit/reliability test/integration/reliability || rc=$?
echo
echo "== figures (seed $SEED) =="
cat "$FIG"
exit $rc
