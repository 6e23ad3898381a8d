#!/usr/bin/env bash
# Server CPU per request, counted in instructions (callgrind), for the hot paths of issue 15:
# read one job, list a page of 100, submit. Instruction counts do not depend on what else
# runs on the machine, so two builds can be compared on a loaded machine, where wall-clock
# figures (scripts/bench.sh) are noise.
#
# Usage: scripts/bench-instructions.sh [sqlite|postgres] [N]
#   BENCH_CPU=1: no valgrind; prints the server's CPU time (user + system, from /proc, so the
#   kernel's share — thread wake-ups, context switches — counts too) per request over N
#   requests instead. BENCH_WRK=1: no valgrind; wrk (2 threads, 8 connections, 5 s) on each
#   path instead (req/s, p99, server CPU per request; concurrent submissions form group-commit
#   batches), for a quick side-by-side of two builds. BENCH_ONLY=submit: that path only.
#   Starts the release server (target/release/hpcsera, or $CARGO_TARGET_DIR's) under
#   `valgrind --tool=callgrind` with instrumentation off, sets up a user, tokens, a job type,
#   one job and BENCH_LIST_JOBS (default 100,000) seeded jobs, then for each path switches
#   instrumentation on, sends N (default 500) requests one after another over one keep-alive
#   connection, and prints the instructions the server executed per request. The PostgreSQL
#   figure counts the server process only (not PostgreSQL's). Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND="${1:-sqlite}"
N="${2:-500}"
LIST_JOBS="${BENCH_LIST_JOBS:-100000}"
BIN="${BENCH_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/hpcsera}"
PG_ADMIN_URL="${BENCH_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
PORT=$((19000 + RANDOM % 1000))
WORK="$(mktemp -d /tmp/hpcsera-instr.XXXXXX)"
PID=""
PG_DB=""
cleanup() {
    set +e
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    [ -n "$PG_DB" ] && psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$PG_DB\"" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

case "$BACKEND" in
    sqlite) DB=(--data-dir "$WORK/data") ;;
    postgres)
        PG_DB="hpcsera_instr_$$"
        psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
        DB=(--database-url "${PG_ADMIN_URL%/*}/$PG_DB") ;;
    *) echo "usage: $0 [sqlite|postgres] [N]" >&2; exit 2 ;;
esac
admin() { "$BIN" admin "${DB[@]}" "$@" 2>>"$WORK/admin.log"; }
admin user add bench >/dev/null
admin project add bench >/dev/null
admin member add --user bench --project bench >/dev/null
CLIENT=$(admin token create --user bench --project bench --roles all --name client | tail -n1)
AGENT=$(admin token create --user bench --project bench --site bench --name agent \
    --roles GET_Job,UPDATE_JobStatus,GET_Code | tail -n1)
HPCSERA_LOG=error "$BIN" bench seed "${DB[@]}" --user bench --project bench --site bench \
    --job-type noop --jobs "$LIST_JOBS" >/dev/null 2>&1
if [ -n "${BENCH_DROP_STAT4:-}" ] && [ "$BACKEND" = sqlite ]; then
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM sqlite_stat4"); c.commit()' "$WORK/data/hpcsera.db"
fi

VALGRIND=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.%p")
[ -n "${BENCH_CPU:-}${BENCH_WRK:-}" ] && VALGRIND=()
HPCSERA_LOG=warn "${VALGRIND[@]}" "$BIN" server "${DB[@]}" --listen "127.0.0.1:$PORT" \
    --rate-limit-per-second 0 >"$WORK/server.log" 2>&1 &
PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 600); do curl -s -o /dev/null "$URL/healthz" && break; sleep 0.2; done
curl -sf -X PUT "$URL/api/v1/sites/bench/jobTypes" -H "Authorization: Bearer $AGENT" \
    -H 'Content-Type: application/json' \
    -d '{"jobTypes":[{"name":"noop","parameters":[{"name":"tag","type":"string","pattern":"[a-z][a-z0-9-]*","default":"x"}],"subJobs":[{"name":"run","kind":"batch"}]}]}' >/dev/null
JOB=$(curl -sf -X POST "$URL/api/v1/job" -H "Authorization: Bearer $CLIENT" \
    -H 'Content-Type: application/json' -d '{"site":"bench","jobType":"noop"}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

# requests METHOD PATH BODY N: N requests over one keep-alive connection (warm-up first).
requests() {
    BENCH_TOKEN="$CLIENT" python3 - "$PORT" "$@" <<'EOF'
import http.client, os, sys
port, method, path, body, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=600)
h = {"Authorization": "Bearer " + os.environ["BENCH_TOKEN"], "Content-Type": "application/json"}
for _ in range(n):
    c.request(method, path, body=body or None, headers=h)
    r = c.getresponse(); r.read()
    assert r.status < 300, r.status
EOF
}

# measure NAME METHOD PATH BODY: instructions per request.
measure() {
    if [ -n "${BENCH_WRK:-}" ]; then
        {
            printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$CLIENT"
            printf 'wrk.method = "%s"\nwrk.headers["Content-Type"] = "application/json"\n' "$2"
            [ -n "$4" ] && printf 'wrk.body = [[%s]]\n' "$4"
        } >"$WORK/wrk.lua"
        local t0 t1
        t0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
        wrk -t2 -c8 -d5s --latency -s "$WORK/wrk.lua" "$URL$3" >"$WORK/wrk.out" 2>&1
        t1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
        local n
        n=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
        printf '%s (%s): %s req/s, p99 %s, %s us of server CPU per request\n' "$1" "$BACKEND" \
            "$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")" "$(awk '$1 == "99%" {print $2}' "$WORK/wrk.out")" \
            "$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}')"
        grep -q 'Non-2xx' "$WORK/wrk.out" && grep 'Non-2xx' "$WORK/wrk.out"
        return
    fi
    requests "$2" "$3" "$4" 20
    sleep 1
    if [ -n "${BENCH_CPU:-}" ]; then
        local t0 t1
        t0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
        requests "$2" "$3" "$4" "$N"
        t1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
        printf '%s (%s): %s us of server CPU per request (%s requests)\n' "$1" "$BACKEND" \
            "$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="$N" 'BEGIN {printf "%.0f", t / hz * 1e6 / n}')" "$N"
        return
    fi
    callgrind_control -z "$PID" >/dev/null
    callgrind_control -i on "$PID" >/dev/null
    requests "$2" "$3" "$4" "$N"
    callgrind_control -i off "$PID" >/dev/null
    callgrind_control -d "$1" "$PID" >/dev/null
    sleep 1
    local f total
    f=$(grep -l "^desc: Trigger: dump $1\$" "$WORK"/cg.*)
    total=$(awk '/^totals:/ {print $2; exit}' "$f")
    printf '%s (%s): %s instructions per request (%s requests)\n' "$1" "$BACKEND" \
        "$(awk -v t="$total" -v n="$N" 'BEGIN {printf "%.0f", t / n}')" "$N"
    [ -n "${BENCH_KEEP:-}" ] && cp "$f" "${BENCH_KEEP_DIR:-/tmp}/callgrind.$BACKEND.$1" || true
}
only() { [ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = "$1" ]; }
if only read; then measure read GET "/api/v1/job/$JOB" ""; fi
if only list; then measure list GET "/api/v1/job/findJobsByStatus?limit=100" ""; fi
if only submit; then
    measure submit POST "/api/v1/job" '{"site":"bench","jobType":"noop","parameters":{"tag":"run-7"}}'
fi
