#!/usr/bin/env bash
# Runs the Durable Streams server conformance suite against durastream.
#
# Usage: conformance/run.sh [URL] [DURABILITY]
#   URL         base URL of a server that is already running; when empty or
#               absent, the server is built from this repo and started on a
#               free loopback port with a fresh data dir.
#   DURABILITY  --durability for the server we start (default: sync). With
#               sync, the script also restarts the server on the same data
#               dir and checks that stream data survived.
#
# Environment:
#   CONFORMANCE_TIMEOUT       wall-clock limit for the vitest run, seconds (default 1500)
#   CONFORMANCE_SUMMARY_FILE  if set, "PASSED FAILED SKIPPED" is appended to it
#   CONFORMANCE_AUTH          run the server we start with access control on:
#                             "anonymous" grants every operation on ** to
#                             anonymous callers (--anonymous all:**);
#                             "token" grants nothing anonymously and puts
#                             auth-proxy.mjs, which adds an admin token to
#                             every request, between the suite and the server
#
# Prints "conformance: N passed, M failed, K skipped" after the suite.
# Exit status: vitest's (non-zero also if the durability check fails or the
# server cannot be started).
set -euo pipefail

url="${1:-}"
durability="${2:-${DURABILITY:-sync}}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
persist_path="/v1/stream/ci-persist-check"
persist_expect="persisted-bytes-and-more"

log_tag="conformance/run.sh"
# shellcheck source=../scripts/test-server.sh
source "$root/scripts/test-server.sh"

# ---------------------------------------------------------------------------

cd "$here"
ensure_node_modules

persist_check=0
if [[ -z "$url" ]]; then
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/durastream-conformance.XXXXXX")"
  build_server
  auth_flags=()
  case "${CONFORMANCE_AUTH:-}" in
    "") ;;
    anonymous | token)
      DURASTREAM_AUTH_HMAC_SECRET="conformance-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      export DURASTREAM_AUTH_HMAC_SECRET # read by serve and by durastream token
      admin="$("$tmp/durastream" token --grant 'all:**' --grant 'all:__ds/subscriptions/*' --ops --ttl 2h)"
      health_curl_args="--oauth2-bearer $admin"
      if [[ "$CONFORMANCE_AUTH" == anonymous ]]; then auth_flags=(--anonymous 'all:**' --anonymous 'all:__ds/subscriptions/*'); fi
      ;;
    *) log "CONFORMANCE_AUTH=$CONFORMANCE_AUTH: want anonymous or token"; exit 2 ;;
  esac
  start_server --long-poll-timeout 500ms --webhook-dev "${auth_flags[@]}"
  url="http://127.0.0.1:$server_port"
  if [[ "${CONFORMANCE_AUTH:-}" == token ]]; then
    # The proxy prints its port on its first line of output.
    AUTH_TARGET="$url" AUTH_TOKEN="$admin" node "$here/auth-proxy.mjs" >"$tmp/auth-proxy.out" 2>&1 &
    proxy_pid=$!
    for ((i = 0; i < 50; i++)); do
      proxy_port="$(head -n 1 "$tmp/auth-proxy.out" 2>/dev/null || true)"
      [[ -n "$proxy_port" ]] && break
      sleep 0.1
    done
    [[ -n "$proxy_port" ]] || { log "auth-proxy.mjs did not start"; exit 1; }
    trap 'rc=$?; kill "$proxy_pid" 2>/dev/null; (exit $rc); cleanup' EXIT
    # Without the proxy, a request must be refused.
    status="$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: text/plain' "$url/v1/stream/conformance-auth-probe")"
    if [[ "$status" != 401 ]]; then log "without a token: PUT answered $status, want 401"; exit 1; fi
    url="http://127.0.0.1:$proxy_port"
  fi
  [[ "$durability" == "sync" && -z "${CONFORMANCE_AUTH:-}" ]] && persist_check=1
fi
url="${url%/}"

persist_setup_ok=1
if ((persist_check)); then
  log "durability check: writing $persist_path"
  if ! curl -fsS -o /dev/null --max-time 10 -X PUT -H 'Content-Type: text/plain' \
      --data-binary 'persisted-bytes' "$url$persist_path"; then
    echo "FAIL: durability check: PUT $persist_path failed"
    persist_setup_ok=0
  elif ! curl -fsS -o /dev/null --max-time 10 -X POST -H 'Content-Type: text/plain' \
      --data-binary '-and-more' "$url$persist_path"; then
    echo "FAIL: durability check: POST $persist_path failed"
    persist_setup_ok=0
  fi
fi

# --- the suite ---------------------------------------------------------------
cd "$here"
rm -f results.json
timeout_cmd=()
if command -v timeout >/dev/null 2>&1; then
  timeout_cmd=(timeout --signal=TERM --kill-after=30 "${CONFORMANCE_TIMEOUT:-1500}")
fi
log "running conformance suite against $url"
# Plain output in logs (so the "Tests  N passed | ..." line is parseable),
# unless colours are asked for explicitly.
if [[ -z "${FORCE_COLOR:-}" ]]; then export NO_COLOR=1; fi
set +e
CONFORMANCE_BASE_URL="$url" "${timeout_cmd[@]}" npx --no-install vitest run \
  --reporter=default --reporter=json --outputFile=results.json </dev/null
suite_rc=$?
set -e
if [[ $suite_rc -eq 124 ]]; then
  log "vitest exceeded CONFORMANCE_TIMEOUT=${CONFORMANCE_TIMEOUT:-1500}s"
fi

counts="$(node -e '
  const fs = require("fs");
  try {
    const r = JSON.parse(fs.readFileSync("results.json", "utf8"));
    const n = (k) => Number(r[k] || 0);
    console.log(n("numPassedTests"), n("numFailedTests"), n("numPendingTests") + n("numTodoTests"));
  } catch (e) {
    console.log("0 0 0 missing");
  }
')"
read -r n_pass n_fail n_skip n_missing <<<"$counts"
if [[ -n "${n_missing:-}" ]]; then
  log "no readable results.json from vitest"
  if [[ $suite_rc -eq 0 ]]; then suite_rc=1; fi
fi
if [[ $suite_rc -eq 0 && $n_pass -eq 0 ]]; then
  log "vitest ran no passing tests"
  suite_rc=1
fi

# --- durability: restart on the same data dir and read back -------------------
persist_rc=0
if ((persist_check)); then
  stop_server
  if ((persist_setup_ok == 0)); then
    persist_rc=1
  elif ! start_server --long-poll-timeout 500ms --webhook-dev; then
    echo "FAIL: durability check: server did not restart on the same data dir"
    persist_rc=1
  else
    got="$(curl -sS --max-time 10 "http://127.0.0.1:$server_port$persist_path?offset=-1" || true)"
    if [[ "$got" == "$persist_expect" ]]; then
      echo "PASS: durability check: $persist_path survived a restart"
    else
      echo "FAIL: durability check: after restart GET $persist_path?offset=-1 returned '${got:0:200}', want '$persist_expect'"
      persist_rc=1
    fi
  fi
fi

if [[ ($suite_rc -ne 0 || $persist_rc -ne 0) && -n "$tmp" ]]; then
  print_server_log 60
fi

if [[ -n "${CONFORMANCE_SUMMARY_FILE:-}" ]]; then
  echo "$n_pass $n_fail $n_skip" >>"$CONFORMANCE_SUMMARY_FILE"
fi
echo "conformance: $n_pass passed, $n_fail failed, $n_skip skipped"

if [[ $suite_rc -ne 0 ]]; then
  exit "$suite_rc"
fi
exit "$persist_rc"
