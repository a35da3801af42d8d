#!/usr/bin/env bash
# Side-by-side benchmark: durastream against the Node reference server
# (@durable-streams/server 0.3.7, file-backed) and the null server (the
# HTTP ceiling), alternating A B A B, then writes BENCHMARKS.md.
#
#   scripts/bench-compare.sh            # full: 3 rounds of 5 s, 1,000 fan-out subscribers, ~15-20 min
#   QUICK=1 scripts/bench-compare.sh    # smoke: 1 round of 2 s, smaller prefill and stream counts
#   make bench-compare                  # the same as the first line
#
# Every run gets a fresh server with a fresh data directory (so RSS and
# disk figures belong to that run), on its own free port on 127.0.0.1.
# Every bench command is bounded in time (the generator's own limits, and
# `timeout` around it); a server that cannot cope is recorded, not waited on.
#
# Environment (defaults for the full run; QUICK=1 changes the starred ones):
#   ROUNDS=3*            A/B rounds per scenario (>= 3 for the report)
#   DURATION=5s*         timed phase of each run
#   SCENARIOS="..."      which scenarios (default: all nine)
#   SUBSCRIBERS=1000     fan-out subscribers
#   PREFILL=256MiB*      catchup-read stream size
#   STREAMS=100000*      many-streams target per A/B run (bounded by MANY_DURATION)
#   MANY_DURATION=30s*   many-streams time bound per A/B run
#   MILLION=1*           also create 1,000,000 streams on durastream (RSS target)
#   MILLION_DURATION=600s  time bound of that run
#   MACHINE_MIB=256*     MiB written by the machine-limits probe
#   PROFILE=0            1: save a CPU profile of durastream in the last round of each scenario
#   OUT=BENCHMARKS.md    report to write (relative to the repo root)
#   RESULTS=DIR          where results.jsonl, logs and profiles go (default: a new temp dir, kept)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  : "${ROUNDS:=1}" "${DURATION:=2s}" "${PREFILL:=64MiB}" "${STREAMS:=20000}" "${MANY_DURATION:=10s}" \
    "${MILLION:=0}" "${MACHINE_MIB:=64}"
fi
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5s}"
SCENARIOS="${SCENARIOS:-append-small append-shared append-json append-large create-burst catchup-read fanout-sse fanout-longpoll many-streams}"
SUBSCRIBERS="${SUBSCRIBERS:-1000}"
PREFILL="${PREFILL:-256MiB}"
STREAMS="${STREAMS:-100000}"
MANY_DURATION="${MANY_DURATION:-30s}"
MILLION="${MILLION:-1}"
MILLION_DURATION="${MILLION_DURATION:-600s}"
MACHINE_MIB="${MACHINE_MIB:-256}"
PROFILE="${PROFILE:-0}"
OUT="${OUT:-BENCHMARKS.md}"
RESULTS="${RESULTS:-$(mktemp -d "${TMPDIR:-/tmp}/durastream-bench-XXXXXX")}"
mkdir -p "$RESULTS"

log() { echo "bench-compare: $*" >&2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/durastream-bench-work-XXXXXX")"
server_pid=""
cleanup() {
  local rc=$?
  stop_server
  rm -rf "$work"
  log "results, logs and profiles: $RESULTS"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

results="$RESULTS/results.jsonl"
commands="$RESULTS/commands.txt"
: >"$results"
: >"$commands"
bin="$work/durastream"
ref_dir="$root/bench/reference"

free_port() {
  node -e '
    const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
  '
}

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop_server() {
  local pid="$server_pid" i
  [[ -n "$pid" ]] || return 0
  server_pid=""
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# record KEY COMMAND...: the first command of each kind goes to commands.txt,
# with the run-specific port, pid and paths replaced by names.
declare -A recorded=()
record() {
  local key="$1"
  shift
  [[ -n "${recorded[$key]:-}" ]] && return 0
  recorded[$key]=1
  local line="$*"
  line="${line//$work/\$WORK}"
  line="${line//$RESULTS/\$RESULTS}"
  line="${line//$root\//}"
  line="$(sed -E 's/127\.0\.0\.1:[0-9]+/127.0.0.1:$PORT/g; s/--port [0-9]+/--port $PORT/; s/-pid [0-9]+/-pid $SERVER_PID/; s/-round [0-9]+/-round $N/' <<<"$line")"
  echo "$line" >>"$commands"
}

# retire DIR: moves a finished run's data directory aside; all are removed
# at the end. Deleting 100,000 stream files between runs would tax the next
# run's file creation: on this machine's ext4 (no journal) the inode
# allocator skips inodes freed in the last 60-300 s one by one
# (recently_deleted in perf), whichever server runs next.
# Scenarios that write gigabytes in a few files are removed at once.
retire() {
  [[ -e "$1" ]] || return 0
  case "${sc:-}" in
    append-large | catchup-read) rm -rf "$1"; return 0 ;;
  esac
  mkdir -p "$work/retired"
  mv "$1" "$work/retired/$(basename "$1").$RANDOM$RANDOM"
}

# start_server KIND: starts a fresh durastream, reference or null server;
# sets port and server_pid.
start_server() {
  local kind="$1" data="$work/data-$1"
  retire "$data"
  port="$(free_port)"
  local -a cmd
  case "$kind" in
    durastream)
      cmd=("$bin" serve --durability sync --data-dir "$data" --addr "127.0.0.1:$port" --long-poll-timeout 1s --log-level warn)
      if [[ "$PROFILE" == 1 ]]; then
        pprof_port="$(free_port)"
        cmd+=(--pprof-addr "127.0.0.1:$pprof_port")
      fi
      ;;
    reference)
      cmd=(node "$ref_dir/server.mjs" --port "$port" --data-dir "$data" --long-poll-timeout-ms 1000)
      ;;
    null)
      cmd=("$bin" null-server --addr "127.0.0.1:$port" --long-poll-timeout 1s)
      ;;
  esac
  record "server-$kind" "${cmd[@]}"
  "${cmd[@]}" >>"$RESULTS/server-$kind.log" 2>&1 &
  server_pid=$!
  if ! wait_port "$port" 30; then
    log "$kind did not start; see $RESULTS/server-$kind.log"
    tail -n 20 "$RESULTS/server-$kind.log" >&2 || true
    stop_server
    return 1
  fi
}

