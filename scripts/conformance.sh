#!/usr/bin/env bash
# conformance.sh: containerd's own snapshotter test suite against `tsblock serve`
# (test/go: ctrd2 = containerd 2.4 and 2.3, ctrd1 = containerd 1.7; versions in
# test/versions.env), one process and one fresh server per case, leak check after
# every case (test/go/harness).
#
#   scripts/conformance.sh --suite 2.4|2.3|1.7 [--backend blockfile|devmapper]
#       [--tmpdir DIR] [--serve-args 'EXTRA SERVE FLAGS'] [--run REGEX] [-j N]
#       [--out DIR] [--bin FILE] [--serve 'TEMPLATE'] [--case-timeout MINUTESm]
#   scripts/conformance.sh --build-only [--suite S]
#
# --build-only  compile the suites' test binaries (go test -c) into
#               ${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools}/conformance/
#               (ctrd2.4.test, ctrd2.3.test, ctrd1.7.test; all three unless --suite).
#               Run it on the host before a VM run: the guest compiles nothing.
# --bin FILE    run that prebuilt binary instead of building (no Go needed).
# --tmpdir DIR  where the per-case roots go, so their filesystem (default /var/tmp).
# --backend     blockfile (default) or devmapper (adds --data-size 1G --base-size 256M;
#               needs device-mapper: the VM).
# --serve T     the whole server template ({root}, {socket} replaced); default
#               node dist/cli.js serve --backend B --root {root} --socket {socket} ...
# -j N          cases run at the same time (default 2).
#
# Prints a line per case as it finishes (PASS/FAIL/SKIP, name, seconds), a table,
# writes OUT/results.json (OUT default .tmp/conformance/SUITE-BACKEND-FSTYPE), and ends
# with "N passed, M failed[, K skipped]". Exit 1 when anything failed (or nothing
# ran), 2 on usage errors. Under CI (CI=true or TSBLOCK_REQUIRE_ALL=1) a skipped
# case counts as failed.
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
TOOLS=${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools}
CONF_BIN_DIR=$TOOLS/conformance
SUITE="" BACKEND=blockfile TMPBASE=/var/tmp SERVE_ARGS="" RUN_RE="" JOBS=2 OUT="" BIN="" SERVE=""
BUILD_ONLY=0 CASE_TIMEOUT=10m
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --suite) SUITE=$2; shift 2 ;;
    --backend) BACKEND=$2; shift 2 ;;
    --tmpdir) TMPBASE=$2; shift 2 ;;
    --serve-args) SERVE_ARGS=$2; shift 2 ;;
    --serve) SERVE=$2; shift 2 ;;
    --run) RUN_RE=$2; shift 2 ;;
    -j|--jobs) JOBS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --case-timeout) CASE_TIMEOUT=$2; shift 2 ;;
    --build-only) BUILD_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "conformance.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
REQUIRE_ALL=0
{ [ "${CI:-}" = true ] || [ "${TSBLOCK_REQUIRE_ALL:-0}" = 1 ]; } && REQUIRE_ALL=1

