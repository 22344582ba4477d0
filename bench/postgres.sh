#!/usr/bin/env bash
# Heartbeat throughput on PostgreSQL, one and two replicas, beside sled, in
# one invocation (issue 9; docs/BENCHMARKS.md "issue 9: PostgreSQL and
# replicas" records the results). Each round runs `fleet run --spawn` three
# times, in turn: on a fresh sled directory, on a fresh PostgreSQL database
# with one replica, and on another with two replicas sharing it (each
# appliance's heartbeats alternate between them). Each run measures its own
# floors (bare and sign-only endpoints), so each result is also a ratio.
#
#   bench/postgres.sh                   3 rounds, 2,000 licenses, 64 connections, 10 s
#   ROUNDS=1 DURATION=5 bench/postgres.sh
#
# PostgreSQL is Debian's, started by scripts/postgres with its durable
# defaults (fsync on, synchronous_commit on: a commit is on disk when the
# control plane answers), in a temporary directory, and stopped by its PID on
# every way out. It shares the two cores with the control plane and the load.
# Too long for the test suite: run it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
LICENSES="${LICENSES:-2000}"
CONCURRENCY="${CONCURRENCY:-64}"
DURATION="${DURATION:-10}"
cargo build --release --locked -p control-plane -p bench --bins
BIN="$PWD/target/release"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-pg.XXXXXX")
# As root, the server runs as `postgres`, which must reach its directory inside.
chmod 755 "$WORK"
cleanup() {
    scripts/postgres stop "$WORK/pg" || true
    rm -rf "$WORK"
}
trap cleanup EXIT
SERVER_URL=$(scripts/postgres start "$WORK/pg" --durable)
BASE=${SERVER_URL%/postgres}

fleet() {
    "$BIN/fleet" run --spawn "$BIN/control-plane" --licenses "$LICENSES" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" "$@"
}

for round in $(seq "$ROUNDS"); do
    echo "== round $round: sled"
    fleet
    for replicas in 1 2; do
        db="fleet_${round}_${replicas}"
        psql -q "$SERVER_URL" -c "CREATE DATABASE $db"
        echo "== round $round: PostgreSQL, $replicas replica(s)"
        fleet --store "$BASE/$db" --replicas "$replicas"
    done
done
