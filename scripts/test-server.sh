# Sourced by conformance/run.sh and interop/ts/run.sh: a durastream built
# from this repository, on a free 127.0.0.1 port with a data dir under $tmp,
# started, health-checked, stopped, and its log shown when something failed.
#
# The sourcing script sets `durability` and `log_tag`, and `tmp` (a
# temporary directory, removed on exit) before it calls start_server; for a
# server started with --tls-cert, also server_scheme=https and
# health_curl_args="--cacert CA.pem" for the health check.
# cleanup is installed as the EXIT trap.

tmp=""
server_pid=""
server_port=""
log_printed=0

log() { echo "$log_tag: $*" >&2; }

free_port() {
  node -e '
    const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
  '
}

print_server_log() {
  if [[ -n "$tmp" && -f "$tmp/server.log" ]]; then
    log_printed=1
    echo "----- server log (last ${1:-80} lines: $tmp/server.log) -----" >&2
    tail -n "${1:-80}" "$tmp/server.log" >&2 || true
    echo "----- end of server log -----" >&2
  fi
}

stop_server() {
  local pid="$server_pid"
  [[ -n "$pid" ]] || return 0
  server_pid=""
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "server (pid $pid) did not exit within 10s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_server
  if [[ -n "$tmp" ]]; then
    if [[ $rc -ne 0 && $log_printed -eq 0 ]]; then
      print_server_log 80
    fi
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# build_server builds ./cmd/durastream into $tmp.
build_server() {
  log "building server"
  (cd "$(dirname "${BASH_SOURCE[0]}")/.." && go build -o "$tmp/durastream" ./cmd/durastream)
  mkdir -p "$tmp/data"
}

# start_server [SERVE FLAGS...] starts $tmp/durastream on $tmp/data and
# waits up to 20 s for /health.
start_server() {
  server_port="$(free_port)"
  log "starting durastream on 127.0.0.1:$server_port (durability=$durability, data dir $tmp/data)"
  echo "===== start on port $server_port =====" >>"$tmp/server.log"
  "$tmp/durastream" serve \
    --addr "127.0.0.1:$server_port" \
    --data-dir "$tmp/data" \
    --durability "$durability" \
    "$@" \
    >>"$tmp/server.log" 2>&1 </dev/null &
  server_pid=$!
  local deadline=$((SECONDS + 20))
  # shellcheck disable=SC2086 # health_curl_args: extra curl words, e.g. --cacert FILE
  until curl -fsS -o /dev/null --max-time 2 ${health_curl_args:-} "${server_scheme:-http}://127.0.0.1:$server_port/health" 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      log "server exited before becoming healthy"
      print_server_log 200
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "server not healthy after 20s"
      print_server_log 200
      return 1
    fi
    sleep 0.2
  done
  log "server healthy (pid $server_pid)"
}

# ensure_node_modules runs npm ci in the current directory when its
# node_modules is missing or older than package-lock.json.
ensure_node_modules() {
  if [[ ! -d node_modules || ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    log "installing npm packages (npm ci)"
    npm ci --no-audit --no-fund
  fi
}

# run_node_suite NAME DEFAULT_TIMEOUT_S TEST_TIMEOUT_MS [node --test args...]
# runs ./*.test.mjs in the current directory with Node's test runner under
# INTEROP_TIMEOUT seconds (default DEFAULT_TIMEOUT_S), one file at a time,
# each test at most TEST_TIMEOUT_MS; prints "NAME: N passed, M failed, K
# skipped" from its TAP report (and the server log if anything failed) and
# returns non-zero if anything failed, timed out, or nothing passed.
run_node_suite() {
  local name="$1" limit="${INTEROP_TIMEOUT:-$2}" per_test="$3"
  shift 3
  local timeout_cmd=()
  if command -v timeout >/dev/null 2>&1; then
    timeout_cmd=(timeout --signal=TERM --kill-after=15 "$limit")
  fi
  local suite_rc=0
  "${timeout_cmd[@]}" node --test \
    --test-concurrency=1 \
    --test-timeout="$per_test" \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tmp/results.tap" \
    "$@" ./*.test.mjs </dev/null || suite_rc=$?
  if [[ $suite_rc -eq 124 ]]; then
    log "node --test exceeded INTEROP_TIMEOUT=${limit}s"
  fi
  # Counts from the TAP report's closing lines ("# pass N", ...).
  count() { sed -n "s/^# $1 \([0-9][0-9]*\)\$/\1/p" "$tmp/results.tap" 2>/dev/null | tail -n 1; }
  local n_pass n_fail n_cancelled n_skip n_todo
  n_pass="$(count pass)" n_fail="$(count fail)" n_cancelled="$(count cancelled)"
  n_skip="$(count skipped)" n_todo="$(count todo)"
  if [[ -z "$n_pass" ]]; then
    log "no test summary from node --test"
    n_pass=0 n_fail=0 n_cancelled=0 n_skip=0 n_todo=0
    if [[ $suite_rc -eq 0 ]]; then suite_rc=1; fi
  fi
  n_fail=$((n_fail + ${n_cancelled:-0}))
  if [[ $suite_rc -eq 0 && $n_pass -eq 0 ]]; then
    log "node --test ran no passing tests"
    suite_rc=1
  fi
  if [[ $suite_rc -ne 0 && -n "$server_pid" ]]; then
    print_server_log 60
  fi
  echo "$name: $n_pass passed, $n_fail failed, $((${n_skip:-0} + ${n_todo:-0})) skipped"
  return "$suite_rc"
}