# suite -> module dir, go flags, binary name
suite_mod() { case $1 in 2.4|2.3) echo test/go/ctrd2 ;; 1.7) echo test/go/ctrd1 ;; *) return 1 ;; esac; }
suite_flags() { case $1 in 2.3) echo -modfile=go.2.3.mod ;; *) echo ;; esac; }
suite_bin() { case $1 in 2.4) echo ctrd2.4.test ;; 2.3) echo ctrd2.3.test ;; 1.7) echo ctrd1.7.test ;; esac; }

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", b - a }'; }
# the Go test/versions.env pins (GO_TOOLCHAIN), through scripts/ensure-go.sh
# (which fetches it when the machine's Go is older); else whatever go there is
find_go() {
  local d
  if [ -x scripts/ensure-go.sh ] && d=$(scripts/ensure-go.sh 2>/dev/null) && [ -x "$d/go" ]; then echo "$d/go"; return; fi
  command -v go || echo /usr/local/go/bin/go
}
build_suite() { # suite -> builds $CONF_BIN_DIR/<bin>
  local s=$1 mod flags bin t0
  mod=$(suite_mod "$s") || { echo "unknown suite $s (2.4, 2.3, 1.7)" >&2; return 2; }
  flags=$(suite_flags "$s"); bin=$CONF_BIN_DIR/$(suite_bin "$s")
  GO=${GO:-$(find_go)}
  [ -x "$GO" ] || { echo "conformance.sh: go not found (install Go or pass --bin)" >&2; return 1; }
  mkdir -p "$CONF_BIN_DIR" || return 1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086 # flags is zero or one word
  if ! (cd "$mod" && "$GO" test $flags -c -o "$bin.tmp" ./conformance); then
    rm -f "$bin.tmp"; echo "conformance.sh: building suite $s failed" >&2; return 1
  fi
  mv -f "$bin.tmp" "$bin"
  printf 'built %s (suite %s) in %.1f s\n' "$bin" "$s" "$(elapsed "$t0")"
}

if [ "$BUILD_ONLY" = 1 ]; then
  rc=0
  for s in ${SUITE:-2.4 2.3 1.7}; do build_suite "$s" || rc=1; done
  exit $rc
fi

case $BACKEND in
  blockfile) ;;
  devmapper) SERVE_ARGS="--data-size 1G --base-size 256M $SERVE_ARGS" ;;
  *) echo "conformance.sh: --backend blockfile|devmapper" >&2; exit 2 ;;
esac
if [ -z "$BIN" ]; then
  [ -n "$SUITE" ] || { echo "conformance.sh: --suite 2.4|2.3|1.7 (or --bin FILE) is required" >&2; exit 2; }
  build_suite "$SUITE" || { echo "0 passed, 1 failed"; exit 1; }
  BIN=$CONF_BIN_DIR/$(suite_bin "$SUITE")
else
  [ -x "$BIN" ] || { echo "conformance.sh: $BIN is not an executable"; echo "0 passed, 1 failed"; exit 1; }
  BIN=$(readlink -f "$BIN")
  if [ -z "$SUITE" ]; then
    case $(basename "$BIN") in ctrd2.4*) SUITE=2.4 ;; ctrd2.3*) SUITE=2.3 ;; ctrd1.7*) SUITE=1.7 ;; *) SUITE=custom ;; esac
  fi
fi
if [ "$(id -u)" != 0 ]; then echo "conformance.sh: needs root (the suite mounts what the snapshotter returns)"; echo "0 passed, 1 failed"; exit 1; fi
[ -n "$SERVE" ] || SERVE="node $REPO/dist/cli.js serve --backend $BACKEND --root {root} --socket {socket} --metrics-address '' --log-level info $SERVE_ARGS"
if [[ $SERVE == *"dist/cli.js"* ]] && [ ! -f "$REPO/dist/cli.js" ]; then
  echo "conformance.sh: dist/cli.js missing (npm run build)"; echo "0 passed, 1 failed"; exit 1
fi
mkdir -p "$TMPBASE" || exit 2
TMPBASE=$(readlink -f "$TMPBASE")
FSTYPE=$(findmnt -n -o FSTYPE -T "$TMPBASE" 2>/dev/null || stat -f -c %T "$TMPBASE" | tr / _)
[ -n "$OUT" ] || OUT=$REPO/.tmp/conformance/$SUITE-$BACKEND-$FSTYPE
rm -rf "$OUT"; mkdir -p "$OUT/cases" || exit 2
OUT=$(readlink -f "$OUT")
WORK=$(mktemp -d "$TMPBASE/tsbconf-XXXXXX") || exit 2

