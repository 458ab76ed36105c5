#!/usr/bin/env bash
# Installs what tsblock needs on Debian 12, then `npm ci` and the build.
#   scripts/install-deps.sh          to run tsblock (e2fsprogs, xfsprogs, Node ≥ 20)
#   scripts/install-deps.sh --test   also what the test suite uses (containerd, runc,
#                                    qemu + Debian's kernel for the device-mapper VM)
# Idempotent: packages already present are not reinstalled; npm ci runs only when
# package-lock.json changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST=0
[ "${1:-}" = "--test" ] && TEST=1

# build tools: better-sqlite3 and zstd-napi compile with node-gyp when no
# prebuilt binary can be fetched; curl/xz for install-node.sh
pkgs=(e2fsprogs xfsprogs util-linux ca-certificates curl xz-utils python3 make g++)
[ "$TEST" = 1 ] && pkgs+=(containerd runc busybox-static python3 qemu-system-x86 linux-image-amd64
  tiny-initramfs cpio kmod xz-utils dmsetup thin-provisioning-tools btrfs-progs zstd curl
  docker-registry systemd)

missing=()
for p in "${pkgs[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start their own registry on 127.0.0.1 (a random port); Debian's
  # package would also enable a system-wide one on :5000 under systemd.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
fi
# Node >= 20 (Debian 12's nodejs is 18): the official tarball into /usr/local
scripts/install-node.sh
export PATH=/usr/local/bin:$PATH

stamp=node_modules/.tsblock-lock.sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund
  echo "$want" >"$stamp"
fi
npm run build >/dev/null
