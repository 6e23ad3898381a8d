#!/usr/bin/env bash
# Idle long-poll memory only: a release server on SQLite in a temp dir, 200 dispatches (as
# scripts/bench.sh does before it), then `hpcsera bench longpolls --n N`; prints its line.
# Usage: scripts/bench-longpolls.sh [N] (BENCH_NO_BUILD=1 skips the build; BENCH_NO_DISPATCH=1
# skips the dispatches; extra server environment passes through, e.g. MALLOC_ARENA_MAX=2).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
N="${1:-1000}"
BIN="${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/hpcsera}"
if [ -z "${BENCH_NO_BUILD:-}" ]; then (cd "$ROOT" && nice cargo build --release -q -p hpcsera); fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
WORK="$(mktemp -d /tmp/hpcsera-lp.XXXXXX)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; fi
    if [ -n "${BENCH_LOG:-}" ]; then cp "$WORK/server.log" "$BENCH_LOG"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$((19000 + RANDOM % 1000))
URL="http://127.0.0.1:$PORT"
DB=(--data-dir "$WORK/data")
admin() { "$BIN" admin "${DB[@]}" "$@" 2>>"$WORK/admin.log"; }
admin user add bench >/dev/null
admin project add bench >/dev/null
admin member add --user bench --project bench >/dev/null
admin token create --user bench --project bench --roles all --name client | tail -n1 >"$WORK/client.token"
admin token create --user bench --project bench --site bench --name agent \
    --roles GET_Job,UPDATE_JobStatus,GET_Code | tail -n1 >"$WORK/agent.token"
chmod 600 "$WORK"/*.token
HPCSERA_LOG=warn ${BENCH_WRAP:-} "$BIN" server "${DB[@]}" --listen "127.0.0.1:$PORT" --rate-limit-per-second 0 \
    >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "$URL/healthz" && break; sleep 0.1; done
curl -sf -X PUT "$URL/api/v1/sites/bench/jobTypes" -H "Authorization: Bearer $(cat "$WORK/agent.token")" \
    -H 'Content-Type: application/json' \
    -d '{"jobTypes":[{"name":"noop","subJobs":[{"name":"run","kind":"batch"}]}]}' >/dev/null
if [ -z "${BENCH_NO_DISPATCH:-}" ]; then
    "$BIN" bench dispatch --url "$URL" --token-file "$WORK/client.token" \
        --agent-token-file "$WORK/agent.token" --site bench --job-type noop --n 200
fi
"$BIN" bench longpolls --url "$URL" --token-file "$WORK/agent.token" --pid "$PID" --n "$N"
if [ -n "${BENCH_HOLD:-}" ]; then echo "server pid $PID; holding $BENCH_HOLD s"; sleep "$BENCH_HOLD"; fi
