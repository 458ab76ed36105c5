#!/usr/bin/env bash
# The whole tsblock test suite, from a clean clone on Debian 12, with nothing
# beside the checkout:
#   install      apt packages, Node >= 20, npm ci, build; containerd 2.x, crictl
#                and the conformance suites built from Go modules
#                (scripts/install-tools.sh, versions in test/versions.env,
#                cached under /var/cache/tsblock-tools, never in the work tree)
#   unit         vitest test/unit (pure logic)
#   integration  vitest test/integration (real loop devices, ext4 and XFS)
#   conformance  containerd's own snapshotter suites (2.4.x, 2.3.x, 1.7.x) against
#                `tsblock serve`, blockfile on ext4 and on XFS (scripts/conformance.sh)
#   e2e          real containerd + ctr + runc (1.6 from Debian, 2.3.x, 2.4.x):
#                registry pulls, imports, runs, restarts, GC, leaks (test/e2e)
#   cri          containerd 2.x's CRI plugin driven by crictl (test/cri)
#   faults       faults in what users run, through containerd 1.6 and 2.4: tsblock
#                or containerd SIGKILLed mid-pull/run, disk full during a pull,
#                a rootfs filled to its size, corrupted images (test/faults; long
#                form: TSBLOCK_FAULTS_LONG=1 or scripts/reliability.sh --faults)
#   quickstart   the README's quick start as a user meets it (scripts/quickstart-check.sh)
#   vmboot       VMs booted from tsblock snapshots, power cuts (test/vmboot)
#   vm           device-mapper inside a qemu guest: vitest, conformance, e2e
# and ends with one line "N passed, M failed".
#
# Usage: scripts/test.sh [--quick] [--only STAGE[,STAGE]] [--no-install]
# Needs root (it re-runs itself with sudo when it can).
#
# The gate fails when it should: a runner that exits non-zero fails its stage
# whatever its summary says; every run has a minimum number of passed cases
# (MIN below), fewer is a failure; under CI (CI=true, or TSBLOCK_REQUIRE_ALL=1)
# a stage that cannot run, a skipped test and a skipped conformance case are
# failures, and the same strictness is passed into the VM guest. No check is
# retried.
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
OUT=$REPO/.tmp/test
STAGES=(unit integration conformance e2e cri faults quickstart vmboot vm)
ONLY=""
INSTALL=1
QUICK=0
usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --only) [ $# -ge 2 ] || { echo "--only needs a stage list" >&2; exit 2; }; ONLY=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --quick) QUICK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$ONLY" ]; then
  IFS=, read -r -a picked <<<"$ONLY"
  [ "${#picked[@]}" -gt 0 ] || { echo "--only: no stage named" >&2; exit 2; }
  for s in "${picked[@]}"; do
    [[ " ${STAGES[*]} " == *" $s "* ]] || { echo "--only: unknown stage '$s' (stages: ${STAGES[*]})" >&2; exit 2; }
  done
fi

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then exec sudo -E "$0" "$@"; fi
  echo "scripts/test.sh needs root (loop devices, mounts, containerd)" >&2
  exit 2
fi

# The minimum number of passed cases of each run: a runner that silently ran
# fewer is a failure. Raise these when tests are added.
declare -A MIN=(
  [unit]=273 [integration]=151
  [conformance]=21
  [e2e-containerd-1.6]=19 [e2e-containerd-2.3]=23 [e2e-containerd-2.4]=23 [cri-containerd-2.4]=90 [cri-containerd-2.3]=69 [faults-containerd-1.6]=25 [faults-containerd-2.4]=25 [quickstart]=11 [vmboot]=5
  [vm]=105 [vm-conformance]=21 [vm-e2e]=19
)

mkdir -p "$OUT"
PASSED=0
FAILED=0
SKIPPED=0
declare -a SUMMARY=()
declare -a FAILURES=()
REQUIRE_ALL=0
{ [ "${CI:-}" = true ] || [ "${TSBLOCK_REQUIRE_ALL:-0}" = 1 ]; } && REQUIRE_ALL=1
export TSBLOCK_REQUIRE_ALL=$REQUIRE_ALL

want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
record() { # name passed failed skipped seconds [note]
  PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3)); SKIPPED=$((SKIPPED + $4))
  SUMMARY+=("$(printf '%-44s %4d passed %4d failed %4d skipped %6ss%s' "$1" "$2" "$3" "$4" "$5" "${6:+  $6}")")
}
cannot_run() { # name reason: a skip on a developer machine, a failure under CI
  echo "SKIP $1: $2"
  if [ "$REQUIRE_ALL" = 1 ]; then record "$1" 0 1 0 0 "could not run: $2"
  else record "$1" 0 0 1 0 "skipped: $2"; fi
}
# counts FILE -> "P F S" from the last "N passed, M failed[, K skipped]" line
counts() {
  local line p f s
  line=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$1" | tail -1 | sed -E 's/^[A-Za-z-]+: //')
  if [ -z "$line" ]; then echo "0 0 0 none"; return; fi
  p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
  f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
  s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line")
  echo "$p $f ${s:-0} ok"
}
# judge NAME MINKEY RC LOG SECONDS [P F S]: one run's verdict from its exit
# status, its counts, its minimum and (under CI) its skips.
judge() {
  local name=$1 key=$2 rc=$3 log=$4 secs=$5 p f s found note=""
  if [ $# -ge 8 ]; then p=$6 f=$7 s=$8 found=ok; else read -r p f s found < <(counts "$log"); fi
  if [ "$found" != ok ]; then f=$((f + 1)); note="no result line in $log"; fi
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; note="${note:+$note; }exited $rc"; fi
  if [ "$p" -lt "${MIN[$key]}" ]; then f=$((f + 1)); note="${note:+$note; }only $p passed, expected >= ${MIN[$key]}"; fi
  if [ "$REQUIRE_ALL" = 1 ] && [ "$s" -gt 0 ]; then f=$((f + s)); note="${note:+$note; }$s skipped (a failure under CI)"; fi
  [ -z "$note" ] || echo "$name: $note"
  record "$name" "$p" "$f" "$s" "$secs" "$note"
}

export PATH=/usr/local/go/bin:/usr/local/bin:$PATH  # Go 1.26; Node >= 20 from scripts/install-node.sh
T0=$SECONDS
if [ "$INSTALL" = 1 ]; then
  scripts/install-deps.sh --test || { echo "installing dependencies failed" >&2; echo "0 passed, 1 failed"; exit 1; }
  t=$SECONDS
  scripts/install-tools.sh || { echo "building the test tools failed" >&2; echo "0 passed, 1 failed"; exit 1; }
  scripts/conformance.sh --build-only >"$OUT/conformance-build.log" 2>&1 \
    || { cat "$OUT/conformance-build.log"; echo "building the conformance suites failed" >&2; echo "0 passed, 1 failed"; exit 1; }
  echo "test tools built in $((SECONDS - t)) s"
fi
# Go for the tests that build Go fixtures (pullunpack, k8s-validate, the proto check)
GO_BIN=$(scripts/ensure-go.sh) && export PATH=$GO_BIN:$PATH || echo "no Go toolchain (scripts/ensure-go.sh failed): the Go-based checks will fail"
npm run build >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; echo "0 passed, 1 failed"; exit 1; }
echo "install and build: $((SECONDS - T0)) s"

