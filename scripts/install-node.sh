#!/usr/bin/env bash
# install-node.sh: make sure Node.js >= 20 is on this Debian machine.
# Debian 12's own nodejs is 18, too old for tsblock (and its npm may be
# missing). When no node >= 20 is found, the official linux tarball from
# nodejs.org (NODE_VERSION, default 20.18.1) is fetched, checked against the
# release's SHASUMS256.txt and unpacked into /usr/local (node, npm, npx).
#
#   sudo scripts/install-node.sh [--dry-run]
# Used by scripts/install-deps.sh and vm-tests/provision.sh.
set -euo pipefail
NODE_VERSION=${NODE_VERSION:-20.18.1}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1

node_ok() { command -v node >/dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; }
# /usr/local/bin first: a tarball install there wins over Debian's /usr/bin/node
export PATH=/usr/local/bin:$PATH
if node_ok; then
  echo "node $(node --version): ok"
  exit 0
fi
arch=$(dpkg --print-architecture)
case $arch in amd64) arch=x64 ;; arm64) arch=arm64 ;; *) echo "install-node.sh: no Node tarball for $arch; install Node >= 20 yourself" >&2; exit 1 ;; esac
tarball=node-v$NODE_VERSION-linux-$arch.tar.xz
base=https://nodejs.org/dist/v$NODE_VERSION
echo "installing Node $NODE_VERSION from $base/$tarball into /usr/local (found: $(node --version 2>/dev/null || echo none))"
[ "$DRY" = 1 ] && exit 0
for tool in curl xz sha256sum; do
  command -v "$tool" >/dev/null || { echo "install-node.sh: $tool is needed (apt-get install curl xz-utils coreutils)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL -o "$tmp/$tarball" "$base/$tarball"
curl -fsSL -o "$tmp/SHASUMS256.txt" "$base/SHASUMS256.txt"
(cd "$tmp" && grep " $tarball\$" SHASUMS256.txt | sha256sum -c - >/dev/null)
tar -xJf "$tmp/$tarball" -C /usr/local --strip-components=1 --no-same-owner
hash -r
node_ok || { echo "install-node.sh: node >= 20 still not found after installing into /usr/local" >&2; exit 1; }
echo "node $(node --version) installed in /usr/local/bin"
