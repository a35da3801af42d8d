#!/usr/bin/env bash
# Interop test: the real `durablefetch` npm client (DurableFetchClient,
# pinned to 0.1.0 in package.json) against durastream's durablefetch API.
#
# Usage: interop/durablefetch/run.sh [DURABILITY] [node --test args...]
#   DURABILITY  --durability for the server: sync (default) or memory.
#
# The client hard-codes https for /in-progress and /delete and keeps the
# scheme of the upstream URL for fetches, so everything runs over TLS on
# loopback with a throwaway CA made here with openssl:
#   - durastream serves --fetch-addr (and its main listener) with a
#     certificate for 127.0.0.1/localhost; node trusts the CA through
#     NODE_EXTRA_CA_CERTS;
#   - the upstream is an https server inside the node test, on 127.0.0.2
#     (the client bypasses itself for the hostnames localhost and 127.0.0.1
#     only; 127.0.0.2 is loopback too on Linux), with a certificate for
#     127.0.0.2; durastream trusts the CA for upstream calls through
#     SSL_CERT_FILE and may reach that address because the allow pattern
#     names it: --proxy-allow 'https://127.0.0.2:*/**'.
#
# Environment:
#   INTEROP_TIMEOUT   wall-clock limit for the node test run, seconds
#                     (default 120)
#
# Prints "interop-durablefetch: N passed, M failed, K skipped".
set -euo pipefail

durability="${1:-${DURABILITY:-sync}}"
shift || true
case "$durability" in
  sync | memory) ;;
  *)
    echo "interop/durablefetch/run.sh: durability must be sync or memory, not '$durability'" >&2
    exit 2
    ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

log_tag="interop/durablefetch/run.sh"
# shellcheck source=../../scripts/test-server.sh
source "$root/scripts/test-server.sh"

cd "$here"
ensure_node_modules

tmp="$(mktemp -d "${TMPDIR:-/tmp}/durastream-interop-df.XXXXXX")"

# A test CA and two leaf certificates (P-256, valid for two days).
make_certs() {
  local d="$tmp/tls"
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$d/ca.key" -out "$d/ca.pem" -subj "/CN=durastream interop test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  local name san
  for name in server upstream; do
    if [[ $name == server ]]; then san="IP:127.0.0.1,DNS:localhost"; else san="IP:127.0.0.2"; fi
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$d/$name.key" -out "$d/$name.csr" -subj "/CN=$name" 2>/dev/null
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$san" >"$d/$name.ext"
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -days 2 -extfile "$d/$name.ext" -out "$d/$name.pem" 2>/dev/null
  done
}
log "making a test CA and certificates"
make_certs

build_server
fetch_port="$(free_port)"
server_scheme=https
# Access control on: fetches of one-segment upstream paths are granted to
# anonymous callers, /private/** needs a token (the last test).
export DURASTREAM_AUTH_HMAC_SECRET="interop-df-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
health_curl_args="--cacert $tmp/tls/ca.pem --oauth2-bearer $("$tmp/durastream" token --ops)"
DF_TOKEN="$("$tmp/durastream" token --grant 'fetch:127.0.0.2:*/private/**')"
SSL_CERT_FILE="$tmp/tls/ca.pem" start_server \
  --tls-cert "$tmp/tls/server.pem" --tls-key "$tmp/tls/server.key" \
  --fetch-addr "127.0.0.1:$fetch_port" \
  --proxy-allow 'https://127.0.0.2:*/**' \
  --anonymous 'fetch:127.0.0.2:*/*'
log "durablefetch API on https://127.0.0.1:$fetch_port"

rc=0
DF_HOST="127.0.0.1:$fetch_port" DF_TOKEN="$DF_TOKEN" \
  UPSTREAM_CERT="$tmp/tls/upstream.pem" UPSTREAM_KEY="$tmp/tls/upstream.key" \
  NODE_EXTRA_CA_CERTS="$tmp/tls/ca.pem" \
  run_node_suite interop-durablefetch 120 30000 "$@" || rc=$?
exit "$rc"
