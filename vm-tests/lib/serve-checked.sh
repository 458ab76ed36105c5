#!/bin/bash
# serve-checked.sh: `tsblock serve --backend devmapper` for the conformance
# harness, plus the dm-device leak check the harness itself does not do.
#
#   serve-checked.sh LEAKS_FILE CASE -- serve args...
#
# The harness checks mounts and loop devices under {root} after each case;
# this wrapper also records the device-mapper devices that were not there
# before the server started and are still there after it exited, appends
# "CASE: names" to LEAKS_FILE and removes them (run.sh fails the stage when
# LEAKS_FILE is not empty). The harness runs cases one at a time (-j 1), so a
# new device can only be this server's.
set -u
leaks=$1 case=$2; shift 2
[ "${1:-}" = -- ] && shift
cd "$(dirname "$(readlink -f "$0")")/../.." || exit 2
before=$(dmsetup ls 2>/dev/null | awk '{print $1}' | sort)
node dist/cli.js serve --backend devmapper "$@" &
pid=$!
# The harness signals the whole process group: forward and wait.
trap 'kill -TERM $pid 2>/dev/null' TERM INT
wait $pid; rc=$?
# wait returns early (>128) when a trapped signal arrives: wait for the real exit.
while kill -0 $pid 2>/dev/null; do wait $pid; rc=$?; done
after=$(dmsetup ls 2>/dev/null | awk '{print $1}' | sort)
new=$(comm -13 <(echo "$before") <(echo "$after") | grep -v '^No$' | tr '\n' ' ')
if [ -n "${new// /}" ]; then
  echo "$case: ${new% }" >> "$leaks"
  echo "serve-checked: dm devices left after $case: $new" >&2
  # thin devices first (longer names), then pools
  for d in $(echo "$new" | tr ' ' '\n' | awk '{print length, $0}' | sort -rn | cut -d' ' -f2); do
    dmsetup remove --retry "$d" >/dev/null 2>&1 || true
  done
fi
exit $rc
