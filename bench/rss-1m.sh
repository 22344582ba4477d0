#!/usr/bin/env bash
# The control plane's memory with 1,000,000 licenses (issue 8): the real release
# server on a data directory holding a million licenses, its resident memory
# right after start, under the fleet simulator's load, during a full health
# sweep, and with both at once. docs/BENCHMARKS.md, "issue 8: memory and the
# offline check", records the results.
#
#   bench/rss-1m.sh                  a million licenses (about 2.4 GB of disk, 5 to 10 minutes)
#   LICENSES=100000 bench/rss-1m.sh  fewer
#   RSS_DIR=/big/disk bench/rss-1m.sh  the parent of the temporary directory [default: $TMPDIR or /tmp]
#
# Steps: `control-plane init` on a fresh directory; the `populate` example adds
# the licenses straight through the store while no server runs (sled is
# single-process); then the real `control-plane serve` on it, rate limits off as
# `fleet run --spawn` has them:
#   1. with the scheduled sweep off (--sweep-interval 0): memory after start,
#      then under `fleet run --server` (2,000 more licenses, heartbeats);
#   2. restarted with --sweep-interval 1: the sweep at start over the whole
#      fleet (5,000 licenses to expire, 5,000 to suspend), then sweeps back to
#      back; memory after the first;
#   3. the fleet's load again while those sweeps run.
# (`POST /licenses/health/sweep` cannot be used: a sweep of a million takes
# longer than the server's 30 s request timeout, and is answered 408.)
# Before each load the kernel's peak-RSS mark is reset (`echo 5 >
# /proc/PID/clear_refs`), so the VmHWM after it is that load's own peak. The
# server is stopped by its PID and the directory removed on every way out.
# Too long for the test suite: run it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

LICENSES="${LICENSES:-1000000}"
cargo build --release --locked -p control-plane -p bench --bins
cargo build --release --locked -p control-plane --example populate
BIN="$PWD/target/release"

WORK=$(mktemp -d "${RSS_DIR:-${TMPDIR:-/tmp}}/rss-1m.XXXXXX")
SERVER=""
# shellcheck source=bench/common.sh
. bench/common.sh
cleanup() {
    if [ -n "$SERVER" ]; then stop "$SERVER"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
DATA="$WORK/data"

reset_peak() { echo 5 > "/proc/$SERVER/clear_refs"; }
fleet() {
    "$BIN/fleet" run --server "$URL" --token "$TOKEN" --server-pid "$SERVER" \
        --licenses 2000 --concurrency 64 --duration 8
}

echo "== control-plane init --data-dir $DATA"
"$BIN/control-plane" init --data-dir "$DATA" --json > "$WORK/init.json"
TOKEN=$(sed -n 's/.*"admin_token":"\([^"]*\)".*/\1/p' "$WORK/init.json")

echo "== populate: $LICENSES licenses"
"$BIN/examples/populate" --data-dir "$DATA" --licenses "$LICENSES"
echo "   data directory: $(du -sh "$DATA" | cut -f1)"

# serve EXTRA-ARGS...: the server on the data directory, rate limits off.
serve() {
    start_server "$DATA" \
        --heartbeats-per-minute 0 --activations-per-minute 0 --auth-failures-per-minute 0 "$@"
}
stop_server() {
    stop "$SERVER"
    SERVER=""
}
sweeps() { grep -c 'health sweep' "$WORK/serve.log" || true; }

echo "== control-plane serve, no scheduled sweep (--sweep-interval 0)"
serve --sweep-interval 0
sleep 2
echo "   after start:          $(mem "$SERVER")"

echo "== phase 1: fleet load (2,000 more licenses issued and activated, then heartbeats)"
reset_peak
fleet
echo "   after the load:       $(mem "$SERVER")"
stop_server

# `POST /licenses/health/sweep` cannot sweep a million: the request times out
# (408) after 30 s. The server's own scheduled sweep has no such limit.
echo "== phase 2: control-plane serve --sweep-interval 1: a sweep at start, then back to back"
SECONDS=0
serve --sweep-interval 1
echo "   after start:          $(mem "$SERVER")"
until [ "$(sweeps)" -ge 1 ]; do
    kill -0 "$SERVER" || { cat "$WORK/serve.log"; exit 1; }
    sleep 0.5
done
echo "   the first sweep ended ${SECONDS} s after start: $(grep 'health sweep' "$WORK/serve.log" | head -1 | sed 's/\x1b\[[0-9;]*m//g')"
echo "   after the first sweep: $(mem "$SERVER")"

echo "== phase 3: fleet load again, while sweeps (nothing left to change) run back to back"
reset_peak
BEFORE=$(sweeps)
fleet
echo "   sweeps that ended during the load: $(( $(sweeps) - BEFORE ))"
echo "   after load and sweeps: $(mem "$SERVER")"
