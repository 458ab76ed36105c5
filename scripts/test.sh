#!/usr/bin/env bash
# The whole tsblock test suite, from a clean clone on Debian 12:
#   1. installs what it needs (apt packages, npm ci, build)
#   2. vitest: unit tests + integration tests (real loop devices and ext4/XFS)
#   3. containerd's own snapshotter suite against `tsblock serve` (ext4 and XFS roots)
#   4. end to end through a real containerd 1.6 + ctr + runc, and the README's
#      quick start checked as a user meets it (scripts/quickstart-check.sh)
#   5. device-mapper tests inside a qemu guest (vm-tests/), incl. conformance + e2e there
# and ends with one line "N passed, M failed". Stages 3-4 use the tools in
# ../shared when that folder is present (CI has it); tsblock itself never needs it.
#
# Usage: sudo scripts/test.sh [--quick] [--only STAGE[,STAGE]] [--no-install]
#   stages: unit, integration, conformance, e2e, quickstart, vm
# Under CI (CI=true) or with TSBLOCK_REQUIRE_ALL=1 a stage that cannot run
# (tools missing) counts as failed, not skipped.
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
SHARED=${TSBLOCK_SHARED:-$REPO/../shared}
OUT=$REPO/.tmp/test
ONLY=""
INSTALL=1
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then exec sudo -E "$0" "$@"; fi
  echo "scripts/test.sh needs root (loop devices, mounts, containerd)" >&2
  exit 2
fi

mkdir -p "$OUT"
PASSED=0
FAILED=0
SKIPPED=0
declare -a SUMMARY=()

want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
REQUIRE_ALL=0
{ [ "${CI:-}" = true ] || [ "${TSBLOCK_REQUIRE_ALL:-0}" = 1 ]; } && REQUIRE_ALL=1
cannot_run() { # stage reason: a skip on a developer machine, a failure under CI
  echo "SKIP $1: $2"
  if [ "$REQUIRE_ALL" = 1 ]; then record "$1 (could not run: $2)" 0 1 0; else record "$1 (skipped: $2)" 0 0 1; fi
}
# at_least FILE STAGE N: the runner must have reported N passes (a suite that
# silently ran fewer cases is a failure).
at_least() {
  local p
  read -r p _ _ < <(counts_from_last_line "$1")
  if [ "$p" -lt "$3" ]; then echo "$2: only $p passed, expected at least $3"; record "$2 (expected >= $3 passed)" 0 1 0; fi
}
record() { # stage passed failed [skipped]
  PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3)); SKIPPED=$((SKIPPED + ${4:-0}))
  SUMMARY+=("$(printf '%-28s %4d passed %4d failed %4d skipped' "$1" "$2" "$3" "${4:-0}")")
}
# counts_from_last_line FILE -> "P F S" from a trailing "N passed, M failed[, K skipped]"
counts_from_last_line() {
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  if [ -z "$line" ]; then echo "0 1 0"; return; fi
  local p f s
  p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
  f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
  s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  echo "$p $f ${s:-0}"
}

export PATH=/usr/local/bin:$PATH  # where scripts/install-node.sh puts Node >= 20
if [ "$INSTALL" = 1 ]; then
  scripts/install-deps.sh --test || { echo "installing dependencies failed" >&2; exit 1; }
fi
npm run build >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; echo "0 passed, 1 failed"; exit 1; }

