#!/bin/bash
# run.sh: the device-mapper test gate, run INSIDE a machine that has
# device-mapper (a vm-tests/run-in-vm.sh guest, a Vagrant box, a CI VM), as root.
#
#   vm-tests/run.sh [vitest args...]        # from anywhere; cwd does not matter
#
# Stages (TSBLOCK_VM_STAGES, comma list, default vitest,conformance,e2e;
# TSBLOCK_VM_TESTS narrows the vitest stage, e.g. test/devmapper/ops.test.ts):
#   vitest       every test/devmapper file in ONE vitest call (a single worker:
#                each vitest start costs ~10 s under emulation)
#   conformance  containerd's snapshotter suites (TSBLOCK_VM_CONFORMANCE, default
#                "2.4"; any of 2.4 2.3 1.7) against `tsblock serve --backend
#                devmapper` with scripts/conformance.sh, from the test binaries
#                the host built (scripts/conformance.sh --build-only): a fresh
#                server per case, mounts, loop and dm devices checked after each
#   e2e          test/e2e through containerd 1.6 (Debian's) + ctr + runc on
#                tsblock devmapper (--layers $TSBLOCK_E2E_LAYERS, default 130)
# Everything here is the checkout's own; nothing is compiled in the guest.
# Logs go to $TSBLOCK_VM_OUT (default .tmp/vm in the checkout, shared back to
# the host). The last line is "N passed, M failed" summed over the stages
# (what scripts/test.sh reads). Under CI (CI=true or TSBLOCK_REQUIRE_ALL=1) a
# stage that cannot run, or a skipped test, is a failure.
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/.." || exit 2
REPO=$PWD

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (device-mapper, loop devices, mounts)" >&2; exit 2; }
export DM_DISABLE_UDEV=${DM_DISABLE_UDEV:-1}
export TSBLOCK_TEST_TMP=${TSBLOCK_TEST_TMP:-/var/tmp}
STAGES=${TSBLOCK_VM_STAGES:-vitest,conformance,e2e}
export TSBLOCK_VM_OUT=${TSBLOCK_VM_OUT:-$REPO/.tmp/vm}
OUT=$TSBLOCK_VM_OUT
mkdir -p "$OUT"
PASSED=0 FAILED=0 SKIPPED=0
T_ALL=$SECONDS

step() { printf '\n== %s\n' "$*"; }
want() { [[ ",$STAGES," == *",$1,"* ]]; }
# counts LOG: adds the "N passed, M failed[, K skipped]" of LOG's last such line
counts() {
  local line p f s
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  if [ -z "$line" ]; then FAILED=$((FAILED + 1)); echo "run.sh: no result line in $1 (counted as 1 failure)"; return; fi
  p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
  f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
  s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line")
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + ${s:-0}))
}

if want vitest; then
  step "vitest test/devmapper"
  t0=$SECONDS
  rm -f "$OUT/vitest.json"
  node_modules/.bin/vitest run ${TSBLOCK_VM_TESTS:-test/devmapper} --pool=forks --poolOptions.forks.singleFork=true \
    --reporter=default --reporter=json --outputFile.json="$OUT/vitest.json" "$@"
  if [ -f "$OUT/vitest.json" ]; then
    read -r p f s < <(node -e '
      const r = require(process.argv[1]);
      const bad = r.testResults.filter((t) => t.status === "failed" && t.assertionResults.every((a) => a.status !== "failed")).length;
      console.log(r.numPassedTests, r.numFailedTests + bad, r.numPendingTests + r.numTodoTests);' "$OUT/vitest.json")
    PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
  else
    FAILED=$((FAILED + 1))
  fi
  echo "vitest: $((SECONDS - t0)) s"
fi

TOOLS=${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools}
REQUIRE_ALL=0
{ [ "${CI:-}" = true ] || [ "${TSBLOCK_REQUIRE_ALL:-0}" = 1 ]; } && REQUIRE_ALL=1
cannot() { # stage reason
  step "$1 cannot run: $2"
  if [ "$REQUIRE_ALL" = 1 ]; then FAILED=$((FAILED + 1)); else SKIPPED=$((SKIPPED + 1)); fi
}

if ! want conformance && ! want e2e; then
  :
elif [ ! -f dist/cli.js ]; then
  cannot "conformance/e2e" "dist/cli.js is not built (npm run build)"
else
  if want conformance; then
    for suite in ${TSBLOCK_VM_CONFORMANCE:-2.4}; do
      bin=$TOOLS/conformance/ctrd$suite.test
      if [ ! -x "$bin" ]; then cannot "conformance $suite" "$bin missing (run scripts/conformance.sh --build-only on the host)"; continue; fi
      step "containerd $suite snapshotter conformance (devmapper)"
      t0=$SECONDS
      # roots, sockets and pool files on the guest's tmpfs (no unix sockets or
      # O_DIRECT on the 9p share); the logs are copied back after.
      cout=/tmp/tsblock-conformance-$suite
      rm -rf "$cout" "$OUT/conformance-$suite"
      scripts/conformance.sh --suite "$suite" --bin "$bin" --backend devmapper --tmpdir /var/tmp -j 1 \
        --case-timeout "${TSBLOCK_CASE_TIMEOUT:-5m}" --out "$cout" 2>&1 | tee "$OUT/conformance-$suite.log"
      counts "$OUT/conformance-$suite.log"
      mkdir -p "$OUT/conformance-$suite"
      cp -r "$cout"/. "$OUT/conformance-$suite/" 2>/dev/null || true
      echo "conformance $suite: $((SECONDS - t0)) s"
    done
  fi
  if want e2e; then
    if [ -x /usr/bin/containerd ] && command -v runc >/dev/null; then
      step "containerd 1.6 e2e (devmapper, ${TSBLOCK_E2E_LAYERS:-130} layers)"
      t0=$SECONDS
      rm -f "$OUT/e2e.json"
      TSBLOCK_E2E_BACKEND=devmapper TSBLOCK_E2E_CONTAINERD=/usr/bin TSBLOCK_E2E_TMPDIR=/var/tmp \
        node_modules/.bin/vitest run test/e2e --pool=forks --poolOptions.forks.singleFork=true \
        --reporter=default --reporter=json --outputFile.json="$OUT/e2e.json"
      if [ -f "$OUT/e2e.json" ]; then
        read -r p f s < <(node -e '
          const r = require(process.argv[1]);
          const bad = r.testResults.filter((t) => t.status === "failed" && t.assertionResults.every((a) => a.status !== "failed")).length;
          console.log(r.numPassedTests, r.numFailedTests + bad, r.numPendingTests + r.numTodoTests);' "$OUT/e2e.json")
        PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
      else
        FAILED=$((FAILED + 1))
      fi
      echo "e2e: $((SECONDS - t0)) s"
    else
      cannot "e2e" "containerd 1.6 or runc missing (apt-get install containerd runc)"
    fi
  fi
fi

left=$(dmsetup ls 2>/dev/null | grep -c '^tsblock-' || true)
[ "$left" = 0 ] || { echo "run.sh: $left tsblock dm devices left at the end:"; dmsetup ls; FAILED=$((FAILED + 1)); }
echo
echo "run.sh: $((SECONDS - T_ALL)) s in the guest"
if [ "$REQUIRE_ALL" = 1 ] && [ "$SKIPPED" -gt 0 ]; then
  echo "run.sh: $SKIPPED skipped (a failure under CI)"; FAILED=$((FAILED + SKIPPED))
fi
if [ "$SKIPPED" -gt 0 ]; then
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" = 0 ]
