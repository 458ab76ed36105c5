#!/usr/bin/env bash
# ensure-go.sh: prints the bin directory of a Go toolchain at least as new as
# GO_TOOLCHAIN (test/versions.env), for the scripts that build the test tools.
#   1. `go` on PATH, or /usr/local/go/bin/go, when it is new enough;
#   2. otherwise the toolchain module golang.org/toolchain@v0.0.1-GOVER.linux-ARCH
#      from the Go module proxy (what `GOTOOLCHAIN=` switching downloads),
#      fetched with whatever `go` is at hand (Debian's golang-go is enough:
#      `go mod download` of a module works in any version) or, with no Go at
#      all, with curl from $GOPROXY; unpacked under the tools cache.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../test/versions.env
. test/versions.env
want=${GO_TOOLCHAIN#go}
CACHE=${TSBLOCK_TOOLS_DIR:-/var/cache/tsblock-tools}

newer_or_equal() { # A B: is version A >= B (dotted numbers)
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$2" ]
}
for g in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go "$CACHE/go-$GO_TOOLCHAIN/bin/go"; do
  [ -n "$g" ] && [ -x "$g" ] || continue
  have=$("$g" env GOVERSION 2>/dev/null || "$g" version | awk '{print $3}')
  have=${have#go}
  if newer_or_equal "$have" "$want"; then dirname "$g"; exit 0; fi
done

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
mod=golang.org/toolchain
ver=v0.0.1-$GO_TOOLCHAIN.linux-$arch
dest=$CACHE/go-$GO_TOOLCHAIN
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.go-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "ensure-go: fetching $mod@$ver from the Go module proxy" >&2
if command -v go >/dev/null; then
  dir=$(cd "$tmp" && GOFLAGS=-modcacherw GOMODCACHE="$tmp/mod" GOTOOLCHAIN=local go mod download -json "$mod@$ver" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] && [ -x "$dir/bin/go" ] || { echo "ensure-go: could not download $mod@$ver" >&2; exit 1; }
  cp -a "$dir" "$tmp/go"
else
  proxy=${GOPROXY:-https://proxy.golang.org}; proxy=${proxy%%,*}
  command -v unzip >/dev/null || { echo "ensure-go: needs unzip (apt-get install unzip) or a go binary" >&2; exit 1; }
  curl -fsSL "$proxy/$mod/@v/$ver.zip" -o "$tmp/go.zip"
  (cd "$tmp" && unzip -q go.zip && mv "$mod@$ver" go)
fi
chmod -R u+w "$tmp/go"
rm -rf "$dest"; mv "$tmp/go" "$dest"
"$dest/bin/go" version >&2
echo "$dest/bin"
