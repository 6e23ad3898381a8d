#!/usr/bin/env bash
# A workflow engine's "HTTP task", with curl only (jq reads the JSON): submit a job with an
# Idempotency-Key (so a retried task never makes a second job), long-poll the job's events
# until it ends (no busy polling: each request waits up to 30 s on the server), then fetch its
# output and its result files. The exit code is the job's.
#
# Needs HPCSERA_URL and HPCSERA_TOKEN in the environment (never in a file or on a command line).
# Usage: workflow-http-task.sh [SITE] [JOB_TYPE] [PARAMETERS_JSON] [RESULTS_DIR]
#   e.g. workflow-http-task.sh local pipeline '{"n": 100}' results
# IDEMPOTENCY_KEY may name the task run (default: a fresh key).
set -euo pipefail

: "${HPCSERA_URL:?set HPCSERA_URL}" "${HPCSERA_TOKEN:?set HPCSERA_TOKEN}"
SITE=${1:-local}
JOB_TYPE=${2:-pipeline}
PARAMS=${3:-'{"n": 100}'}
RESULTS=${4:-results}
KEY=${IDEMPOTENCY_KEY:-task-$(date +%s)-$$-$RANDOM}
API="${HPCSERA_URL%/}/api/v1"

# The token reaches curl in a header file, so it never shows in `ps`.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf 'Authorization: Bearer %s\n' "$HPCSERA_TOKEN" > "$WORK/auth"
api() { curl -sS --fail-with-body --retry 5 --retry-connrefused -H @"$WORK/auth" "$@"; }

# 1. Submit.
BODY=$(jq -n --arg site "$SITE" --arg type "$JOB_TYPE" --argjson params "$PARAMS" \
  '{site: $site, jobType: $type, parameters: $params}')
JOB=$(api -X POST "$API/job" -H 'Content-Type: application/json' -H "Idempotency-Key: $KEY" \
  -d "$BODY" | jq -r .id)
echo "job $JOB submitted" >&2

# 2. Long-poll the job's events, resuming after the last seq seen, until a terminal status.
AFTER=0
STATUS=queued
until [[ $STATUS =~ ^(completed|failed|cancelled|lost)$ ]]; do
  EVENTS=$(api "$API/job/$JOB/events?after=$AFTER&wait=30")
  AFTER=$(jq --argjson after "$AFTER" '[$after, .events[].seq] | max' <<<"$EVENTS")
  NEW=$(jq -r '[.events[] | .toStatus // empty] | last // empty' <<<"$EVENTS")
  if [[ -n $NEW && $NEW != "$STATUS" ]]; then
    STATUS=$NEW
    echo "status: $STATUS" >&2
  fi
done

# 3. The job's stdout, page by page (X-Next-Offset), until nothing new comes.
OFFSET=0
while :; do
  api -D "$WORK/headers" "$API/job/$JOB/output/stdout?offset=$OFFSET"
  NEXT=$(tr -d '\r' < "$WORK/headers" | awk -F': ' 'tolower($1) == "x-next-offset" { print $2 }')
  [[ -z $NEXT || $NEXT == "$OFFSET" ]] && break
  OFFSET=$NEXT
done

# 4. The result files (the server accepts only clean relative names).
mkdir -p "$RESULTS"
api "$API/job/$JOB/results" | jq -r '.results[].name' | while read -r NAME; do
  mkdir -p "$RESULTS/$(dirname "$NAME")"
  api -o "$RESULTS/$NAME" "$API/job/$JOB/results/$NAME"
  echo "result: $RESULTS/$NAME" >&2
done

# 5. Exit with the job's exit code (1 when it ended without one and did not complete).
JOB_JSON=$(api "$API/job/$JOB")
CODE=$(jq -r 'if .status == "completed" then (.exitCode // 0) else (.exitCode // 1) end' <<<"$JOB_JSON")
echo "job $JOB: $STATUS, exit code $CODE" >&2
exit "$CODE"