# vitest_run NAME MINKEY JSONFILE -- vitest args: counts from vitest's JSON
# report (a file that failed to load counts as a failure), its exit status,
# and under CI the names of skipped tests.
vitest_run() {
  local name=$1 key=$2 json=$3; shift 4
  local t=$SECONDS rc
  rm -f "$json"
  node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json="$json" "$@"
  rc=$?
  vitest_judge "$name" "$key" "$json" "$rc" $((SECONDS - t))
}
# vitest_judge NAME MINKEY JSONFILE RC SECONDS: the verdict of a finished vitest run.
vitest_judge() {
  local name=$1 key=$2 json=$3 rc=$4 secs=$5 p f s
  if [ -f "$json" ]; then
    read -r p f s < <(node -e '
      const r = require(process.argv[1]);
      const badFiles = r.testResults.filter((t) => t.status === "failed" && t.assertionResults.every((a) => a.status !== "failed")).length;
      for (const t of r.testResults) for (const a of t.assertionResults)
        if (a.status === "skipped" || a.status === "pending" || a.status === "todo") console.error(`  skipped: ${a.fullName}`);
      // The failures by name, for the summary: a CI log is often read from its tail.
      const fails = [];
      for (const t of r.testResults) {
        for (const a of t.assertionResults) if (a.status === "failed")
          fails.push(`${a.fullName}: ${String((a.failureMessages || [])[0] || "").split("\n")[0].slice(0, 300)}`);
        if (t.status === "failed" && t.assertionResults.every((a) => a.status !== "failed"))
          fails.push(`${t.name}: ${String(t.message || "").split("\n")[0].slice(0, 300)}`);
      }
      require("fs").writeFileSync(process.argv[2], fails.map((l) => l + "\n").join(""));
      console.log(r.numPassedTests, r.numFailedTests + badFiles, r.numPendingTests + r.numTodoTests);
    ' "$json" "$json.failures")
    while IFS= read -r l; do FAILURES+=("$name: $l"); done < "$json.failures"
    judge "$name" "$key" "$rc" "$json" "$secs" "$p" "$f" "$s"
  else
    judge "$name" "$key" "$rc" "$json" "$secs" 0 1 0
  fi
}
# log_run NAME MINKEY LOG -- command: runs it, tees LOG, judges it.
log_run() {
  local name=$1 key=$2 log=$3; shift 4
  local t=$SECONDS rc
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  judge "$name" "$key" "$rc" "$log" $((SECONDS - t))
}
# min_only NAME MINKEY LOG: a run whose counts are already in another line; only
# its minimum (and, under CI, its skips) can add a failure.
min_only() {
  local name=$1 key=$2 log=$3 p f s found note=""
  if [ ! -f "$log" ]; then record "$name" 0 1 0 0 "no result file $log"; return; fi
  if [[ $log == *.json ]]; then
    read -r p f s < <(node -e 'const r=require(require("path").resolve(process.argv[1]));console.log(r.numPassedTests,r.numFailedTests,r.numPendingTests+r.numTodoTests)' "$log") && found=ok
  else read -r p f s found < <(counts "$log"); fi
  [ "$found" = ok ] || { record "$name" 0 1 0 0 "no result line in $log"; return; }
  [ "$p" -ge "${MIN[$key]}" ] || note="only $p passed, expected >= ${MIN[$key]}"
  if [ "$REQUIRE_ALL" = 1 ] && [ "$s" -gt 0 ]; then note="${note:+$note; }$s skipped (a failure under CI)"; fi
  if [ -n "$note" ]; then echo "$name: $note"; record "$name" 0 1 0 0 "$note"
  else SUMMARY+=("$(printf '%-44s %4d passed %4d failed %4d skipped  (counted in the vm line)' "$name" "$p" "$f" "$s")"); fi
}
tool_dir() { scripts/install-tools.sh --print "$1" 2>/dev/null; }
CONTAINERDS=(containerd-1.6 containerd-2.3 containerd-2.4)

if want unit; then vitest_run "vitest unit" unit "$OUT/unit.json" -- test/unit; fi
if want integration; then vitest_run "vitest integration" integration "$OUT/integration.json" -- test/integration; fi

# XFS (reflink=1) scratch for the runs that need one, released on exit.
# Each run has its own (two runs at once must not share, or unmount, one).
XFS_BASE="" XFS_IMG="" XFS_DIR=""
xfs_up() {
  [ -n "$XFS_DIR" ] && mountpoint -q "$XFS_DIR" && return 0
  [ -z "$XFS_BASE" ] || rm -rf "$XFS_BASE"   # an earlier attempt that did not mount
  XFS_BASE=$(mktemp -d /var/tmp/tsblock-test-xfs.XXXXXX) || return 1
  XFS_IMG=$XFS_BASE/xfs.img XFS_DIR=$XFS_BASE/mnt
  mkdir -p "$XFS_DIR"
  truncate -s 16G "$XFS_IMG" && mkfs.xfs -q -f -m reflink=1 "$XFS_IMG" && mount -o loop "$XFS_IMG" "$XFS_DIR" \
    && [ "$(stat -f -c %T "$XFS_DIR")" = xfs ]
}
xfs_down() {
  [ -n "$XFS_BASE" ] || return 0
  if mountpoint -q "$XFS_DIR"; then umount -d "$XFS_DIR" || { echo "xfs scratch $XFS_DIR still busy; left in place"; return 0; }; fi
  rm -rf "$XFS_BASE"; XFS_BASE="" XFS_DIR="" XFS_IMG=""
}
trap xfs_down EXIT

if want conformance; then
  for suite in 2.4 2.3 1.7; do
    log_run "conformance $suite blockfile/ext4" conformance "$OUT/conformance-$suite-ext4.log" -- \
      scripts/conformance.sh --suite "$suite" --backend blockfile --tmpdir /var/tmp
    if xfs_up; then
      log_run "conformance $suite blockfile/xfs" conformance "$OUT/conformance-$suite-xfs.log" -- \
        scripts/conformance.sh --suite "$suite" --backend blockfile --tmpdir "$XFS_DIR"
    else
      record "conformance $suite blockfile/xfs" 0 1 0 0 "could not make a loop-mounted XFS (reflink=1) under /var/tmp"
    fi
  done
  xfs_down
fi

if want e2e; then
  LAYERS=130; [ "$QUICK" = 1 ] && LAYERS=20
  for c in "${CONTAINERDS[@]}"; do
    bin=$(tool_dir "$c")
    if [ -z "$bin" ] || [ ! -x "$bin/containerd" ]; then cannot_run "e2e $c" "$c not built (scripts/install-tools.sh)"; continue; fi
    TSBLOCK_E2E_CONTAINERD=$bin TSBLOCK_E2E_LAYERS=$LAYERS \
      vitest_run "e2e $c blockfile" "e2e-$c" "$OUT/e2e-$c.json" -- test/e2e
  done
fi

if want cri; then
  # 2.4: the CRI flows (tsblock as image snapshotter; one runtime handler's
  # snapshotter beside overlayfs; no unpack_config), tsblock restarted under
  # a running pod (test/cri/restart.test.ts), docs/containerd.md's commands and
  # `containerd config dump` of every snippet; 2.3: the flows, the restarts
  # and the docs' commands.
  for c in containerd-2.4 containerd-2.3; do
    bin=$(tool_dir "$c")
    if [ -z "$bin" ] || [ ! -x "$bin/containerd" ]; then cannot_run "cri $c" "$c not built (scripts/install-tools.sh)"; continue; fi
    files=(test/cri); [ "$c" = containerd-2.3 ] && files=(test/cri/cri.test.ts test/cri/restart.test.ts test/cri/docs.test.ts)
    TSBLOCK_CRI_CONTAINERD=$bin vitest_run "cri $c (crictl; docs' snippets)" "cri-$c" "$OUT/cri-$c.json" -- "${files[@]}"
  done
fi

if want faults; then
  # test/faults through containerd 1.6 (Debian's) and 2.4, the two runs side by
  # side (each has its own work dirs, registry port, sockets and loop devices;
  # they wait on I/O and process starts more than on the CPU): the short forms
  # (4 tsblock kills, 2 pull + 2 run containerd kills, both disk-full roots,
  # both rootfs sizes, 3 corruptions). The long forms: scripts/reliability.sh --faults.
  t=$SECONDS
  declare -a FAULT_RUNS=()
  for c in containerd-1.6 containerd-2.4; do
    bin=$(tool_dir "$c")
    if [ -z "$bin" ] || [ ! -x "$bin/containerd" ]; then cannot_run "faults $c" "$c not built (scripts/install-tools.sh)"; continue; fi
    rm -f "$OUT/faults-$c.json" "$OUT/faults-$c.rc"
    ( TSBLOCK_FAULTS_CONTAINERD=$bin node_modules/.bin/vitest run --reporter=default --reporter=json \
        --outputFile.json="$OUT/faults-$c.json" test/faults >"$OUT/faults-$c.log" 2>&1
      echo $? >"$OUT/faults-$c.rc" ) &
    FAULT_RUNS+=("$c")
  done
  wait
  for c in "${FAULT_RUNS[@]}"; do
    echo "== faults $c =="; cat "$OUT/faults-$c.log"
    vitest_judge "faults $c (kills, disk full, corruption)" "faults-$c" "$OUT/faults-$c.json" "$(cat "$OUT/faults-$c.rc" 2>/dev/null || echo 1)" $((SECONDS - t))
  done
fi

if want quickstart; then
  log_run "quickstart (up.sh, ctr, ls/usage/metrics)" quickstart "$OUT/quickstart.log" -- scripts/quickstart-check.sh
fi

if want vmboot; then
  # short form: a boot, a commit + child boot, two VMs at once, 10 power cuts
  # (the long form is TSBLOCK_VMBOOT_CUTS=200; see docs/kata.md)
  TSBLOCK_VMBOOT_CUTS=${TSBLOCK_VMBOOT_CUTS:-10} \
    vitest_run "vmboot (qemu from snapshots, power cuts)" vmboot "$OUT/vmboot.json" -- test/vmboot
fi

if want vm; then
  # The guest sees the host's / read-only: everything it runs is built here
  # (dist/, the conformance binaries, containerd builds under the tools dir).
  # CI's strictness goes in with the rest of the environment.
  VM_ENV=(TSBLOCK_REQUIRE_ALL="$REQUIRE_ALL")
  [ "$QUICK" = 1 ] && VM_ENV+=(TSBLOCK_E2E_LAYERS=20)
  VM_CONFORMANCE="2.4"  # 2.3 and 1.7 run on the host (blockfile); under emulation a suite takes ~11 min
  VM_ENV+=(TSBLOCK_VM_CONFORMANCE="$VM_CONFORMANCE")
  rm -f .tmp/vm/conformance-*.log .tmp/vm/e2e.json
  t=$SECONDS
  env "${VM_ENV[@]}" vm-tests/run-in-vm.sh --timeout 3600 -- vm-tests/run.sh 2>&1 | tee "$OUT/vm.log"
  judge "vm (devmapper: vitest, conformance, e2e)" vm "${PIPESTATUS[0]}" "$OUT/vm.log" $((SECONDS - t))
  # The guest's conformance and e2e runs are in the vm line's counts; each must
  # still have run whole.
  for suite in $VM_CONFORMANCE; do min_only "  vm conformance $suite devmapper" vm-conformance "$REPO/.tmp/vm/conformance-$suite.log"; done
  min_only "  vm e2e containerd-1.6 devmapper" vm-e2e "$REPO/.tmp/vm/e2e.json"
fi

echo
echo "== tsblock test summary ($(( (SECONDS - T0) / 60 )) min) =="
for line in "${SUMMARY[@]}"; do echo "$line"; done
if [ "${#FAILURES[@]}" -gt 0 ]; then
  echo "failed tests:"
  for line in "${FAILURES[@]}"; do echo "  $line"; done
fi
echo "no check was retried"
echo
if [ "$SKIPPED" -gt 0 ]; then
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  echo "$PASSED passed, $FAILED failed"
fi
[ "$FAILED" = 0 ]
