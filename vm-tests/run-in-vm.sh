#!/bin/bash
# run-in-vm.sh: run one command in a throw-away qemu guest that has
# device-mapper, with this machine's root as the guest's root.
#
#   vm-tests/run-in-vm.sh [--timeout S] [--mem MB] [--smp N] [--cwd DIR] [-v] -- CMD [ARGS...]
#
# The guest boots the newest installed Debian kernel (/boot/vmlinuz-* with
# modules) under qemu software emulation (TCG; --accel kvm where KVM works).
# Its / is the host's / over virtio-9p, read-only, under a tmpfs overlay
# (writes are thrown away); /tmp /var/tmp /run are fresh tmpfs; the checkout
# (--cwd, default $PWD) is shared read-write at the same path. dm_mod,
# dm_thin_pool and loop are loaded at boot; other modules load on demand
# through the host's modprobe. No udev runs (DM_DISABLE_UDEV=1).
#
# Exit status: CMD's; 124 when --timeout expired; 125 when the VM failed.
# Needs (Debian): qemu-system-x86 linux-image-amd64 busybox-static cpio kmod
# xz-utils — see vm-tests/provision.sh.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
TIMEOUT=0 MEM=2048 SMP=2 CWD=$PWD VERBOSE=0 ACCEL=${TSBLOCK_VM_ACCEL:-tcg}
fail() { echo "run-in-vm.sh: $*" >&2; exit 125; }
while [ $# -gt 0 ]; do
  case $1 in
    --timeout) TIMEOUT=$2; shift 2 ;;
    --mem) MEM=$2; shift 2 ;;
    --smp) SMP=$2; shift 2 ;;
    --cwd) CWD=$2; shift 2 ;;
    --accel) ACCEL=$2; shift 2 ;;
    -v|--verbose) VERBOSE=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) fail "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || fail "no command (usage: run-in-vm.sh [options] -- CMD...)"
CWD=$(readlink -f "$CWD")
[ "$CWD" != / ] || fail "--cwd / cannot be shared read-write"

for tool in qemu-system-x86_64 cpio modprobe; do
  command -v "$tool" >/dev/null || fail "$tool is missing (run vm-tests/provision.sh)"
done
BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do
  # the initramfs has no libc: only a static busybox works there
  if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX=$b; break; fi
done
[ -n "$BUSYBOX" ] || fail "a static busybox is needed (apt-get install busybox-static)"

KERNEL=
for k in $(ls /boot/vmlinuz-* 2>/dev/null | sort -rV); do
  [ -f "/lib/modules/${k#/boot/vmlinuz-}/modules.dep" ] && { KERNEL=$k; break; }
done
[ -n "$KERNEL" ] || fail "no /boot/vmlinuz-* with modules (apt-get install linux-image-amd64)"
KVER=${KERNEL#/boot/vmlinuz-}

# Booting the ELF vmlinux through its PVH entry skips the bzImage's own
# decompressor, which takes seconds under TCG. Unpack it once and cache it.
boot_image() {
  local cache=${TSBLOCK_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tsblock-vm}
  local out off
  out=$cache/vmlinux-$KVER-$(stat -c %s-%Y "$KERNEL")
  if [ ! -s "$out" ] && command -v xz >/dev/null && mkdir -p "$cache" 2>/dev/null; then
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KERNEL" | head -1 | cut -d: -f1 || true)
    if [ -n "$off" ]; then
      tail -c "+$((off + 1))" "$KERNEL" | xz -dc 2>/dev/null > "$out.tmp" || true
      if [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then mv "$out.tmp" "$out"; fi
      rm -f "$out.tmp"
    fi
  fi
  if [ -s "$out" ]; then echo "$out"; else echo "$KERNEL"; fi
}
IMAGE=$(boot_image)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tsblock-vm.XXXXXX")
QPID=
finish() {
  [ -z "$QPID" ] || { kill "$QPID" 2>/dev/null || true; wait "$QPID" 2>/dev/null || true; }
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$WORK"
}
trap finish EXIT
trap 'exit 130' INT TERM
START=$(date +%s.%N)

# initramfs: busybox, the modules the guest needs before its root exists
# (plus dm/loop, cheaper from here than via 9p later), stage 1 as /init.
mkdir -p "$WORK/initrd/bin" "$WORK/initrd/modules" "$WORK/ctl"
cp "$BUSYBOX" "$WORK/initrd/bin/busybox"
for m in virtio_pci virtio_console 9pnet_virtio 9p overlay loop dm_thin_pool; do
  modprobe -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }'
done | awk '!seen[$0]++' > "$WORK/modpaths"
[ -s "$WORK/modpaths" ] || fail "modprobe found no modules for $KVER"
while read -r p; do
  cp "$p" "$WORK/initrd/modules/"
  basename "$p" >> "$WORK/initrd/modules/list"
done < "$WORK/modpaths"
install -m 0755 "$HERE/lib/initrd-init.sh" "$WORK/initrd/init"
(cd "$WORK/initrd" && find . | cpio -o -H newc --quiet) > "$WORK/initrd.cpio"
install -m 0755 "$HERE/lib/guest.sh" "$WORK/ctl/guest.sh"

# the job: cwd, command, environment (host's, minus what names this host)
echo "tsbvm0 $CWD" > "$WORK/ctl/shares"
{ printf 'JOB_CWD=%q\nJOB_CMD=(' "$CWD"; printf '%q ' "$@"; printf ')\n'; } > "$WORK/ctl/job"
while IFS= read -r v; do
  case $v in PWD|OLDPWD|SHLVL|_|TMPDIR|HOSTNAME|SSH_*|DISPLAY|XDG_RUNTIME_DIR|BASH_FUNC_*) continue ;; esac
  printf 'export %s=%q\n' "$v" "${!v}"
