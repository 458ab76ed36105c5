#!/usr/bin/env bash
# Builds the containerd-side tools the tests drive, at the versions pinned in
# test/versions.env, into ${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools} (outside
# the work tree; Go's own module/build caches stay where Go keeps them).
#
#   scripts/install-tools.sh                      build containerd-2.3, containerd-2.4, crictl
#   scripts/install-tools.sh --only containerd-2.4,crictl
#   scripts/install-tools.sh --print containerd-2.4   print the tool's bin dir (builds nothing;
#                                                     exit 1 when it is not installed)
#   scripts/install-tools.sh --list               name, version, bin dir, installed or not
#
# Tools (NAME: what lands in its bin dir):
#   containerd-2.3, containerd-2.4  containerd, ctr, containerd-shim-runc-v2
#                                   (go install github.com/containerd/containerd/v2/cmd/…@VERSION)
#   containerd-1.6                  Debian 12's package (/usr/bin); --print only, never built
#   crictl                          crictl (sigs.k8s.io/cri-tools/cmd/crictl@CRI_TOOLS)
#   cni                             loopback, bridge, host-local (only with --only: the CRI tests
#                                   run host-network pods) (github.com/containernetworking/plugins@CNI_PLUGINS)
#
# Idempotent: a tool whose binaries are all present and carry the pinned module
# version (`go version -m`) is left alone. Each built tool's wall time is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=../test/versions.env
. "$REPO/test/versions.env"
TOOLS_DIR=${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools}
# Go >= GO_TOOLCHAIN: on PATH, /usr/local/go, or fetched by scripts/ensure-go.sh
GODIR=$("$REPO/scripts/ensure-go.sh") && export PATH=$GODIR:$PATH

ALL=(containerd-2.3 containerd-2.4 crictl cni)
# what a bare run builds: the CRI tests use host-network pods, which need no CNI plugin
DEFAULT=(containerd-2.3 containerd-2.4 crictl)

# spec NAME -> "VERSION|MODULE|BINDIR|pkg1 pkg2 …" (packages relative to MODULE)
spec() {
  case "$1" in
    containerd-2.3) echo "$CONTAINERD_2_3|github.com/containerd/containerd/v2|$TOOLS_DIR/containerd-$CONTAINERD_2_3/bin|cmd/containerd cmd/ctr cmd/containerd-shim-runc-v2" ;;
    containerd-2.4) echo "$CONTAINERD_2_4|github.com/containerd/containerd/v2|$TOOLS_DIR/containerd-$CONTAINERD_2_4/bin|cmd/containerd cmd/ctr cmd/containerd-shim-runc-v2" ;;
    crictl) echo "$CRI_TOOLS|sigs.k8s.io/cri-tools|$TOOLS_DIR/crictl-$CRI_TOOLS/bin|cmd/crictl" ;;
    cni) echo "$CNI_PLUGINS|github.com/containernetworking/plugins|$TOOLS_DIR/cni-plugins-$CNI_PLUGINS/bin|plugins/main/loopback plugins/main/bridge plugins/ipam/host-local" ;;
    *) return 1 ;;
  esac
}

# installed NAME: every binary present and built from MODULE@VERSION
installed() {
  local v m d pkgs p bin got
  IFS='|' read -r v m d pkgs <<<"$(spec "$1")"
  for p in $pkgs; do
    bin=$d/$(basename "$p")
    [ -x "$bin" ] || return 1
    # `go version -m` prints "\tmod\t<module>\t<version>\t<sum>" for the main module
    got=$(go version -m "$bin" 2>/dev/null | awk -v m="$m" '$1 == "mod" && $2 == m { print $3 }')
    [ "$got" = "$v" ] || return 1
  done
}

build() {
  local name=$1 v m d pkgs p targets=() t0 t1
  IFS='|' read -r v m d pkgs <<<"$(spec "$name")"
  if installed "$name"; then
    echo "$name $v: present in $d (0s)"
    return 0
  fi
  for p in $pkgs; do targets+=("$m/$p@$v"); done
  mkdir -p "$d"
  t0=$(date +%s)
  echo "$name $v: building ${targets[*]}"
  # go install pkg@version builds in module mode outside any go.mod, as the
  # module's own go.mod pins its dependencies. -trimpath keeps the work tree's
  # paths out of the binaries.
  (cd /tmp && GOBIN=$d GOFLAGS=${GOFLAGS:-} go install -trimpath "${targets[@]}")
  t1=$(date +%s)
  installed "$name" || { echo "$name: built, but its binaries do not report $m $v" >&2; return 1; }
  echo "$name $v: built into $d in $((t1 - t0))s"
}

print_dir() {
  local v m d pkgs
  if [ "$1" = containerd-1.6 ]; then
    if [ -x /usr/bin/containerd ] && /usr/bin/containerd --version | grep -q ' 1\.6\.'; then echo /usr/bin; return 0; fi
    echo "containerd-1.6: Debian's containerd 1.6 is not installed (scripts/install-deps.sh --test)" >&2
    return 1
  fi
  spec "$1" >/dev/null || { echo "unknown tool $1 (known: ${ALL[*]} containerd-1.6)" >&2; return 2; }
  IFS='|' read -r v m d pkgs <<<"$(spec "$1")"
  if installed "$1"; then echo "$d"; return 0; fi
  echo "$1 $v is not installed in $d (scripts/install-tools.sh --only $1)" >&2
  return 1
}

ONLY=""
case "${1:-}" in
  --print) [ $# -eq 2 ] || { echo "usage: $0 --print NAME" >&2; exit 2; }; print_dir "$2"; exit $? ;;
  --list)
    for n in "${ALL[@]}"; do
      IFS='|' read -r v _ d _ <<<"$(spec "$n")"
      if installed "$n"; then s=installed; else s=missing; fi
      printf '%-16s %-8s %-8s %s\n' "$n" "$v" "$s" "$d"
    done
    exit 0 ;;
  --only) [ $# -eq 2 ] || { echo "usage: $0 --only NAME[,NAME]" >&2; exit 2; }; ONLY=$2 ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  "") ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
esac

command -v go >/dev/null 2>&1 || { echo "no Go toolchain (scripts/ensure-go.sh found or fetched none)" >&2; exit 1; }
names=("${DEFAULT[@]}")
if [ -n "$ONLY" ]; then
  IFS=',' read -r -a names <<<"$ONLY"
  for n in "${names[@]}"; do
    [ "$n" = containerd-1.6 ] && continue
    spec "$n" >/dev/null || { echo "unknown tool $n (known: ${ALL[*]})" >&2; exit 2; }
  done
fi
T0=$(date +%s)
rc=0
for n in "${names[@]}"; do
  if [ "$n" = containerd-1.6 ]; then print_dir containerd-1.6 >/dev/null || rc=1; continue; fi
  build "$n" || { echo "$n: build failed" >&2; rc=1; }
done
echo "install-tools: done in $(($(date +%s) - T0))s"
exit $rc
