#!/bin/bash
# provision.sh: make a Debian 12 machine (a Vagrant box, a cloud VM, a CI
# runner with device-mapper) ready to run tsblock's device-mapper tests:
#
#   sudo vm-tests/provision.sh [--checkout DIR] [--no-build] [--dry-run]
#   sudo vm-tests/run.sh                       # then, from the checkout
#
# Idempotent; every step is skipped when already done:
#   1. Debian packages: containerd, runc, dmsetup, thin-provisioning-tools,
#      e2fsprogs, xfsprogs, busybox-static, python3 (e2e images), build tools
#      (better-sqlite3's node-gyp fallback), and, for the project's own qemu
#      runner, qemu-system-x86 + linux-image-amd64 + cpio/kmod/xz-utils.
#   2. Node.js >= 20 (Debian 12 ships 18): the official linux tarball from
#      nodejs.org (NODE_VERSION, default 20.18.1), checked against its
#      SHASUMS256.txt, unpacked to /usr/local.
#   3. dm_thin_pool and loop modules loaded (and listed in /etc/modules).
#   4. In the checkout: npm ci (unless node_modules loads), npm run build.
#   5. The test tools, built from Go modules at the versions in
#      test/versions.env (scripts/install-tools.sh: containerd 2.x, crictl;
#      scripts/conformance.sh --build-only: containerd's snapshotter suites),
#      cached under /var/cache/tsblock-tools. Needs Go >= 1.21 (its toolchain
#      switch fetches the pinned Go from the module proxy when older).
# --dry-run prints what would be done and changes nothing.
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
CHECKOUT=$(dirname "$HERE")
BUILD=1
DRY=0
NODE_VERSION=${NODE_VERSION:-20.18.1}
while [ $# -gt 0 ]; do
  case $1 in
    --checkout) CHECKOUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "provision.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "provision.sh: run as root" >&2; exit 2; }
say() { echo "provision: $*"; }
run() { if [ "$DRY" = 1 ]; then echo "  would run: $*"; else "$@"; fi; }

# 1. packages
pkgs=(ca-certificates curl xz-utils e2fsprogs xfsprogs util-linux dmsetup thin-provisioning-tools
  containerd runc busybox-static python3 build-essential kmod cpio qemu-system-x86 linux-image-amd64
  tiny-initramfs zstd docker-registry)
missing=()
for p in "${pkgs[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run apt-get update -qq
  run apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages: all present"
fi

# 2. Node >= 20 (the step lives in scripts/install-node.sh, shared with install-deps.sh)
if [ "$DRY" = 1 ]; then NODE_VERSION=$NODE_VERSION "$CHECKOUT/scripts/install-node.sh" --dry-run
else NODE_VERSION=$NODE_VERSION "$CHECKOUT/scripts/install-node.sh"; fi
export PATH=/usr/local/bin:$PATH

# 3. kernel modules (a VM boot loads them from /etc/modules)
for m in dm_thin_pool loop; do
  if [ -d "/sys/module/$m" ]; then say "module $m: loaded"; else run modprobe "$m" || say "module $m: could not load (not this kernel?)"; fi
  grep -qx "$m" /etc/modules 2>/dev/null || { [ "$DRY" = 1 ] || echo "$m" >> /etc/modules; }
done

# 4. the checkout
if [ "$BUILD" = 1 ]; then
  cd "$CHECKOUT"
  if [ -d node_modules ] && node -e 'require("better-sqlite3")(":memory:").close(); require("ffi-rs")' 2>/dev/null; then
    say "node_modules: ok"
  else
    say "npm ci in $CHECKOUT"
    run npm ci --no-audit --no-fund
  fi
  say "npm run build"
  run npm run build
fi

# 5. the test tools (Go modules, cached outside the checkout)
if [ "$BUILD" = 1 ]; then
  cd "$CHECKOUT"
  export PATH=/usr/local/go/bin:$PATH
  run scripts/install-tools.sh
  run scripts/conformance.sh --build-only
fi
say "done; run: cd $CHECKOUT && sudo -E vm-tests/run.sh"
