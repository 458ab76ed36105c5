#!/bin/busybox sh
# tsblock boot test, stage 1: PID 1 in the initramfs (static busybox).
# Loads virtio-pci/virtio-blk/ext4, mounts the snapshot disk /dev/vda as
# ext4, puts guest.sh on a tmpfs over the image's /tmp and switch_roots into
# the snapshot, where the IMAGE's /bin/sh runs guest.sh as PID 1.
# Parameters come from the kernel command line as tsb.<key>=<value> and are
# handed on as TSB_<KEY> environment variables.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
die() { echo "TSB fail stage1: $*"; sync; echo o > /proc/sysrq-trigger; sleep 10; }

for m in $(cat /modules/list); do insmod "/modules/$m" 2>/dev/null || echo "stage1: insmod $m failed"; done
for kv in $(cat /proc/cmdline); do
  case $kv in
    tsb.*=*) k=${kv%%=*}; k=${k#tsb.}; export "TSB_$(echo "$k" | tr a-z A-Z)=${kv#*=}" ;;
  esac
done

n=0
while [ ! -b /dev/vda ]; do
  n=$((n + 1)); [ $n -lt 2000 ] || die "no /dev/vda"
  usleep 5000
done
mount -t ext4 -o rw /dev/vda /newroot || die "mount /dev/vda ext4"
echo "TSB mounted $(grep ' /newroot ' /proc/mounts | cut -d' ' -f3,4)"
[ -d /newroot/tmp ] || die "the image has no /tmp"
mount -t tmpfs -o mode=0755 tsbvm /newroot/tmp || die "tmpfs on /tmp"
cp /guest.sh /newroot/tmp/guest.sh
for m in proc sys dev; do mkdir -p "/newroot/$m" 2>/dev/null; mount --move "/$m" "/newroot/$m" || die "move /$m"; done
exec switch_root /newroot /bin/sh /tmp/guest.sh
