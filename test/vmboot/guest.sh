#!/bin/sh
# tsblock boot test, stage 2: PID 1 after switch_root, run by the IMAGE's
# /bin/sh from the snapshot disk (the initramfs and its busybox are gone).
# Talks on the console: "TSB <word> ..." lines out, "go" lines in.
#
#   TSB_MODE=boot  report what runs and what the disk holds, write
#                  /vmwrites/$TSB_TAG, optionally wait for "go" (TSB_WAIT=1),
#                  list /vmwrites, remount / read-only, power off.
#   TSB_MODE=cut   write, fsync and rename files in /vmwrites in a loop and
#                  report each one once it is durable, until the power is cut.
off() { sync; echo o > /proc/sysrq-trigger; sleep 30; }
fail() { echo "TSB fail $*"; off; }
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

echo "TSB stage2 pid=$$ exe=$(readlink /proc/$$/exe) root=$(grep ' / ' /proc/mounts | cut -d' ' -f1,3 | tr ' ' ,)"
echo "TSB busybox $(sha256sum /bin/busybox | cut -d' ' -f1)"
mkdir -p /vmwrites || fail "mkdir /vmwrites"

case ${TSB_MODE:-boot} in
boot)
  # the image's content: the listing of /data, checked against the host's sum
  [ -x /bin/list-data ] || fail "no /bin/list-data in the image"
  echo "TSB listing $(/bin/list-data /data | sha256sum | cut -d' ' -f1) $(/bin/list-data /data | wc -l)"
  # what is already there (a parent's writes)
  for f in /vmwrites/*; do [ -f "$f" ] && echo "TSB before ${f##*/} $(sha256sum < "$f" | cut -d' ' -f1)"; done
  # this VM's own write: a file plus a directory tree
  f=/vmwrites/$TSB_TAG
  { echo "written by $TSB_TAG"; head -c 8192 /dev/urandom | od -An -tx1; } > "$f.tmp" || fail "write $f"
  mv "$f.tmp" "$f" && mkdir -p "/vmwrites/$TSB_TAG.d/sub" && echo "$TSB_TAG" > "/vmwrites/$TSB_TAG.d/sub/leaf" || fail "write tree"
  sync
  echo "TSB wrote $TSB_TAG $(sha256sum < "$f" | cut -d' ' -f1)"
  if [ "${TSB_WAIT:-0}" = 1 ]; then
    echo "TSB waiting"
    while read -r line; do [ "$line" = go ] && break; done
  fi
  for f in /vmwrites/*; do [ -f "$f" ] && echo "TSB seen ${f##*/} $(sha256sum < "$f" | cut -d' ' -f1)"; done
  echo "TSB seen-end"
  # clean shutdown: everything on disk, the filesystem marked clean
  sync
  umount /tmp 2>/dev/null
  mount -o remount,ro / || fail "remount / read-only"
  echo "TSB clean $(grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)"
  off
  ;;
cut)
  echo "TSB ready"
  i=0
  while :; do
    i=$((i + 1))
    f=/vmwrites/c${TSB_CUT}-$i
    # 4 KiB .. 128 KiB of random bytes, fsynced, renamed into place, dir fsynced
    head -c $((4096 * (1 + i % 32))) /dev/urandom > "$f.tmp" || fail "write $f"
    sync "$f.tmp" || fail "fsync $f"
    mv "$f.tmp" "$f" || fail "rename $f"
    sync /vmwrites || fail "fsync /vmwrites"
    echo "TSB fsynced ${f##*/} $(sha256sum < "$f" | cut -d' ' -f1)"
  done
  ;;
*)
  fail "unknown mode $TSB_MODE"
  ;;
esac
