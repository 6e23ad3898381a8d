#!/usr/bin/env bash
# The benchmark harness: hpcsera side by side with slurmrestd on this machine, in one run.
#
# Starts everything on loopback — the server (release build) on SQLite and on PostgreSQL
# (127.0.0.1:5432; a database of its own, dropped at the end), and slurmrestd (Debian's
# `slurmrestd` with JWT, as an unprivileged user) — runs bounded loads with wrk, stops by
# itself, leaves nothing running, and prints one table: benchmark, our figure, slurmrestd's,
# ratio, target, met. BENCHMARKS.md records a run and what each figure means.
#
# Usage: sudo scripts/bench.sh          (root: slurmrestd needs a JWT set-up; without root the
#                                        slurmrestd column is empty)
# Environment:
#   BENCH_SECONDS=10          length of each wrk run
#   BENCH_CONNECTIONS=32      wrk connections for reads (2 threads)
#   BENCH_SUBMIT_CONNECTIONS=8  wrk connections for submissions
#   BENCH_LIST_JOBS=1000000   jobs stored for the listing benchmark
#   BENCH_PIPELINES=10        3-step pipelines run one after the other (sub-job hand-off)
#   BENCH_AGENT_ONLY=1        leave out dispatch, idle long polls and the listing (seeding)
#   BENCH_SCALE_JOBS=300      jobs the three agents of the scale-out run take
#   BENCH_BACKENDS="sqlite postgres"
#   BENCH_PG_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres (an admin connection)
#   BENCH_NO_BUILD=1          use the existing release binary
#   BENCH_NO_SLURM=1          leave slurmrestd out
#   BENCH_KEEP=1              keep the work directory (wrk reports, logs) for a look
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
CONNS="${BENCH_CONNECTIONS:-32}"
SUBMIT_CONNS="${BENCH_SUBMIT_CONNECTIONS:-8}"
LIST_JOBS="${BENCH_LIST_JOBS:-1000000}"
BACKENDS="${BENCH_BACKENDS:-sqlite postgres}"
PG_ADMIN_URL="${BENCH_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
SLURM_USER="${BENCH_SLURM_USER:-hpcsera-bench}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/hpcsera"
PORT_BASE=$((18000 + RANDOM % 1000 * 10))

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

WORK="$(mktemp -d /tmp/hpcsera-bench.XXXXXX)"
chmod 755 "$WORK"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
PIDS=()
PG_DB=""
SLURM_JOBS_SUBMITTED=0

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null && for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
    if [ "$SLURM_JOBS_SUBMITTED" -eq 1 ]; then scancel -u "$SLURM_USER" 2>/dev/null; fi
    if [ -n "$PG_DB" ]; then psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$PG_DB\"" >/dev/null 2>&1; fi
    if [ -n "${BENCH_KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "wrk is missing (apt-get install wrk)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    log "building the release binary"
    nice cargo build --release -q -p hpcsera
fi
[ -x "$BIN" ] || die "$BIN is missing"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
TICKS="$(getconf CLK_TCK)"

# --- helpers ---------------------------------------------------------------------------------
# record NAME OURS PEER TARGET MET
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# wrk_run OUT URL LUA CONNECTIONS [SECONDS]: runs wrk, leaves its report in OUT.
wrk_run() {
    local out=$1 url=$2 lua=$3 conns=$4 secs=${5:-$SECONDS_PER_RUN}
    wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$lua" "$url" >"$out" 2>&1 || true
    if grep -q 'Non-2xx' "$out"; then log "$(grep 'Non-2xx' "$out") for $url"; fi
}
rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
total_requests() { awk '/requests in/ {print $1}' "$1"; }
non2xx() { awk '/Non-2xx/ {print $5}' "$1" | grep . || echo 0; }
# pct FILE 99% → the latency in ms
pct() {
    awk -v p="$2" '$1 == p {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000;
        printf "%.2f", v }' "$1"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "") printf "%.1f×", a / b; else print "—" }'; }

# A wrk script: method, body and the Authorization header from the environment (never argv).
lua_script() {
    local file=$1 method=$2 body=${3:-}
    cat >"$file" <<EOF
wrk.method = "$method"
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_TOKEN") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") end
if os.getenv("BENCH_SLURM_TOKEN") then
  wrk.headers["X-SLURM-USER-NAME"] = os.getenv("BENCH_SLURM_USER")
  wrk.headers["X-SLURM-USER-TOKEN"] = os.getenv("BENCH_SLURM_TOKEN")
