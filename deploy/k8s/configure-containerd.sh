#!/bin/sh
# configure-containerd: run by the DaemonSet's init container with the host's
# /etc/containerd mounted at /host/etc/containerd. Adds tsblock's proxy plugin
# to containerd's config once (same syntax in config versions 2 and 3) and
# restarts containerd on the host so it loads it. Running containers survive a
# containerd restart (their shims keep running). Idempotent: a config whose
# [proxy_plugins.NAME] table (however spelled) already points at the socket is
# left alone and containerd is not restarted; one that points elsewhere is an
# error and the file is not touched (a second table would stop containerd).
set -eu
CONF=${CONTAINERD_CONFIG:-/host/etc/containerd/config.toml}
NAME=${TSBLOCK_PLUGIN_NAME:-tsblock}
SOCKET=${TSBLOCK_SOCKET_PATH:-/run/tsblock/tsblock.sock}
RESTART=${CONTAINERD_RESTART_CMD:-nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart containerd}

# the lines of the [proxy_plugins.NAME] table, header excluded ("" when absent)
Q="'"
table() {
  awk -v name="$NAME" -v q="$Q" '
    function hdr(line) { gsub("[ \t\"" q "]", "", line); return line }
    /^[ \t]*\[/ { h = hdr($0); inside = (h == "[proxy_plugins." name "]"); if (inside) found = 1; next }
    inside { print }
    END { if (!found) exit 1 }
  ' "$CONF"
}
if [ -f "$CONF" ] && lines=$(table); then
  addr=$(printf '%s\n' "$lines" | sed -n "s/^[[:space:]]*address[[:space:]]*=[[:space:]]*[\"$Q]\([^\"$Q]*\)[\"$Q].*/\1/p" | head -1)
  if [ "$addr" = "$SOCKET" ]; then
    echo "containerd already configured: [proxy_plugins.$NAME] -> $SOCKET"; exit 0
  fi
  echo "configure-containerd: $CONF already has [proxy_plugins.$NAME] with address \"$addr\", not $SOCKET; fix it by hand (file left as it is)" >&2
  exit 1
fi
[ -f "$CONF" ] && cp -p "$CONF" "$CONF.pre-tsblock"
cat >>"$CONF" <<TOML

# added by the tsblock DaemonSet (configure-containerd)
[proxy_plugins.$NAME]
  type = "snapshot"
  address = "$SOCKET"
TOML
echo "added [proxy_plugins.$NAME] to $CONF; restarting containerd on the host"
$RESTART