# run_bench KIND SCENARIO ROUND [extra bench flags...]
run_bench() {
  local kind="$1" sc="$2" round="$3"
  shift 3
  local -a args=(-url "http://127.0.0.1:$port" -scenario "$sc" -label "$kind" -round "$round" -pid "$server_pid" -o "$results" "$@")
  record "bench-$sc" "durastream bench ${args[*]}"
  local prof_pid=""
  if [[ "$PROFILE" == 1 && "$kind" == durastream && "$round" == "$ROUNDS" ]]; then
    mkdir -p "$RESULTS/profiles"
    (sleep 1 && curl -s -o "$RESULTS/profiles/$sc.prof" \
      "http://127.0.0.1:$pprof_port/debug/pprof/profile?seconds=${PROFILE_SECONDS:-4}") &
    prof_pid=$!
  fi
  echo "=== $sc $kind round $round" >>"$RESULTS/bench.log"
  if ! timeout --kill-after=10s 900s "$bin" bench "${args[@]}" >/dev/null 2>>"$RESULTS/bench.log"; then
    log "$sc on $kind round $round failed (recorded in the results; see $RESULTS/bench.log)"
  fi
  [[ -n "$prof_pid" ]] && wait "$prof_pid" 2>/dev/null || true
  tail -n 1 "$results" | cut -c1-220 >&2
}

flags_for() { # scenario -> bench flags
  case "$1" in
    fanout-*) echo "-duration $DURATION -subscribers $SUBSCRIBERS -timeout 10s -drain 3s" ;;
    catchup-read) echo "-duration $DURATION -prefill $PREFILL" ;;
    many-streams) echo "-duration $MANY_DURATION -streams $STREAMS" ;;
    *) echo "-duration $DURATION" ;;
  esac
}

start_time=$(date +%s)
log "building durastream"
go build -o "$bin" ./cmd/durastream
log "installing the reference server (npm ci in bench/reference)"
(cd "$ref_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
{
  echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -n): $(nproc) CPUs; QUICK=$QUICK ROUNDS=$ROUNDS DURATION=$DURATION SUBSCRIBERS=$SUBSCRIBERS PREFILL=$PREFILL STREAMS=$STREAMS MANY_DURATION=$MANY_DURATION MILLION=$MILLION"
  echo "QUICK=$QUICK scripts/bench-compare.sh    # or: make bench-compare"
  echo "go build -o \$WORK/durastream ./cmd/durastream && (cd bench/reference && npm ci)"
} >>"$commands"

log "machine limits"
"$bin" bench -scenario machine -dir "$work" -machine-mib "$MACHINE_MIB" -o "$results" >/dev/null 2>>"$RESULTS/bench.log" || log "machine probe failed"
record machine "durastream bench -scenario machine -dir $work -machine-mib $MACHINE_MIB -o $results"
tail -n 1 "$results" | cut -c1-220 >&2

for sc in $SCENARIOS; do
  read -r -a extra <<<"$(flags_for "$sc")"
  for ((round = 1; round <= ROUNDS; round++)); do
    for kind in durastream reference; do
      log "$sc: $kind round $round/$ROUNDS"
      if start_server "$kind"; then
        run_bench "$kind" "$sc" "$round" "${extra[@]}"
        stop_server
      fi
      retire "$work/data-$kind"
    done
  done
  log "$sc: null server (ceiling)"
  if start_server null; then
    run_bench null "$sc" 1 "${extra[@]}"
    stop_server
  fi
done

if [[ "$MILLION" == 1 ]]; then
  log "many-streams: 1,000,000 streams on durastream"
  if start_server durastream; then
    run_bench durastream many-streams 1 -streams 1000000 -duration "$MILLION_DURATION" -c 32
    stop_server
    retire "$work/data-durastream"
  fi
fi

elapsed=$(($(date +%s) - start_time))
note="Run: \`QUICK=$QUICK ROUNDS=$ROUNDS DURATION=$DURATION SUBSCRIBERS=$SUBSCRIBERS scripts/bench-compare.sh\`, $((elapsed / 60)) min $((elapsed % 60)) s in all."
if [[ "$QUICK" == 1 ]]; then
  note="$note **QUICK=1: one short round, a smoke test: do not read these numbers as results.**"
fi
"$bin" bench report -in "$results" -out "$root/$OUT" -commands "$commands" -note "$note"
log "wrote $OUT ($((elapsed / 60)) min $((elapsed % 60)) s)"
