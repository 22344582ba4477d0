#!/usr/bin/env bash
# The appliance agent's memory and the offline `appliance check` (issue 8):
# targets RSS < 30 MB and `check` offline in < 50 ms. docs/BENCHMARKS.md,
# "issue 8: memory and the offline check", records the results.
#
#   bench/appliance-mem.sh                 60 s online, 30 s offline
#   ONLINE=300 OFFLINE=60 bench/appliance-mem.sh
#
# Steps: a control plane on a fresh temporary directory, one license whose
# heartbeat interval is 10 s (the shortest the settings allow), the real
# `appliance` activated on its own data directory and `appliance run` for
# ONLINE seconds, heartbeating; then the control plane is stopped and the agent
# runs on for OFFLINE seconds, its heartbeats failing; the agent's peak RSS
# (VmHWM) after each. Then `hyperfine` times `appliance check` offline, with
# the agent running (the check asks it over its status socket) and with it
# stopped (the check opens the local state itself), next to two floors in the
# same invocation: `appliance --version` (the same binary's start, argument
# parsing and exit) and `true`. Everything is stopped by PID and removed at the
# end. Needs curl, hyperfine (Debian: `apt-get install hyperfine`) and python3.
# Not part of the test suite: run it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

ONLINE="${ONLINE:-60}"
OFFLINE="${OFFLINE:-30}"
for tool in curl hyperfine python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool"; exit 1; }
done
cargo build --release --locked -p control-plane -p appliance --bins
BIN="$PWD/target/release"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/appliance-mem.XXXXXX")
SERVER=""
AGENT=""
# shellcheck source=bench/common.sh
. bench/common.sh
cleanup() {
    if [ -n "$AGENT" ]; then stop "$AGENT"; fi
    if [ -n "$SERVER" ]; then stop "$SERVER"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== control plane"
"$BIN/control-plane" init --data-dir "$WORK/data" --json > "$WORK/init.json"
TOKEN=$(sed -n 's/.*"admin_token":"\([^"]*\)".*/\1/p' "$WORK/init.json")
start_server "$WORK/data"
LICENSE=$(curl -fsS -X POST "$URL/licenses" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d '{"customer":"bench","entitlements":{"product":"gateway","features":["vpn"],"limits":{"seats":25}},"policy":{"heartbeat_interval_secs":10}}')
LICENSE_ID=$(printf '%s' "$LICENSE" | sed -n 's/.*"id":"\(lic_[0-9a-f]*\)".*/\1/p')
printf '%s' "$LICENSE" | sed -n 's/.*"license_key":"\([^"]*\)".*/\1/p' > "$WORK/license.key"
curl -fsS "$URL/.well-known/licensing-trust.json" > "$WORK/trust.json"

export APPLIANCE_DATA_DIR="$WORK/appliance" APPLIANCE_TRUST_FILE="$WORK/trust.json"
APP="$BIN/appliance"
echo "== appliance activate, then run for $ONLINE s online"
"$APP" activate --server "$URL" --license-id "$LICENSE_ID" --key-file "$WORK/license.key"
"$APP" run 2> "$WORK/agent.log" &
AGENT=$!
sleep "$ONLINE"
"$APP" status
echo "   agent online:  $(mem "$AGENT")"

echo "== control plane stopped; the agent runs on for $OFFLINE s offline"
stop "$SERVER"
SERVER=""
sleep "$OFFLINE"
"$APP" status
echo "   agent offline: $(mem "$AGENT")"

echo "== appliance check, offline: hyperfine"
# With the agent running: the check asks it over the status socket.
hyperfine -N --warmup 10 --runs 200 --export-json "$WORK/running.json" \
    -n 'check (agent running)' "$APP check" \
    -n 'appliance --version' "$APP --version" \
    -n 'true' "true"
stop "$AGENT"
AGENT=""
# With no agent: the check opens the local state itself.
hyperfine -N --warmup 10 --runs 200 --export-json "$WORK/idle.json" \
    -n 'check (no agent)' "$APP check" \
    -n 'appliance --version' "$APP --version" \
    -n 'true' "true"
python3 - "$WORK/running.json" "$WORK/idle.json" <<'PY'
import json, sys
for path in sys.argv[1:]:
    results = json.load(open(path))["results"]
    check, version, true = (r["median"] * 1000 for r in results)
    print(f"{results[0]['command']}: median {check:.2f} ms; "
          f"appliance --version {version:.2f} ms (ratio {check / version:.2f}); "
          f"true {true:.2f} ms (ratio {check / true:.1f})")
PY
