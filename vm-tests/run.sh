#!/bin/bash
# run.sh: the device-mapper test gate, run INSIDE a machine that has
# device-mapper (a vm-tests/run-in-vm.sh guest, a Vagrant box, a CI VM), as root.
#
#   vm-tests/run.sh                 # from the checkout (cwd does not matter)
#
# 1. every test/devmapper vitest file in ONE vitest call (a single worker:
#    each vitest start costs ~10 s under emulation);
# 2. if dist/cli.js is built and the tools are found, the containerd
#    snapshotter conformance suite and the containerd e2e against
#    `node dist/cli.js serve --backend devmapper`. Tools are looked up in
#    $TSBLOCK_CONFORMANCE (snapshotter-conformance binary) and $TSBLOCK_E2E
#    (e2e.sh); unset = skipped with a message. Nothing here needs them.
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/.." || exit 2

[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (device-mapper, loop devices, mounts)" >&2; exit 2; }
export DM_DISABLE_UDEV=${DM_DISABLE_UDEV:-1}
export TSBLOCK_TEST_TMP=${TSBLOCK_TEST_TMP:-/var/tmp}
status=0

step() { printf '\n== %s\n' "$*"; }

step "vitest test/devmapper"
t0=$SECONDS
node_modules/.bin/vitest run test/devmapper --pool=forks --poolOptions.forks.singleFork=true "$@" || status=1
echo "vitest: $((SECONDS - t0)) s"

SERVE="node $PWD/dist/cli.js serve --backend devmapper --root {root} --socket {socket} --data-size 512M --base-size 256M"
if [ ! -f dist/cli.js ]; then
  step "conformance/e2e skipped: dist/cli.js is not built (npm run build)"
else
  if [ -n "${TSBLOCK_CONFORMANCE:-}" ] && [ -x "$TSBLOCK_CONFORMANCE" ]; then
    step "containerd snapshotter conformance (devmapper)"
    "$TSBLOCK_CONFORMANCE" --leaks-fail --server-cmd "$SERVE" || status=1
  else
    step "conformance skipped: set TSBLOCK_CONFORMANCE to a snapshotter-conformance binary"
  fi
  if [ -n "${TSBLOCK_E2E:-}" ] && [ -x "$TSBLOCK_E2E" ]; then
    step "containerd e2e (devmapper)"
    "$TSBLOCK_E2E" --no-install --snapshotter tsblock --proxy-cmd "$SERVE" || status=1
  else
    step "e2e skipped: set TSBLOCK_E2E to an e2e.sh"
  fi
fi
exit $status
