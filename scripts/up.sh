#!/usr/bin/env bash
# Brings tsblock up on this machine with a working default: installs what it
# needs (Debian 12), builds, and starts `tsblock serve` in the background with
# the blockfile backend under /var/lib/tsblock, listening on
# /run/tsblock/tsblock.sock. No config file or hand-made image is needed.
#
#   sudo scripts/up.sh               start (or report that it already runs)
#   sudo scripts/up.sh --foreground  run in this terminal instead
#   sudo scripts/up.sh --stop        stop the background daemon (SIGTERM)
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
    for _ in $(seq 1 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"; echo "tsblock stopped"
  else
    echo "tsblock is not running"
  fi
  exit 0
fi
if [ "${1:-}" = "--foreground" ]; then FOREGROUND=1; shift; fi

scripts/install-deps.sh
export PATH=/usr/local/bin:$PATH  # where scripts/install-node.sh puts Node >= 20

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "tsblock already running (pid $(cat "$PIDFILE")) on $SOCKET"; exit 0
fi

CMD=(node "$PWD/dist/cli.js" serve --root "$ROOT" --socket "$SOCKET" "$@")
if [ "$FOREGROUND" = 1 ]; then exec "${CMD[@]}"; fi

mkdir -p "$(dirname "$PIDFILE")"
nohup "${CMD[@]}" >>"$LOG" 2>&1 &
echo $! >"$PIDFILE"
# Ready when the socket answers (a stale file from a killed daemon does not count).
answers() { node -e 'const s=require("net").connect(process.argv[1]);s.on("connect",()=>process.exit(0));s.on("error",()=>process.exit(1))' "$SOCKET"; }
ready=0
for _ in $(seq 1 300); do
  if [ -S "$SOCKET" ] && answers; then ready=1; break; fi
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "tsblock failed to start; last log lines:" >&2; tail -20 "$LOG" >&2; rm -f "$PIDFILE"; exit 1; }
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "tsblock did not answer on $SOCKET in 30 s; see $LOG" >&2; exit 1; }
cat <<MSG
tsblock is serving on $SOCKET (pid $(cat "$PIDFILE"), root $ROOT, log $LOG).

Plug it into containerd (/etc/containerd/config.toml), then restart containerd:

  [proxy_plugins.tsblock]
    type = "snapshot"
    address = "$SOCKET"

and use it:  ctr images pull --snapshotter tsblock docker.io/library/busybox:latest
             ctr run --rm --snapshotter tsblock -t docker.io/library/busybox:latest demo sh
MSG
