#!/usr/bin/env bash
# run.sh: the e2e suite (test/e2e/containerd.test.ts) for one containerd
# release and backend, ending with the line "N passed, M failed, K skipped".
#
#   sudo test/e2e/run.sh [--containerd BIN_DIR] [--backend blockfile|devmapper] [--layers N]
#
# BIN_DIR holds containerd, ctr and containerd-shim-runc-v2 (default /usr/bin,
# Debian's 1.6; 2.x: ${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools}/containerd-vX/bin).
# Same as TSBLOCK_E2E_CONTAINERD / TSBLOCK_E2E_BACKEND / TSBLOCK_E2E_LAYERS.
# Needs root, runc, docker-registry, busybox-static and a built dist/.
# Exit status 0 only when nothing failed (a skip, outside CI, is not a failure).
set -uo pipefail
cd "$(dirname "$0")/../.."
while [ $# -gt 0 ]; do
  case "$1" in
    --containerd) export TSBLOCK_E2E_CONTAINERD=$2; shift 2 ;;
    --backend) export TSBLOCK_E2E_BACKEND=$2; shift 2 ;;
    --layers) export TSBLOCK_E2E_LAYERS=$2; shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
export PATH=/usr/local/bin:$PATH
out=$(mktemp -d /tmp/tsblock-e2e-run.XXXXXX)
trap 'rm -rf "$out"' EXIT
node_modules/.bin/vitest run test/e2e --reporter=verbose --reporter=json --outputFile.json="$out/report.json"
rc=$?
if [ -s "$out/report.json" ]; then
  read -r p f s < <(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const failedFiles = r.testResults.filter((t) => t.status === "failed" && t.assertionResults.length === 0).length;
    console.log(r.numPassedTests, r.numFailedTests + failedFiles, r.numPendingTests + r.numTodoTests)' "$out/report.json")
else
  p=0 f=1 s=0
fi
[ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
echo
echo "$p passed, $f failed, $s skipped"
[ "$f" = 0 ]