cleanup_work() { # whatever a crashed case left under WORK: servers, mounts, loop devices
  local f pg m l
  for f in "$OUT"/cases/*/server.pgid; do
    [ -f "$f" ] || continue
    pg=$(cat "$f"); kill -KILL -- "-$pg" 2>/dev/null && echo "killed leftover server group $pg ($f)"
    rm -f "$f"
  done
  while read -r m; do umount -l "$m" 2>/dev/null && echo "released leftover mount $m"; done < <(awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  for l in /sys/block/loop*/loop/backing_file; do
    [ -f "$l" ] || continue
    if [[ $(cat "$l" 2>/dev/null) == "$WORK"/* ]]; then
      l=${l#/sys/block/}; l=/dev/${l%%/*}; losetup -d "$l" 2>/dev/null && echo "released leftover loop device $l"
    fi
  done
}
trap 'cleanup_work; rm -rf "$WORK"' EXIT

echo "conformance: suite $SUITE, $BIN"
echo "conformance: backend $BACKEND, roots on $TMPBASE ($FSTYPE), $JOBS at a time, logs in $OUT"
echo "conformance: server: $SERVE"

mapfile -t CASES < <("$BIN" -tsblock.list -test.run '^TestSnapshotter$' 2>/dev/null | sed -n 's/^case //p')
if [ "${#CASES[@]}" = 0 ]; then echo "conformance: no cases listed by $BIN"; echo "0 passed, 1 failed"; exit 1; fi
if [ -n "$RUN_RE" ]; then
  mapfile -t CASES < <(printf '%s\n' "${CASES[@]}" | grep -E -- "$RUN_RE")
  [ "${#CASES[@]}" -gt 0 ] || { echo "conformance: no case matches --run $RUN_RE"; echo "0 passed, 1 failed"; exit 1; }
fi

export TSBLOCK_CONFORMANCE_SERVE=$SERVE TSBLOCK_CONFORMANCE_SCRATCH=$WORK TSBLOCK_CONFORMANCE_LOGDIR=$OUT/cases
run_case() { # name: runs one case in its own process; writes cases/NAME/{test.log,rc,wall}
  local c=$1 d=$OUT/cases/$1 t0 rc
  mkdir -p "$d"
  t0=$(date +%s.%N)
  TMPDIR=$WORK timeout --kill-after=30s "$(( ${CASE_TIMEOUT%m} * 60 + 60 ))s" \
    "$BIN" -test.v -test.run "^TestSnapshotter\$/^$c\$" -test.timeout "$CASE_TIMEOUT" >"$d/test.log" 2>&1
  rc=$?
  elapsed "$t0" >"$d/wall"
  echo $rc >"$d/rc"
}

json_str() { # JSON string of $1
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\t'/ }; s=${s//$'\r'/}; s=${s//$'\n'/\\n}
  printf '"%s"' "$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')"
}

PASSED=0 FAILED=0 SKIPPED=0
declare -a ROWS=() JSON=()
report_case() { # name: parse its log, print the line, record
  local c=$1 d=$OUT/cases/$1 line res secs reason="" rc
  rc=$(cat "$d/rc")
  line=$(grep -E "^ *--- (PASS|FAIL|SKIP): TestSnapshotter/$c \(" "$d/test.log" | tail -1)
  if [ -n "$line" ]; then
    res=$(sed -E 's/^ *--- ([A-Z]+):.*/\1/' <<<"$line")
    secs=$(sed -E 's/.*\(([0-9.]+)s\)$/\1/' <<<"$line")
  else
    res=FAIL; secs=$(cat "$d/wall")
    reason="no result from the test binary (exit $rc$([ "$rc" = 124 ] && echo ', timed out'))"
  fi
  if [ -f "$d/server.pgid" ]; then
    kill -KILL -- "-$(cat "$d/server.pgid")" 2>/dev/null
    rm -f "$d/server.pgid"; res=FAIL; reason="${reason:+$reason; }server still running after the case (killed)"
  fi
  if [ "$res" = SKIP ]; then
    reason=$(grep -A1 -E "^ *--- SKIP: TestSnapshotter/$c " "$d/test.log" | tail -1 | sed -E 's/^ *//')
  elif [ "$res" = FAIL ] && [ -z "$reason" ]; then
    # the first three t.Error/t.Fatal messages, with their continuation lines
    reason=$(awk '
      /^ +[A-Za-z0-9_]+\.go:[0-9]+: / { if ($1 == "log_hook.go:47:" || n >= 3) { on = 0; next } on = 1; n++; sub(/^ +/, ""); printf "%s ", $0; next }
      on && /^        / && !/^ *--- / { sub(/^ +/, ""); printf "%s ", $0; next }
      { on = 0 }' "$d/test.log" | cut -c1-500)
  fi
  local counted=$res
  if [ "$res" = SKIP ] && [ "$REQUIRE_ALL" = 1 ]; then counted=FAIL; reason="skipped under CI: $reason"; fi
  case $counted in PASS) PASSED=$((PASSED + 1)) ;; SKIP) SKIPPED=$((SKIPPED + 1)) ;; *) FAILED=$((FAILED + 1)) ;; esac
  printf '%-4s %-30s %7.2fs%s\n' "$res" "$c" "$secs" "${reason:+  $reason}"
  ROWS+=("$(printf '%-30s %-6s %8.2f  %s' "$c" "$res" "$secs" "$reason")")
  JSON+=("$(printf '{"case":%s,"result":"%s","counted":"%s","seconds":%s,"reason":%s,"test_log":%s,"server_log":%s}' \
    "$(json_str "$c")" "$res" "$counted" "$secs" "$(json_str "$reason")" "$(json_str "$d/test.log")" "$(json_str "$d/server.log")")")
}

