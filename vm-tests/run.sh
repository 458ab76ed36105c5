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
#   conformance  containerd's snapshotter suite against
#                `node dist/cli.js serve --backend devmapper`, --leaks-fail, and
#                dm devices checked after each case (lib/serve-checked.sh);
#                binary from $TSBLOCK_CONFORMANCE
#   e2e          containerd + ctr + runc through tsblock devmapper
#                ($TSBLOCK_E2E = e2e.sh; --layers $TSBLOCK_E2E_LAYERS, default 130)
# A stage whose tool is not given is skipped with a message. Logs go to
# $TSBLOCK_VM_OUT (default .tmp/vm in the checkout, shared back to the host).
# The last line is "N passed, M failed" summed over the stages (what
# scripts/test.sh reads).
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

if ! want conformance && ! want e2e; then
  :
elif [ ! -f dist/cli.js ]; then
  step "conformance/e2e skipped: dist/cli.js is not built (npm run build)"
  SKIPPED=$((SKIPPED + 1))
else
  if want conformance; then
    if [ -n "${TSBLOCK_CONFORMANCE:-}" ] && [ -x "$TSBLOCK_CONFORMANCE" ]; then
      step "containerd snapshotter conformance (devmapper, --leaks-fail, dm devices checked per case)"
      t0=$SECONDS
      leaks=$OUT/conformance-dm-leaks.txt
      # roots, sockets and pool files stay on the guest's tmpfs (no unix
      # sockets or O_DIRECT on the 9p share); logs are copied back after.
      cout=/tmp/tsblock-conformance
      rm -rf "$OUT/conformance" "$cout" "$leaks"; : > "$leaks"
      "$TSBLOCK_CONFORMANCE" --leaks-fail --case-timeout "${TSBLOCK_CASE_TIMEOUT:-5m}" --out "$cout" \
        --server-cmd "$REPO/vm-tests/lib/serve-checked.sh $leaks {case} -- --root {root} --socket {socket} --data-size 1G --base-size 256M" \
        2>&1 | tee "$OUT/conformance.log"
      counts "$OUT/conformance.log"
      mkdir -p "$OUT/conformance"
      cp -r "$cout"/. "$OUT/conformance/" 2>/dev/null || true
      if [ -s "$leaks" ]; then
        echo "dm devices left behind by the server:"; cat "$leaks"
        FAILED=$((FAILED + 1))
      else
        echo "dm devices after each case: none left"
      fi
      echo "conformance: $((SECONDS - t0)) s"
    else
      step "conformance skipped: set TSBLOCK_CONFORMANCE to a snapshotter-conformance binary"
      SKIPPED=$((SKIPPED + 1))
    fi
  fi
  if want e2e; then
    if [ -n "${TSBLOCK_E2E:-}" ] && [ -x "$TSBLOCK_E2E" ]; then
      step "containerd e2e (devmapper, ${TSBLOCK_E2E_LAYERS:-130} layers)"
      t0=$SECONDS
      work=/var/tmp/tsblock-e2e
      rm -rf "$work"
      "$TSBLOCK_E2E" --no-install --keep --workdir "$work" --layers "${TSBLOCK_E2E_LAYERS:-130}" --snapshotter tsblock \
        --proxy-cmd "node $REPO/dist/cli.js serve --backend devmapper --root {root} --socket {socket} --data-size 2G --base-size 256M" \
        2>&1 | tee "$OUT/e2e.log"
      counts "$OUT/e2e.log"
      if grep -q 'ext4 /dev/mapper/' "$OUT/e2e.log"; then
        echo "container root on device-mapper: $(grep -o 'ext4 /dev/mapper/[^ )]*' "$OUT/e2e.log" | head -1)"
      else
        echo "container root was not a /dev/mapper ext4 device"; FAILED=$((FAILED + 1))
      fi
      for f in proxy.log containerd.log; do [ -f "$work/$f" ] && cp "$work/$f" "$OUT/e2e-$f"; done
      rm -rf "$work"
      echo "e2e: $((SECONDS - t0)) s"
    else
      step "e2e skipped: set TSBLOCK_E2E to an e2e.sh"
      SKIPPED=$((SKIPPED + 1))
    fi
  fi
fi

left=$(dmsetup ls 2>/dev/null | grep -c '^tsblock-' || true)
[ "$left" = 0 ] || { echo "run.sh: $left tsblock dm devices left at the end:"; dmsetup ls; FAILED=$((FAILED + 1)); }
echo
echo "run.sh: $((SECONDS - T_ALL)) s in the guest"
if [ "$SKIPPED" -gt 0 ]; then
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" = 0 ]
