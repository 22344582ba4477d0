# Shared by bench/rss-1m.sh and bench/appliance-mem.sh (sourced, not run).
# Expects BIN (the release binaries) and WORK (the script's temp dir); sets
# SERVER (the PID) and URL in `start_server`.

# PID: the memory lines of /proc/PID/status, in MiB, on one line.
mem() {
    awk '/^(VmHWM|VmRSS|RssAnon|RssFile):/ { printf "%s %.1f MiB  ", $1, $2 / 1024 } END { print "" }' \
        "/proc/$1/status"
}

# PID: SIGTERM it and reap it.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# DATA-DIR [SERVE-ARGS...]: starts `control-plane serve` on a loopback port 0
# and waits (at most 60 s) until it says where it listens.
start_server() {
    local data=$1
    shift
    "$BIN/control-plane" serve --data-dir "$data" --listen 127.0.0.1:0 "$@" \
        > "$WORK/serve.out" 2> "$WORK/serve.log" &
    SERVER=$!
    for _ in $(seq 600); do
        grep -q '^listening on ' "$WORK/serve.out" 2>/dev/null && break
        kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
        sleep 0.1
    done
    URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
    [ -n "$URL" ] || { echo "the server did not start; log:"; cat "$WORK/serve.log"; exit 1; }
}
