#!/bin/bash
# tsblock VM, stage 2 (PID 1 after switch_root: the host's own bash).
# Runs the job's command with stdout/stderr on two virtio-serial ports,
# records its exit status in the control share and powers off.
CTL=/run/tsbvm
off() { sync; echo o > /proc/sysrq-trigger; sleep 5; }
trap off EXIT

# shellcheck disable=SC1091
source "$CTL/env"
# shellcheck disable=SC1091
source "$CTL/job"   # JOB_CWD, JOB_CMD=( ... )

out=/dev/null err=/dev/null
for p in /sys/class/virtio-ports/*; do
  [ -r "$p/name" ] || continue
  case $(<"$p/name") in
    tsbvm.stdout) out=/dev/${p##*/} ;;
    tsbvm.stderr) err=/dev/${p##*/} ;;
  esac
done

# No udev in this guest: tsblock creates /dev/mapper/<name> nodes itself.
export DM_DISABLE_UDEV=1 TSBLOCK_IN_VM=1
cd "$JOB_CWD" || { echo 125 > "$CTL/rc"; exit; }
( "${JOB_CMD[@]}" ) </dev/null >"$out" 2>"$err"
echo $? > "$CTL/rc"