T0=$(date +%s.%N)
declare -A RUNNING=()
next=0
while [ "$next" -lt "${#CASES[@]}" ] || [ "${#RUNNING[@]}" -gt 0 ]; do
  while [ "$next" -lt "${#CASES[@]}" ] && [ "${#RUNNING[@]}" -lt "$JOBS" ]; do
    c=${CASES[$next]}; next=$((next + 1))
    run_case "$c" &
    RUNNING[$c]=$!
  done
  wait -n 2>/dev/null
  for c in "${!RUNNING[@]}"; do
    if ! kill -0 "${RUNNING[$c]}" 2>/dev/null; then
      wait "${RUNNING[$c]}" 2>/dev/null
      unset "RUNNING[$c]"
      report_case "$c"
    fi
  done
done
WALL=$(elapsed "$T0")
cleanup_work

echo
printf '%-30s %-6s %8s  %s\n' CASE RESULT SECONDS NOTES
printf '%s\n' "${ROWS[@]}" | sort
{
  printf '{"suite":%s,"binary":%s,"backend":%s,"tmpdir":%s,"fstype":%s,"server":%s,"jobs":%s,"require_all":%s,"wall_seconds":%.1f,\n' \
    "$(json_str "$SUITE")" "$(json_str "$BIN")" "$(json_str "$BACKEND")" "$(json_str "$TMPBASE")" "$(json_str "$FSTYPE")" "$(json_str "$SERVE")" "$JOBS" "$REQUIRE_ALL" "$WALL"
  printf ' "passed":%d,"failed":%d,"skipped":%d,\n "cases":[\n' "$PASSED" "$FAILED" "$SKIPPED"
  for i in "${!JSON[@]}"; do printf '  %s%s\n' "${JSON[$i]}" "$([ "$i" -lt $((${#JSON[@]} - 1)) ] && echo ,)"; done
  printf ' ]}\n'
} >"$OUT/results.json"
printf '\nconformance suite %s, %s on %s: %.1f s wall; results %s\n' "$SUITE" "$BACKEND" "$FSTYPE" "$WALL" "$OUT/results.json"
if [ "$SKIPPED" -gt 0 ]; then echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"; else echo "$PASSED passed, $FAILED failed"; fi
[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