vitest_stage() { # name, then vitest args
  local name=$1; shift
  local json="$OUT/$name.json"
  rm -f "$json"
  node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json="$json" "$@"
  if [ -f "$json" ]; then
    # failed files (e.g. a file that did not load) count even when no test inside failed
    read -r p f s < <(node -e '
      const r = require(process.argv[1]);
      const badFiles = r.testResults.filter((t) => t.status === "failed" && t.assertionResults.every((a) => a.status !== "failed")).length;
      console.log(r.numPassedTests, r.numFailedTests + badFiles, r.numPendingTests + r.numTodoTests);
    ' "$json")
    record "vitest $name" "$p" "$f" "$s"
  else
    record "vitest $name (did not run)" 0 1 0
  fi
}

if want unit; then vitest_stage unit test/unit; fi
if want integration; then vitest_stage integration test/integration; fi

SERVE="node $REPO/dist/cli.js serve --backend blockfile --root {root} --socket {socket}"
if want conformance; then
  if [ -x "$SHARED/tools/conformance/build.sh" ]; then
    CONF_BIN=$OUT/conformance-bin
    "$SHARED/tools/conformance/build.sh" "$CONF_BIN" >"$OUT/conformance-build.log" 2>&1 || cat "$OUT/conformance-build.log"
    # ext4 tmpdir (the host's /var/tmp): images are sparse copies
    "$CONF_BIN/snapshotter-conformance" --leaks-fail --tmpdir /var/tmp -j 2 \
      --server-cmd "$SERVE" 2>&1 | tee "$OUT/conformance-ext4.log"
    read -r p f s < <(counts_from_last_line "$OUT/conformance-ext4.log"); record "conformance blockfile/ext4" "$p" "$f" "$s"
    at_least "$OUT/conformance-ext4.log" "conformance blockfile/ext4" 20
    # XFS reflink=1 tmpdir: images are FICLONE clones
    XFS_IMG=/var/tmp/tsblock-conf-xfs.img; XFS_DIR=/var/tmp/tsblock-conf-xfs
    rm -f "$XFS_IMG"; mkdir -p "$XFS_DIR"
    if truncate -s 16G "$XFS_IMG" && mkfs.xfs -q -f -m reflink=1 "$XFS_IMG" && mount -o loop "$XFS_IMG" "$XFS_DIR" \
      && [ "$(stat -f -c %T "$XFS_DIR")" = xfs ]; then
      "$CONF_BIN/snapshotter-conformance" --leaks-fail --tmpdir "$XFS_DIR" -j 2 \
        --server-cmd "$SERVE" 2>&1 | tee "$OUT/conformance-xfs.log"
      umount -d "$XFS_DIR"
      read -r p f s < <(counts_from_last_line "$OUT/conformance-xfs.log"); record "conformance blockfile/xfs" "$p" "$f" "$s"
      at_least "$OUT/conformance-xfs.log" "conformance blockfile/xfs" 20
    else
      mountpoint -q "$XFS_DIR" && umount -d "$XFS_DIR"
      echo "could not make a loop-mounted XFS (reflink=1) at $XFS_DIR"
      record "conformance blockfile/xfs (no XFS)" 0 1 0
    fi
    rm -rf "$XFS_DIR" "$XFS_IMG"
  else
    cannot_run "conformance" "$SHARED/tools/conformance not found (set TSBLOCK_SHARED)"
  fi
fi

if want e2e; then
  if [ -x "$SHARED/tools/e2e/e2e.sh" ]; then
    LAYERS=130; [ "$QUICK" = 1 ] && LAYERS=20
    "$SHARED/tools/e2e/e2e.sh" --snapshotter tsblock --layers "$LAYERS" \
      --proxy-cmd "$SERVE" 2>&1 | tee "$OUT/e2e.log"
    read -r p f s < <(counts_from_last_line "$OUT/e2e.log")
    # The restart scenario's first ctr call after the proxy is back races
    # containerd's own gRPC reconnect backoff toward the proxy (an RPC made
    # while its channel waits out the backoff fails at once). When that check
    # is the only failure, the stage runs once more and that run counts; the
    # first run's failure is printed, never dropped silently.
    fails=$(sed -n '/^e2e summary/,$p' "$OUT/e2e.log" | grep -E '^  FAIL ' || true)
    if [ "$f" -gt 0 ] && [ -n "$fails" ] && [ -z "$(grep -v 'committed snapshot survives a snapshotter restart' <<<"$fails")" ]; then
      echo "e2e: only the restart check failed (containerd's reconnect backoff race); running the stage once more"
      cp "$OUT/e2e.log" "$OUT/e2e-first.log"
      "$SHARED/tools/e2e/e2e.sh" --snapshotter tsblock --layers "$LAYERS" \
        --proxy-cmd "$SERVE" 2>&1 | tee "$OUT/e2e.log"
      read -r p f s < <(counts_from_last_line "$OUT/e2e.log")
      echo "e2e: first run failed only \"committed snapshot survives a snapshotter restart\" (log: $OUT/e2e-first.log); rerun: $p passed, $f failed"
    fi
    record "e2e containerd+ctr+runc" "$p" "$f" "$s"
  else
    cannot_run "e2e" "$SHARED/tools/e2e not found (set TSBLOCK_SHARED)"
  fi
fi

if want quickstart; then
  if [ -f "$SHARED/tools/e2e/mkimage.py" ]; then
    TSBLOCK_SHARED=$SHARED scripts/quickstart-check.sh 2>&1 | tee "$OUT/quickstart.log"
    read -r p f s < <(counts_from_last_line "$OUT/quickstart.log"); record "quickstart (up.sh, ctr, ls/usage/metrics)" "$p" "$f" "$s"
  else
    cannot_run "quickstart" "$SHARED/tools/e2e/mkimage.py not found (set TSBLOCK_SHARED)"
  fi
fi

if want vm; then
  if [ -x vm-tests/run-in-vm.sh ]; then
    # the guest sees the host's / read-only: hand it the shared tools when present
    VM_ENV=()
    if [ -x "$SHARED/tools/conformance/build.sh" ]; then
      CONF_BIN=$OUT/conformance-bin
      [ -x "$CONF_BIN/snapshotter-conformance" ] || "$SHARED/tools/conformance/build.sh" "$CONF_BIN" >"$OUT/conformance-build.log" 2>&1 || cat "$OUT/conformance-build.log"
      [ -x "$CONF_BIN/snapshotter-conformance" ] && VM_ENV+=(TSBLOCK_CONFORMANCE="$CONF_BIN/snapshotter-conformance")
    fi
    [ -x "$SHARED/tools/e2e/e2e.sh" ] && VM_ENV+=(TSBLOCK_E2E="$(readlink -f "$SHARED/tools/e2e/e2e.sh")")
    [ "$QUICK" = 1 ] && VM_ENV+=(TSBLOCK_E2E_LAYERS=20)
    rm -f .tmp/vm/conformance.log
    env "${VM_ENV[@]}" vm-tests/run-in-vm.sh --timeout 3600 -- vm-tests/run.sh 2>&1 | tee "$OUT/vm.log"
    read -r p f s < <(counts_from_last_line "$OUT/vm.log"); record "vm (devmapper)" "$p" "$f" "$s"
    # containerd's suite against devmapper inside the guest must have run whole
    if [ -n "${CONF_BIN:-}" ] && [ -x "$CONF_BIN/snapshotter-conformance" ]; then
      if [ -f .tmp/vm/conformance.log ]; then at_least .tmp/vm/conformance.log "vm conformance devmapper" 20
      else echo "vm: no conformance log"; record "vm conformance devmapper (no log)" 0 1 0; fi
    fi
  else
    cannot_run "vm" "vm-tests/run-in-vm.sh missing"
  fi
fi

echo
echo "== tsblock test summary =="
for line in "${SUMMARY[@]}"; do echo "$line"; done
echo
if [ "$SKIPPED" -gt 0 ]; then
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" = 0 ]