end
EOF
    if [ -n "$body" ]; then printf 'wrk.body = [[%s]]\n' "$body" >>"$file"; fi
}

# admin_quiet DIR ARGS...: the admin CLI, its notes to DIR/admin.log (a secret is stdout's
# last line).
admin_quiet() {
    local dir=$1; shift
    "$BIN" admin "$@" 2>>"$dir/admin.log"
}

wait_http() {
    for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
    die "$1 does not answer"
}

# --- hpcsera on one backend --------------------------------------------------------------------
# bench_backend NAME PORT DBARGS...: starts a server, runs every hpcsera load, stops it.
bench_backend() {
    local name=$1 port=$2; shift 2
    local db=("$@") url="http://127.0.0.1:$port" dir="$WORK/$name"
    mkdir -p "$dir"
    local admin=(admin_quiet "$dir" "${db[@]}")
    "${admin[@]}" user add bench >/dev/null
    "${admin[@]}" project add bench >/dev/null
    "${admin[@]}" member add --user bench --project bench >/dev/null
    "${admin[@]}" token create --user bench --project bench --roles all --name client | tail -n1 >"$dir/client.token"
    "${admin[@]}" token create --user bench --project bench --site bench --name agent \
        --roles GET_Job,UPDATE_JobStatus,GET_Code | tail -n1 >"$dir/agent.token"
    chmod 600 "$dir"/*.token
    HPCSERA_LOG=warn "$BIN" server "${db[@]}" --listen "127.0.0.1:$port" --rate-limit-per-second 0 \
        >"$dir/server.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "$url/healthz"
    curl -sf -X PUT "$url/api/v1/sites/bench/jobTypes" -H "Authorization: Bearer $(cat "$dir/agent.token")" \
        -H 'Content-Type: application/json' \
        -d '{"jobTypes":[{"name":"noop","subJobs":[{"name":"run","kind":"batch"}]}]}' >/dev/null

    # BENCH_AGENT_ONLY=1: leave out dispatch, idle long polls and the listing (seeding).
    local quick="${BENCH_AGENT_ONLY:-}"
    if [ -z "$quick" ]; then
    log "$name: dispatch POST → claim"
    local d
    d=$("$BIN" bench dispatch --url "$url" --token-file "$dir/client.token" \
        --agent-token-file "$dir/agent.token" --site bench --job-type noop --n 200)
    local p50
    p50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$d")
    record "dispatch POST→claim p50 ($name)" "${p50} ms" "—" "≤ 50 ms" "$(awk -v v="$p50" 'BEGIN{print (v <= 50) ? "yes" : "no"}')"

    log "$name: 1,000 idle long polls"
    local m
    m=$("$BIN" bench longpolls --url "$url" --token-file "$dir/agent.token" --pid "$pid" --n 1000)
    local rss per
    rss=$(sed -n 's/.* rss_kib=\([0-9]*\).*/\1/p' <<<"$m")
    per=$(sed -n 's/.*per_conn_kib=\([0-9.]*\).*/\1/p' <<<"$m")
    record "RSS with 1,000 idle long polls ($name)" "$((rss / 1024)) MiB" "—" "≤ 64 MiB" "$([ "$rss" -le 65536 ] && echo yes || echo no)"
    record "memory per idle connection ($name)" "$per KiB" "—" "≤ 16 KiB" "$(awk -v v="$per" 'BEGIN{print (v <= 16) ? "yes" : "no"}')"
    sleep 1
    fi

    if [ "$name" = sqlite ]; then
        log "$name: batch-status calls per cycle"
        bench_status_calls "$url" "$dir" "${admin[@]}"
        log "$name: sub-job hand-off (3-step pipeline, local adapter)"
        bench_pipeline "$url" "$dir" "${admin[@]}"
    fi
    if [ "$name" = postgres ]; then
        log "$name: queued on one replica, claimed on another"
        bench_replica_dispatch "$url" $((port + 5)) "$dir" "${db[@]}"
    fi

    local job
    job=$(curl -sf -X POST "$url/api/v1/job" -H "Authorization: Bearer $(cat "$dir/client.token")" \
        -H 'Content-Type: application/json' -d '{"site":"bench","jobType":"noop"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    log "$name: read one job"
    lua_script "$dir/get.lua" GET
    BENCH_TOKEN="$(cat "$dir/client.token")" wrk_run "$dir/read.out" "$url/api/v1/job/$job" "$dir/get.lua" "$CONNS"
    echo "$(rps "$dir/read.out") $(pct "$dir/read.out" 99%)" >"$WORK/read.$name"
    if [ "$name" = sqlite ]; then
        # The ceiling of any read here: the same server, wrk and connections on GET /healthz
        # (no token, no database, a 15-byte answer) — what HTTP, the middleware and wrk on the
        # same two cores cost before a read does any work of its own.
        log "$name: the HTTP floor (GET /healthz)"
        wrk_run "$dir/floor.out" "$url/healthz" "$dir/get.lua" "$CONNS"
        echo "$(rps "$dir/floor.out") $(pct "$dir/floor.out" 99%)" >"$WORK/floor.$name"
    fi

    log "$name: submit"
    lua_script "$dir/post.lua" POST '{"site":"bench","jobType":"noop"}'
    local t0 t1
    t0=$(cpu_ticks "$pid")
    BENCH_TOKEN="$(cat "$dir/client.token")" wrk_run "$dir/submit.out" "$url/api/v1/job" "$dir/post.lua" "$SUBMIT_CONNS"
    t1=$(cpu_ticks "$pid")
    local n cpu
    n=$(total_requests "$dir/submit.out")
    cpu=$(awk -v t="$((t1 - t0))" -v hz="$TICKS" -v n="${n:-0}" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "—" }')
    echo "$(rps "$dir/submit.out") $cpu $(non2xx "$dir/submit.out")" >"$WORK/submit.$name"

    if [ "$name" = postgres ]; then
        log "$name: scale-out, 3 replicas behind a balancer"
        bench_scaleout "$url" "$port" "$dir" "$job" "${db[@]}"
    fi
    if [ -n "$quick" ]; then kill "$pid"; wait "$pid" 2>/dev/null || true; return; fi

    log "$name: seeding $LIST_JOBS jobs"
    HPCSERA_LOG=error "$BIN" bench seed "${db[@]}" --user bench --project bench --site bench --job-type noop --jobs "$LIST_JOBS" >&2
    log "$name: list a page of 100"
    BENCH_TOKEN="$(cat "$dir/client.token")" wrk_run "$dir/list.out" "$url/api/v1/job/findJobsByStatus?limit=100" "$dir/get.lua" "$CONNS"
    local lr lp
    lr=$(rps "$dir/list.out"); lp=$(pct "$dir/list.out" 99%)
    record "list a page of 100, $LIST_JOBS stored ($name): req/s" "$lr" "—" "≥ 3000" "$([ "${lr:-0}" -ge 3000 ] && echo yes || echo no)"
    record "list a page of 100, $LIST_JOBS stored ($name): p99" "$lp ms" "—" "≤ 20 ms" "$(awk -v v="$lp" 'BEGIN{print (v <= 20) ? "yes" : "no"}')"

    kill "$pid"; wait "$pid" 2>/dev/null || true
}

# --- one batch-status call per cycle ---------------------------------------------------------
# bench_status_calls URL DIR ADMIN...: a real agent (slurm preset) whose sbatch and squeue are
# counting stand-ins: sbatch hands out ids, squeue logs each call with the number of ids it
# was asked about and says RUNNING for all. With 1, 100 and 1,000 active jobs, the calls in
# five status cycles (status_interval_seconds = 1) are counted.
bench_status_calls() {
    local url=$1 dir=$2; shift 2
    local admin=("$@") fake="$dir/fake"
    local calls="$fake/calls"
    mkdir -p "$fake" "$dir/agent-work"
    echo 0 >"$fake/counter"
    : >"$calls"
    cat >"$fake/sbatch" <<END_SBATCH
#!/bin/bash
exec 9>>"$fake/lock"; flock 9
n=\$(( \$(cat "$fake/counter") + 1 )); echo "\$n" >"$fake/counter"; echo "\$n"
END_SBATCH
    cat >"$fake/squeue" <<END_SQUEUE
#!/bin/bash
ids="\${1#--jobs=}"
echo "\$(date +%s.%N) \$(tr ',' '\n' <<<"\$ids" | grep -c .)" >>"$calls"
tr ',' '\n' <<<"\$ids" | grep . | sed 's/\$/|RUNNING|None/'
END_SQUEUE
    printf '#!/bin/sh\nexit 0\n' >"$fake/none"
    chmod 755 "$fake"/sbatch "$fake"/squeue "$fake"/none
    "${admin[@]}" token create --user bench --project bench --site status --name status-agent \
        --roles GET_Job,UPDATE_JobStatus,GET_Code | tail -n1 >"$dir/status-agent.token"
    chmod 600 "$dir/status-agent.token"
    cat >"$dir/agent.toml" <<END_TOML
server_url = "$url"
token_file = "$dir/status-agent.token"
site = "status"
work_dir = "$dir/agent-work"
[poll]
long_poll_seconds = 1
idle_interval_seconds = 1
status_interval_seconds = 1
[limits]
max_active_jobs = 1000
[batch]
preset = "slurm"
submit = ["$fake/sbatch", "{script}"]
status = ["$fake/squeue", "--jobs={ids}"]
accounting = []
find = ["$fake/none"]
report = []
version = []
[[job_types]]
name = "noop"
[[job_types.sub_jobs]]
name = "run"
kind = "batch"
script = "true"
END_TOML
    HPCSERA_LOG=warn "$BIN" agent --config "$dir/agent.toml" >"$dir/agent.log" 2>&1 &
    local apid=$!
    PIDS+=("$apid")
    local client
    client="$(cat "$dir/client.token")"
    for _ in $(seq 1 100); do
        curl -sf "$url/api/v1/sites" -H "Authorization: Bearer $client" | grep -q '"name":"status"' && break
        sleep 0.1
    done
    local have=0 n waited mark c partial
    for n in 1 100 1000; do
        seq $((n - have)) | xargs -P 8 -I{} curl -sf -o /dev/null -X POST "$url/api/v1/job" \
            -H "Authorization: Bearer $client" -H 'Content-Type: application/json' \
            -d '{"site":"status","jobType":"noop"}'
        have=$n
        waited=0
        until [ "$(tail -n1 "$calls" | awk '{print $2}')" = "$n" ]; do
            sleep 0.5
            waited=$((waited + 1))
            if [ "$waited" -ge 240 ]; then log "the agent never had $n jobs active (see $dir/agent.log)"; break; fi
        done
        mark=$(wc -l <"$calls")
        sleep 5
        c=$(($(wc -l <"$calls") - mark))
        # Each call must have asked about all n jobs (one query per cycle, not one per job).
        partial=$(tail -n +"$((mark + 1))" "$calls" | awk -v n="$n" '$2 != n' | wc -l)
        record "batch-status calls in 5 s (1 s cycles), $n active jobs" "$c, each for all $n" "—" \
            "≤ 1 per cycle" "$([ "$c" -ge 1 ] && [ "$c" -le 6 ] && [ "$partial" -eq 0 ] && echo yes || echo no)"
    done
    kill "$apid"
    wait "$apid" 2>/dev/null || true
}

# --- sub-job hand-off ------------------------------------------------------------------------
# bench_pipeline URL DIR ADMIN...: a real agent on the local adapter with its default cycles
# (30 s long poll, 10 s status interval) runs a 3-step pipeline (login, batch, login), one job
# at a time, BENCH_PIPELINES times. Each step stamps the time (ns) when it starts and ends into
# `times` in the job's directory; a hand-off is one step's end stamp to the next one's start
# stamp (the agent's reaction plus the start of a process). End to end is the job's createdAt
# to its finishedAt (the server's clock: accepted to the end reported).
bench_pipeline() {
    local url=$1 dir=$2; shift 2
    local admin=("$@") n="${BENCH_PIPELINES:-10}"
    mkdir -p "$dir/pipe-work"
    "${admin[@]}" token create --user bench --project bench --site pipe --name pipe-agent \
        --roles GET_Job,UPDATE_JobStatus,GET_Code | tail -n1 >"$dir/pipe-agent.token"
    chmod 600 "$dir/pipe-agent.token"
    local stamp='date +%s%N >> times'
    cat >"$dir/pipe.toml" <<END_TOML
server_url = "$url"
token_file = "$dir/pipe-agent.token"
site = "pipe"
work_dir = "$dir/pipe-work"
[batch]
preset = "local"
[[job_types]]
name = "pipe"
[[job_types.sub_jobs]]
name = "pre"
kind = "login"
shell = "$stamp; $stamp"
[[job_types.sub_jobs]]
name = "run"
kind = "batch"
script = "$stamp; $stamp"
[[job_types.sub_jobs]]
name = "post"
kind = "login"
shell = "$stamp; $stamp"
END_TOML
    HPCSERA_LOG=warn "$BIN" agent --config "$dir/pipe.toml" >"$dir/pipe-agent.log" 2>&1 &
    local apid=$!
    PIDS+=("$apid")
    local client
    client="$(cat "$dir/client.token")"
    for _ in $(seq 1 100); do
        curl -sf "$url/api/v1/sites" -H "Authorization: Bearer $client" | grep -q '"name":"pipe"' && break
        sleep 0.1
    done
    sleep 1
    : >"$dir/pipe.e2e"
    local i job st
    for i in $(seq 1 "$n"); do
        job=$(curl -sf -X POST "$url/api/v1/job" -H "Authorization: Bearer $client" \
            -H 'Content-Type: application/json' -d '{"site":"pipe","jobType":"pipe"}' \
            | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
        st=""
        for _ in $(seq 1 3000); do
            st=$(curl -sf "$url/api/v1/job/$job" -H "Authorization: Bearer $client" \
                | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
            case "$st" in completed|failed|cancelled|lost) break ;; esac
            sleep 0.05
        done
        [ "$st" = completed ] || log "pipeline job $job ended $st (see $dir/pipe-agent.log)"
        # End to end by the server's clock: accepted (createdAt) to the end reported
        # (finishedAt), both in ms.
        curl -sf "$url/api/v1/job/$job" -H "Authorization: Bearer $client" | python3 -c '
import datetime, json, sys
j = json.load(sys.stdin)
t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print(round((t(j["finishedAt"]) - t(j["createdAt"])) * 1000))' >>"$dir/pipe.e2e"
    done
    kill "$apid"
    wait "$apid" 2>/dev/null || true
    # The hand-offs: stamps 2→3 and 4→5 of each job's six.
    find "$dir/pipe-work" -name times -exec awk 'NR == 2 || NR == 4 { e = $1 } NR == 3 || NR == 5 { printf "%.1f\n", ($1 - e) / 1e6 }' {} \; \
        | sort -n >"$dir/pipe.handoffs"
    local e50 emax h50 hmax
    e50=$(sort -n "$dir/pipe.e2e" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    emax=$(sort -n "$dir/pipe.e2e" | tail -n1)
    h50=$(awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }' "$dir/pipe.handoffs")
    hmax=$(tail -n1 "$dir/pipe.handoffs")
    record "sub-job hand-off (local adapter, $(wc -l <"$dir/pipe.handoffs") hand-offs): p50 / max" \
        "$h50 / $hmax ms" "—" "≤ 50 ms" "$(awk -v v="$hmax" 'BEGIN{print (v != "" && v <= 50) ? "yes" : "no"}')"
    record "3-step pipeline end to end (local adapter, $n jobs): p50 / max" "$e50 / $emax ms" "—" \
        "≤ 1500 ms" "$(awk -v v="$emax" 'BEGIN{print (v != "" && v <= 1500) ? "yes" : "no"}')"
}

# --- a second replica on PostgreSQL ----------------------------------------------------------
# bench_replica_dispatch URL PORT DIR DBARGS...: a second server on the same PostgreSQL
# database; POST /job on the first, the agent long-polls the second (LISTEN/NOTIFY).
bench_replica_dispatch() {
    local url=$1 port=$2 dir=$3; shift 3
    HPCSERA_LOG=warn "$BIN" server "$@" --listen "127.0.0.1:$port" --rate-limit-per-second 0 \
        >"$dir/server-b.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/healthz"
    local d p50
    d=$("$BIN" bench dispatch --url "$url" --agent-url "http://127.0.0.1:$port" \
        --token-file "$dir/client.token" --agent-token-file "$dir/agent.token" --site bench \
        --job-type noop --n 100)
    p50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$d")
    local p99
    p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$d")
    record "queued on replica A → claimed on replica B, p50 / p99 (PostgreSQL)" "$p50 / $p99 ms" "—" \
        "≤ 100 ms" "$(awk -v v="$p99" 'BEGIN{print (v != "" && v <= 100) ? "yes" : "no"}')"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

# --- scale-out on PostgreSQL ------------------------------------------------------------------
# bench_scaleout URL PORT DIR JOB DBARGS...: two more replicas on the same database (three in
# all) behind `hpcsera bench balance` (round robin per connection); reads and submissions
# through it, as on one server; then three agents of one site, each long-polling its own
# replica (counting stand-ins for sbatch/squeue), take BENCH_SCALE_JOBS jobs submitted through
# the balancer: every job must be submitted exactly once.
bench_scaleout() {
    local url=$1 port=$2 dir=$3 job=$4; shift 4
    local db=("$@") ports=("$port" $((port + 101)) $((port + 102))) bport=$((port + 100))
    local r pid
    for r in 1 2; do
        HPCSERA_LOG=warn "$BIN" server "${db[@]}" --listen "127.0.0.1:${ports[$r]}" --rate-limit-per-second 0 \
            >"$dir/server-$r.log" 2>&1 &
        PIDS+=("$!")
        wait_http "http://127.0.0.1:${ports[$r]}/healthz"
    done
    "$BIN" bench balance --listen "127.0.0.1:$bport" \
        --to "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}" >"$dir/balance.log" 2>&1 &
    local bpid=$!
    PIDS+=("$bpid")
    local burl="http://127.0.0.1:$bport"
    wait_http "$burl/healthz"
    log "postgres: 3 replicas: read one job"
    BENCH_TOKEN="$(cat "$dir/client.token")" wrk_run "$dir/read3.out" "$burl/api/v1/job/$job" "$dir/get.lua" "$CONNS"
    log "postgres: 3 replicas: submit"
    BENCH_TOKEN="$(cat "$dir/client.token")" wrk_run "$dir/submit3.out" "$burl/api/v1/job" "$dir/post.lua" "$SUBMIT_CONNS"
    local r1 s1 r3 s3
    read -r r1 _ <"$WORK/read.postgres"
    read -r s1 _ <"$WORK/submit.postgres"
    r3=$(rps "$dir/read3.out"); s3=$(rps "$dir/submit3.out")
    record "read one job, 3 replicas behind a balancer (PostgreSQL): req/s" "$r3 (one server: $r1)" "—" \
        "scales with replicas" "$(awk -v a="$r3" -v b="$r1" 'BEGIN{print (a > 1.5 * b) ? "yes" : "no"}')"
    record "durable submissions/s, 3 replicas behind a balancer (PostgreSQL)" "$s3 (one server: $s1)" "—" \
        "scales with replicas" "$(awk -v a="$s3" -v b="$s1" 'BEGIN{print (a > 1.5 * b) ? "yes" : "no"}')"

    # Three agents of one site, one per replica.
    local fake="$dir/scale-fake" n="${BENCH_SCALE_JOBS:-300}" i
    mkdir -p "$fake"
    echo 0 >"$fake/counter"
    : >"$fake/submitted"
    cat >"$fake/sbatch" <<END_SBATCH
#!/bin/bash
exec 9>>"$fake/lock"; flock 9
echo "\${1#--job-name=}" >>"$fake/submitted"
n=\$(( \$(cat "$fake/counter") + 1 )); echo "\$n" >"$fake/counter"; echo "\$n"
END_SBATCH
    cat >"$fake/squeue" <<END_SQUEUE
#!/bin/bash
ids="\${1#--jobs=}"
tr ',' '\n' <<<"\$ids" | grep . | sed 's/\$/|RUNNING|None/'
END_SQUEUE
    printf '#!/bin/sh\nexit 0\n' >"$fake/none"
    chmod 755 "$fake"/sbatch "$fake"/squeue "$fake"/none
    local apids=()
    for i in 0 1 2; do
        "$BIN" admin "${db[@]}" token create --user bench --project bench --site scale --name "scale-agent-$i" \
            --roles GET_Job,UPDATE_JobStatus,GET_Code 2>>"$dir/admin.log" | tail -n1 >"$dir/scale-$i.token"
        chmod 600 "$dir/scale-$i.token"
        mkdir -p "$dir/scale-work-$i"
        cat >"$dir/scale-$i.toml" <<END_TOML
server_url = "http://127.0.0.1:${ports[$i]}"
token_file = "$dir/scale-$i.token"
site = "scale"
work_dir = "$dir/scale-work-$i"
[limits]
max_active_jobs = 1000
[batch]
preset = "slurm"
submit = ["$fake/sbatch", "--job-name={job_name}", "{script}"]
status = ["$fake/squeue", "--jobs={ids}"]
accounting = []
find = ["$fake/none"]
report = []
version = []
[[job_types]]
name = "noop"
[[job_types.sub_jobs]]
name = "run"
kind = "batch"
script = "true"
END_TOML
        HPCSERA_LOG=warn "$BIN" agent --config "$dir/scale-$i.toml" >"$dir/scale-agent-$i.log" 2>&1 &
        apids+=("$!")
        PIDS+=("$!")
    done
    local client
    client="$(cat "$dir/client.token")"
    for _ in $(seq 1 100); do
        curl -sf "$burl/api/v1/sites" -H "Authorization: Bearer $client" | grep -q '"name":"scale"' && break
        sleep 0.1
    done
    sleep 1
    log "postgres: 3 replicas, 3 agents: $n jobs"
    seq "$n" | xargs -P 8 -I{} curl -sf -o /dev/null -X POST "$burl/api/v1/job" \
        -H "Authorization: Bearer $client" -H 'Content-Type: application/json' \
        -d '{"site":"scale","jobType":"noop"}'
    local waited=0
    until [ "$(sort -u "$fake/submitted" | wc -l)" -ge "$n" ] || [ "$waited" -ge 120 ]; do
        sleep 0.5; waited=$((waited + 1))
    done
    sleep 3
    local distinct total per
    distinct=$(sort -u "$fake/submitted" | wc -l)
    total=$(wc -l <"$fake/submitted")
    per=""
    for i in 0 1 2; do per="$per $(find "$dir/scale-work-$i" -name '*.sh' 2>/dev/null | wc -l)"; done
    record "jobs submitted twice, $n jobs, 3 replicas × 1 agent each (PostgreSQL)" \
        "$((total - distinct)) (of $distinct submitted; per agent:$per)" "—" "0" \
        "$([ "$total" -eq "$distinct" ] && [ "$distinct" -eq "$n" ] && echo yes || echo no)"
    for pid in "${apids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
    kill "$bpid"; wait "$bpid" 2>/dev/null || true
}

# --- slurmrestd ------------------------------------------------------------------------------
bench_slurmrestd() {
    local port=$1 url="http://127.0.0.1:$1" dir="$WORK/slurm"
    mkdir -p "$dir"
    bash "$ROOT/scripts/setup-slurmrestd.sh"
    local token
    token=$(scontrol token username="$SLURM_USER" lifespan=3600 | sed 's/^SLURM_JWT=//')
    runuser -u "$SLURM_USER" -- env SLURM_JWT=daemon \
        slurmrestd -s openapi/v0.0.38 -a rest_auth/jwt "127.0.0.1:$port" >"$dir/slurmrestd.log" 2>&1 &
    PIDS+=("$!")
    sleep 1
    export BENCH_SLURM_USER="$SLURM_USER" BENCH_SLURM_TOKEN="$token"
    local body='{"script":"#!/bin/sh\ntrue\n","job":{"name":"hpcsera-bench","hold":true,"current_working_directory":"/tmp","environment":{"PATH":"/bin:/usr/bin"}}}'
    lua_script "$dir/get.lua" GET
    lua_script "$dir/post.lua" POST "$body"
    SLURM_JOBS_SUBMITTED=1
    local job
    job=$(curl -s -X POST "$url/slurm/v0.0.38/job/submit" -H 'Content-Type: application/json' \
        -H "X-SLURM-USER-NAME: $SLURM_USER" -H "X-SLURM-USER-TOKEN: $token" -d "$body" \
        | sed -n 's/.*"job_id": *\([0-9]*\).*/\1/p')
    [ -n "$job" ] || die "slurmrestd did not submit a job (see $dir/slurmrestd.log)"
    log "slurmrestd: read one job"
    wrk_run "$dir/read.out" "$url/slurm/v0.0.38/job/$job" "$dir/get.lua" "$CONNS"
    echo "$(rps "$dir/read.out") $(pct "$dir/read.out" 99%)" >"$WORK/read.slurm"
    # slurmctld keeps ended jobs for MinJobAge (300 s) and refuses submissions past
    # MaxJobCount (10,000): after an earlier run, wait until they are gone.
    local waited=0
    while [ "$(squeue -h --states=all | wc -l)" -gt 2000 ] && [ "$waited" -lt 330 ]; do
        [ $((waited % 30)) -eq 0 ] && log "waiting for slurmctld to forget the jobs of an earlier run"
        sleep 5; waited=$((waited + 5))
    done
    log "slurmrestd: submit (held jobs, cancelled afterwards; 3 s, below MaxJobCount)"
    wrk_run "$dir/submit.out" "$url/slurm/v0.0.38/job/submit" "$dir/post.lua" "$SUBMIT_CONNS" 3
    # Only accepted submissions count (slurmctld refuses past MaxJobCount).
    awk -v n="$(total_requests "$dir/submit.out")" -v bad="$(non2xx "$dir/submit.out")" \
        '/requests in/ { sub(/s,$/, "", $4); printf "%.0f\n", (n - bad) / $4 }' "$dir/submit.out" >"$WORK/submit.slurm"
    local stored t
    # slurmctld keeps ended jobs for MinJobAge (300 s): they are listed too.
    stored=$(squeue -h --states=all | wc -l)
    log "slurmrestd: list all $stored jobs, once (it has no pages)"
    t=$(curl -s -o /dev/null -m 120 -w '%{time_total}' -H "X-SLURM-USER-NAME: $SLURM_USER" \
        -H "X-SLURM-USER-TOKEN: $token" "$url/slurm/v0.0.38/jobs" || echo "timeout")
    echo "$stored $t" >"$WORK/listall.slurm"
    scancel -u "$SLURM_USER" || true
    unset BENCH_SLURM_TOKEN
}

# --- the run ---------------------------------------------------------------------------------
if [ -z "${BENCH_NO_SLURM:-}" ] && [ "$(id -u)" -eq 0 ]; then
    bench_slurmrestd $((PORT_BASE + 9))
else
    log "leaving slurmrestd out (BENCH_NO_SLURM, or not root)"
fi
i=0
for b in $BACKENDS; do
    i=$((i + 1))
    case "$b" in
        sqlite) bench_backend sqlite $((PORT_BASE + i)) --data-dir "$WORK/sqlite/data" ;;
        postgres)
            PG_DB="hpcsera_bench_$$"
            psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
            bench_backend postgres $((PORT_BASE + i)) --database-url "${PG_ADMIN_URL%/*}/$PG_DB" ;;
        *) die "unknown backend $b" ;;
    esac
done

# --- the table -------------------------------------------------------------------------------
s_rps="" s_p99="" s_sub=""
if [ -s "$WORK/read.slurm" ]; then read -r s_rps s_p99 <"$WORK/read.slurm"; fi
if [ -s "$WORK/submit.slurm" ]; then read -r s_sub <"$WORK/submit.slurm"; fi
for b in $BACKENDS; do
    [ -s "$WORK/read.$b" ] || continue
    read -r r p <"$WORK/read.$b"
    record "read one job ($b): req/s" "$r" "${s_rps:-—}" "≥ 20× peer" \
        "$(awk -v a="$r" -v b="$s_rps" 'BEGIN{print (b > 0 && a >= 20 * b) ? "yes" : (b > 0 ? "no" : "—")}')"
    record "read one job ($b): p99" "$p ms" "${s_p99:-—} ms" "≤ 5 ms" "$(awk -v v="$p" 'BEGIN{print (v <= 5) ? "yes" : "no"}')"
    if [ -s "$WORK/floor.$b" ]; then
        read -r fr fp <"$WORK/floor.$b"
        record "HTTP floor: GET /healthz, no token, no database ($b): req/s (p99 $fp ms)" "$fr" "${s_rps:-—}" "ceiling of a read; vs peer" "—"
    fi
    read -r sr cpu bad <"$WORK/submit.$b"
    record "durable submissions/s ($b, $SUBMIT_CONNS conns)" "$sr" "${s_sub:-—}" "≥ 5× peer" \
        "$(awk -v a="$sr" -v b="$s_sub" 'BEGIN{print (b > 0 && a >= 5 * b) ? "yes" : (b > 0 ? "no" : "—")}')"
    record "server CPU per submit ($b)" "$cpu µs" "—" "—" "—"
    [ "${bad:-0}" = 0 ] || record "submissions refused ($b)" "$bad" "—" "0" "no"
done
if [ -s "$WORK/listall.slurm" ]; then
    read -r stored t <"$WORK/listall.slurm"
    record "slurmrestd: list all $stored jobs (no paging), one request" "—" "$t s" "—" "—"
fi

{
    printf '| benchmark | hpcsera | slurmrestd | ratio | target | met |\n|---|---|---|---|---|---|\n'
    while IFS=$'\t' read -r name ours peer target met; do
        r="—"
        case "$target" in *peer*) r=$(ratio "${ours%% *}" "${peer%% *}") ;; esac
        printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$ours" "$peer" "$r" "$target" "$met"
    done <"$RESULTS"
    printf '\nmachine: %s cores, %s MiB, Linux %s; %s\n' "$(nproc)" \
        "$(awk '/MemTotal/ {printf "%d", $2/1024}' /proc/meminfo)" "$(uname -r)" "$(date -u +%FT%TZ)"
}
