#!/bin/busybox sh
# tsblock VM, stage 1 (PID 1 in the initramfs, static busybox).
# Builds the guest root: the host's / over virtio-9p (read-only) under a
# tmpfs overlay, fresh tmpfs for /tmp /run /var/tmp, the read-write shares at
# their host paths; then hands PID 1 to stage 2 (lib/guest.sh, host bash).
/bin/busybox --install -s /bin
export PATH=/bin
die() { echo "tsblock-vm stage 1: $*"; sync; poweroff -f; }

mkdir -p /proc /sys /dev /hostroot /upper /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

for mod in $(cat /modules/list); do insmod "/modules/$mod" || die "insmod $mod"; done

# virtio devices probe asynchronously: wait for the root's 9p tag.
n=0
while ! cat /sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag 2>/dev/null | grep -q hostroot; do
  n=$((n + 1)); [ $n -lt 1000 ] || die "9p device hostroot never appeared"
  usleep 5000
done

opts9p="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$opts9p,cache=loose,ro" hostroot /hostroot || die "mount hostroot"
mount -t tmpfs -o mode=0755 upper /upper
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/hostroot,upperdir=/upper/data,workdir=/upper/work overlay /newroot || die "overlay"

for d in tmp var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "/newroot/$d"; done
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/run/tsbvm
mount -t 9p -o "$opts9p,cache=none" tsbvmctl /newroot/run/tsbvm || die "mount control share"
# shares: one "tag path" per line, parents first
while read -r tag path; do
  [ -n "$tag" ] || continue
  mkdir -p "/newroot$path"
  mount -t 9p -o "$opts9p,cache=loose" "$tag" "/newroot$path" || die "mount share $path"
done < /newroot/run/tsbvm/shares

mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
for f in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
  ln -sf "${f#*:}" "/dev/${f%%:*}"
done
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up 2>/dev/null
for m in proc sys dev; do mount --move "/$m" "/newroot/$m"; done
exec switch_root /newroot /bin/bash /run/tsbvm/guest.sh