done < <(compgen -e) > "$WORK/ctl/env"

SEC=passthrough; [ "$(id -u)" = 0 ] || SEC=none
case $ACCEL in tcg) ACC=tcg,thread=multi CPU=max ;; kvm) ACC=kvm CPU=host ;; *) fail "--accel tcg|kvm" ;; esac
mkfifo "$WORK/out" "$WORK/err"
cat "$WORK/out" & cat "$WORK/err" >&2 &
APPEND="console=ttyS0 rdinit=/init panic=-1"
[ $VERBOSE = 1 ] || APPEND+=" quiet loglevel=3"
Q=(qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none
   -accel "$ACC" -machine q35 -cpu "$CPU" -smp "$SMP" -m "$MEM"
   -kernel "$IMAGE" -initrd "$WORK/initrd.cpio" -append "$APPEND"
   -serial "file:$WORK/console.log"
   -virtfs "local,path=/,mount_tag=hostroot,security_model=$SEC,readonly=on,multidevs=remap"
   -virtfs "local,path=$WORK/ctl,mount_tag=tsbvmctl,security_model=$SEC"
   -virtfs "local,path=$CWD,mount_tag=tsbvm0,security_model=$SEC,multidevs=remap"
   -device virtio-rng-pci -device virtio-serial-pci
   -chardev "file,id=o,path=$WORK/out" -device virtserialport,chardev=o,name=tsbvm.stdout
   -chardev "file,id=e,path=$WORK/err" -device virtserialport,chardev=e,name=tsbvm.stderr)
[ "$TIMEOUT" = 0 ] || Q=(timeout -k 5 "$TIMEOUT" "${Q[@]}")
"${Q[@]}" </dev/null >"$WORK/qemu.log" 2>&1 &
QPID=$!
set +e; wait "$QPID"; QRC=$?; set -e
QPID=
# A relay whose fifo qemu never opened would block forever: a brief
# read-write open (which never blocks) lets it see EOF.
for f in out err; do exec 9<>"$WORK/$f"; exec 9<&-; done
wait 2>/dev/null || true
END=$(date +%s.%N)
[ $VERBOSE = 0 ] || { cat "$WORK/console.log" >&2; awk -v a="$START" -v b="$END" 'BEGIN { printf "run-in-vm.sh: wall %.1fs\n", b - a }' >&2; }

if [ -s "$WORK/ctl/rc" ]; then exit "$(cat "$WORK/ctl/rc")"; fi
if [ "$TIMEOUT" != 0 ] && [ "$QRC" = 124 ]; then
  echo "run-in-vm.sh: timed out after ${TIMEOUT}s" >&2; tail -n 30 "$WORK/console.log" >&2; exit 124
fi
echo "run-in-vm.sh: the VM ended without an exit status (qemu $QRC)" >&2
cat "$WORK/qemu.log" >&2; tail -n 40 "$WORK/console.log" >&2
exit 125
