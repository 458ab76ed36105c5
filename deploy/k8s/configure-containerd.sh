#!/bin/sh
# configure-containerd: run by the DaemonSet's init container with the host's
# /etc/containerd mounted at /host/etc/containerd. Adds tsblock's proxy plugin
# to containerd's config once (same syntax in config versions 2 and 3) and
# restarts containerd on the host so it loads it. Running containers survive a
# containerd restart (their shims keep running). Idempotent: a config that
# already names the socket is left alone and containerd is not restarted.
set -eu
CONF=${CONTAINERD_CONFIG:-/host/etc/containerd/config.toml}
NAME=${TSBLOCK_PLUGIN_NAME:-tsblock}
SOCKET=${TSBLOCK_SOCKET_PATH:-/run/tsblock/tsblock.sock}
if [ -f "$CONF" ] && grep -q "address = \"$SOCKET\"" "$CONF"; then
  echo "containerd already configured for $SOCKET"; exit 0
fi
cp -p "$CONF" "$CONF.pre-tsblock" 2>/dev/null || true
cat >>"$CONF" <<TOML

# added by the tsblock DaemonSet (configure-containerd)
[proxy_plugins.$NAME]
  type = "snapshot"
  address = "$SOCKET"
TOML
echo "added [proxy_plugins.$NAME] to $CONF; restarting containerd on the host"
nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl restart containerd
