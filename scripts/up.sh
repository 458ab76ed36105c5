#!/usr/bin/env bash
# Brings tsblock up on this machine with a working default: installs what it
# needs (Debian 12), builds, and starts `tsblock serve` in the background with
# the blockfile backend under /var/lib/tsblock, listening on
# /run/tsblock/tsblock.sock. No config file or hand-made image is needed.
# The socket is socket-activated, as with deploy/tsblock.socket: a launcher
# (scripts/launch.mjs; no systemd needed) holds it and passes it to the
# daemon, so it outlives daemon restarts and containerd's first call after one
# succeeds (docs/reliability.md).
#
#   sudo scripts/up.sh               start (or report that it already runs)
#   sudo scripts/up.sh --foreground  run in this terminal instead
#   sudo scripts/up.sh --restart     restart the daemon on the held socket (after a rebuild)
#   sudo scripts/up.sh --stop        stop the daemon and release the socket (SIGTERM)
#   extra arguments are passed to `tsblock serve` (e.g. --backend devmapper)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then exec sudo -E "$0" "$@"; fi
  echo "tsblock needs root (loop devices, device-mapper)" >&2; exit 2
fi

SOCKET=${TSBLOCK_SOCKET:-/run/tsblock/tsblock.sock}
ROOT=${TSBLOCK_ROOT:-/var/lib/tsblock}
PIDFILE=${TSBLOCK_PIDFILE:-$(dirname "$SOCKET")/tsblock.pid}
LOG=${TSBLOCK_LOG:-/var/log/tsblock.log}
FOREGROUND=0
if [ "${1:-}" = "--stop" ]; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill -TERM "$(cat "$PIDFILE")"
    for _ in $(seq 1 350); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"; echo "tsblock stopped"
  else
    echo "tsblock is not running"
  fi
  exit 0
fi
# serving_since OFFSET: the log has a "serving" line past byte OFFSET (the store is open).
serving_since() { tail -c +"$(($1 + 1))" "$LOG" 2>/dev/null | grep -q '"msg":"serving"'; }
log_size() { stat -c %s "$LOG" 2>/dev/null || echo 0; }
if [ "${1:-}" = "--restart" ]; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    from=$(log_size)
    kill -HUP "$(cat "$PIDFILE")"
    for _ in $(seq 1 600); do serving_since "$from" && { echo "tsblock restarted on $SOCKET"; exit 0; }; sleep 0.1; done
    echo "tsblock did not serve again in 60 s; see $LOG" >&2; exit 1
  fi
  echo "tsblock is not running" >&2; exit 1
fi
if [ "${1:-}" = "--foreground" ]; then FOREGROUND=1; shift; fi

scripts/install-deps.sh
export PATH=/usr/local/bin:$PATH  # where scripts/install-node.sh puts Node >= 20

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "tsblock already running (pid $(cat "$PIDFILE")) on $SOCKET"; exit 0
fi

# The daemon takes the launcher's socket because it is bound to the path --socket names.
CMD=(node "$PWD/scripts/launch.mjs" "$SOCKET" -- node "$PWD/dist/cli.js" serve --root "$ROOT" --socket "$SOCKET" "$@")
if [ "$FOREGROUND" = 1 ]; then exec "${CMD[@]}"; fi

mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOG")"
from=$(log_size)
nohup "${CMD[@]}" >>"$LOG" 2>&1 &
echo $! >"$PIDFILE"
# Ready when the daemon's store is open: the socket answers earlier (calls wait
# for the store), but a start that fails must not be reported as serving.
ready=0
for _ in $(seq 1 300); do
  if serving_since "$from"; then ready=1; break; fi
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "tsblock failed to start; last log lines:" >&2; tail -20 "$LOG" >&2; rm -f "$PIDFILE"; exit 1; }
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "tsblock did not serve on $SOCKET in 30 s; see $LOG" >&2; exit 1; }
cat <<MSG
tsblock is serving on $SOCKET (pid $(cat "$PIDFILE"), root $ROOT, log $LOG).

Plug it into containerd (/etc/containerd/config.toml), then restart containerd:

  [proxy_plugins.tsblock]
    type = "snapshot"
    address = "$SOCKET"

and use it:  ctr images pull --snapshotter tsblock docker.io/library/busybox:latest
             ctr run --rm --snapshotter tsblock -t docker.io/library/busybox:latest demo sh
MSG
