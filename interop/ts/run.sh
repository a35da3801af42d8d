#!/usr/bin/env bash
# Interop tests: the official TypeScript client @durable-streams/client
# (pinned in package.json) against a real `durastream serve` process.
#
# Usage: interop/ts/run.sh [DURABILITY]
#   DURABILITY  --durability for the server: sync (default) or memory.
#
# The server is built from this repo, started on a free 127.0.0.1 port with a
# fresh temporary data dir, and stopped afterwards (SIGTERM, SIGKILL after 10s).
#
# Environment:
#   DURASTREAM_URL                 if set, test that running server instead of
#                                  building and starting one
#   DURASTREAM_PROXY_SECRET        the proxy protocol's secret (proxy.test.mjs);
#                                  the server started here gets a random one
#                                  and --proxy-allow 'http://127.0.0.1:*/**'.
#                                  Unset with DURASTREAM_URL: the proxy tests
#                                  are skipped
#   DURASTREAM_AUTH_SECRET         the HS256 secret of the server's access
#                                  control (auth.test.mjs); the server started
#                                  here gets a random one and grants
#                                  interop-ts/** to anonymous callers. Unset
#                                  with DURASTREAM_URL: auth tests are skipped
#   INTEROP_TIMEOUT                wall-clock limit for the node test run,
#                                  seconds (default 300)
#   Extra arguments for `node --test` can follow the durability, e.g.
#     interop/ts/run.sh sync --test-name-pattern='SSE'
#
# Prints "interop-ts: N passed, M failed, K skipped" after the suite.
# Exit status: non-zero if any test failed, the run timed out, or the server
# could not be built or started.
set -euo pipefail

durability="${1:-${DURABILITY:-sync}}"
shift || true
case "$durability" in
  sync | memory) ;;
  *)
    echo "interop/ts/run.sh: durability must be sync or memory, not '$durability'" >&2
    exit 2
    ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

log_tag="interop/ts/run.sh"
# shellcheck source=../../scripts/test-server.sh
source "$root/scripts/test-server.sh"

# ---------------------------------------------------------------------------

cd "$here"
ensure_node_modules

tmp="$(mktemp -d "${TMPDIR:-/tmp}/durastream-interop-ts.XXXXXX")"
url="${DURASTREAM_URL:-}"
if [[ -z "$url" ]]; then
  build_server
  export DURASTREAM_PROXY_SECRET="${DURASTREAM_PROXY_SECRET:-interop-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
  # Access control on (auth.test.mjs); the other suites' streams are
  # granted to anonymous callers.
  export DURASTREAM_AUTH_SECRET="${DURASTREAM_AUTH_SECRET:-interop-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}"
  health_curl_args="--oauth2-bearer $(DURASTREAM_AUTH_HMAC_SECRET="$DURASTREAM_AUTH_SECRET" "$tmp/durastream" token --ops)"
  DURASTREAM_AUTH_HMAC_SECRET="$DURASTREAM_AUTH_SECRET" start_server --proxy-secret "$DURASTREAM_PROXY_SECRET" --proxy-allow 'http://127.0.0.1:*/**' \
    --anonymous 'all:interop-ts/**'
  url="http://127.0.0.1:$server_port"
fi
url="${url%/}"

cd "$here"
log "running the TypeScript client interop tests against $url"
rc=0
DURASTREAM_URL="$url" run_node_suite interop-ts 300 120000 "$@" || rc=$?
exit "$rc"
