#!/usr/bin/env bash
# Checks the shipped cache configurations with the real Varnish and nginx:
# durastream behind each (deploy/varnish/durastream.vcl,
# deploy/nginx/durastream.conf), the conformance suite through each (the
# cache must not break the protocol), a long-poll fan-out through each and
# direct (deliveries complete, in order, no duplicates; origin long-polls
# per append: at most 2 through Varnish, first reads included, and at most
# 2 through nginx after each reader's first, uncollapsed, long-poll), the
# catch-up of one popular stream (full copies from the origin, at most 2
# through Varnish, which keeps the body and revalidates it), and reads
# through each cache of a durastream with access control on (a token's
# read is never handed to a caller without one; public streams are still
# cached).
#
# Usage: deploy/run.sh
#
# Environment:
#   FANOUT_SUBSCRIBERS  long-poll readers of one stream (default 200; the
#                       BENCHMARKS.md figures use 1000)
#   FANOUT_DURATION     writer phase (default 5s), FANOUT_RATE appends/s (default 5)
#   CATCHUP_READERS     readers of one popular stream (default 20), CATCHUP_SIZE (default 16MiB)
#   DEPLOY_CONFORMANCE  0 skips the conformance runs
#   NGINX_WORKERS       worker_processes of the nginx under test (default 1)
#
# Installs varnish and nginx with apt-get (update, then install) when they are
# missing (CI, as root).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
durability=memory
log_tag="deploy/run.sh"
# shellcheck source=../scripts/test-server.sh
source "$root/scripts/test-server.sh"

export PATH="$PATH:/usr/sbin"
if ! command -v varnishd >/dev/null || ! command -v nginx >/dev/null; then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "varnishd and nginx are needed (Debian: apt-get install varnish nginx)"
    exit 1
  fi
  log "installing varnish and nginx (apt-get update, apt-get install)"
  # update first: a fresh image has no package lists.
  { timeout 5m apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive timeout 10m apt-get install -y -qq --no-install-recommends varnish nginx; } >/dev/null
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/durastream-deploy.XXXXXX")"
chmod 755 "$tmp" # varnishd's and nginx's worker users read the VCL and write the cache
bg_pids="" # caches and the access-control durastream, stopped at exit
stop_bg() {
  local p
  for p in $bg_pids; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true # (not a bare wait: the server is a child too)
  done
}
# (set +e: under errexit, `(exit $rc)` with rc > 0 would end the trap before
# cleanup stops the server; cleanup reads the status from $?.)
trap 'rc=$?; stop_bg; set +e; (exit $rc); cleanup' EXIT

build_server
start_server --long-poll-timeout 500ms --webhook-dev
origin="http://127.0.0.1:$server_port"

wait_port() { # URL what
  local i
  for ((i = 0; i < 100; i++)); do
    # Any HTTP answer will do (with access control on, /health is a 401).
    if curl -sS -o /dev/null --max-time 2 "$1/health" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$2 did not answer at $1"
  return 1
}

ulimit -n 16384 2>/dev/null || true
# start_caches NAME BACKEND_PORT: Varnish and nginx with the shipped
# configurations (backend, listen address and cache path rewritten) in front
# of 127.0.0.1:BACKEND_PORT, files under $tmp/NAME; sets vport and nport.
start_caches() {
  local d="$tmp/$1" backend="$2"
  mkdir -p "$d/nginx/cache"
  # --- Varnish: run as the VCL's header says, nothing else set ---
  vport="$(free_port)"
  sed -e "s/\.port = \"4437\"/.port = \"$backend\"/" "$here/varnish/durastream.vcl" >"$d/durastream.vcl"
  chmod 644 "$d/durastream.vcl"
  varnishd -F -n "$d/varnish" -a "127.0.0.1:$vport" -f "$d/durastream.vcl" -s malloc,512m >"$d/varnish.log" 2>&1 &
  bg_pids+=" $!"
  wait_port "http://127.0.0.1:$vport" varnish || { cat "$d/varnish.log"; return 1; }
  # --- nginx: the shipped file inside a minimal nginx.conf ---
  nport="$(free_port)"
  sed -e "s/127.0.0.1:4437/127.0.0.1:$backend/" -e "s/127.0.0.1:8080/127.0.0.1:$nport/" \
    -e "s#/var/cache/nginx/durastream#$d/nginx/cache#" "$here/nginx/durastream.conf" >"$d/nginx/durastream.conf"
  cat >"$d/nginx/nginx.conf" <<CONF
daemon off;
worker_processes ${NGINX_WORKERS:-1};
worker_rlimit_nofile 16384;
pid $d/nginx/nginx.pid;
error_log $d/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $d/nginx/body;
    proxy_temp_path $d/nginx/proxy;
    fastcgi_temp_path $d/nginx/fastcgi;
    uwsgi_temp_path $d/nginx/uwsgi;
    scgi_temp_path $d/nginx/scgi;
    include $d/nginx/durastream.conf;
}
CONF
  nginx -c "$d/nginx/nginx.conf" -p "$d/nginx" >"$d/nginx.log" 2>&1 &
  bg_pids+=" $!"
  wait_port "http://127.0.0.1:$nport" nginx || { cat "$d/nginx.log" "$d/nginx/error.log"; return 1; }
}
start_caches caches "$server_port"

rc=0
# --- the conformance suite through each cache ------------------------------------------
if [[ "${DEPLOY_CONFORMANCE:-1}" != 0 ]]; then
  for c in "varnish http://127.0.0.1:$vport" "nginx http://127.0.0.1:$nport"; do
    set -- $c
    log "conformance through $1"
    bash "$root/conformance/run.sh" "$2" || { log "conformance through $1 FAILED"; rc=1; }
  done
fi

# --- long-poll fan-out and catch-up through each cache, and direct ------------------------
origin_reads() { # op [status] -> durastream_requests_total (summed over statuses unless one is given)
  curl -fsS "$origin/metrics" | awk -v op="$1" -v st="${2:-}" -F'[{} ]' \
    '$1=="durastream_requests_total" && $2 ~ "op=\""op"\"" && (st == "" || $2 ~ "status=\""st"\"") {s+=$NF} END {print s+0}'
}
subs="${FANOUT_SUBSCRIBERS:-200}"
for c in "direct $origin" "varnish http://127.0.0.1:$vport" "nginx http://127.0.0.1:$nport"; do
  set -- $c
  before="$(origin_reads long-poll)"
  # -cleanup=false: the stream stays, so the readers' last long-polls
  # are not answered 404 one by one at the end.
  out="$("$tmp/durastream" bench -q -url "$2" -label "$1" -scenario fanout-longpoll -subscribers "$subs" \
    -rate "${FANOUT_RATE:-5}" -duration "${FANOUT_DURATION:-5s}" -timeout 10s -cleanup=false)"
  after="$(origin_reads long-poll)"
  echo "$out" >>"$tmp/results.jsonl"
  node -e '
    const [name, before, after] = process.argv.slice(1)
    const r = JSON.parse(require("fs").readFileSync(0, "utf8"))
    // Every origin long-poll of the run, the first read of each reader (at
    // offset -1, without a cursor) included: Varnish collapses those too
    // when data arrives while they wait; nginx passes each to the origin
    // (deploy/nginx/durastream.conf), so for nginx the figure that must
    // stay at most 2 is the one without them (one per connected reader).
    const f = r.fanout, d = f.delivery_ms, origin = after - before
    const perAppend = origin / f.acked, afterFirst = (origin - f.connected) / f.acked
    console.log(`fanout-longpoll ${name}: ${f.connected}/${f.subscribers} subscribers, ${f.acked} appends, delivered ${f.delivered}/${f.expected}, missing ${f.missing}, duplicates ${f.duplicates}, out of order ${f.out_of_order}, delivery p50 ${d.p50.toFixed(1)} ms p99 ${d.p99.toFixed(1)} ms, origin long-polls ${origin} (${perAppend.toFixed(2)} per append, first reads included${name === `nginx` ? `; ${afterFirst.toFixed(2)} after them` : ``})`)
    const bad = f.missing || f.duplicates || f.out_of_order || f.connected < f.subscribers ||
      (name === `varnish` && perAppend > 2) || (name === `nginx` && afterFirst > 2) ||
      (name !== `direct` && d.p99 > 2000) // nginx adds up to 500 ms (its cache lock); seconds mean a broken config
    process.exit(bad ? 1 : 0)
  ' "$1" "$before" "$after" <<<"$out" || { log "fan-out through $1 FAILED"; rc=1; }
done
for c in "direct $origin" "varnish http://127.0.0.1:$vport" "nginx http://127.0.0.1:$nport"; do
  set -- $c
  before="$(origin_reads read)" before304="$(origin_reads read 304)"
  out="$("$tmp/durastream" bench -q -url "$2" -label "$1" -scenario catchup-read -readers "${CATCHUP_READERS:-20}" \
    -prefill "${CATCHUP_SIZE:-16MiB}" -duration 3s)"
  after="$(origin_reads read)" after304="$(origin_reads read 304)"
  echo "$out" >>"$tmp/results.jsonl"
  # Origin copies of the stream sent: reads answered with the body (a 304
  # revalidation sends none).
  node -e '
    const [name, before, after, b304, a304] = process.argv.slice(1).map((v, i) => i ? Number(v) : v)
    const r = JSON.parse(require("fs").readFileSync(0, "utf8"))
    const copies = after - before - (a304 - b304)
    console.log(`catchup-read ${name}: ${r.ops} whole reads by ${r.concurrency} readers, ${r.mb_per_s.toFixed(0)} MB/s; origin: ${after - before} reads, ${a304 - b304} of them 304, ${copies} full copies sent`)
    // Varnish keeps the body and revalidates it: about one copy of the
    // (unchanging) stream from the origin, however many readers.
    process.exit(name === `varnish` && copies > 2 ? 1 : 0)
  ' "$1" "$before" "$after" "$before304" "$after304" <<<"$out" || { log "catch-up through $1 FAILED"; rc=1; }
done

# --- access control through each cache -----------------------------------------------------
# A second durastream, with tokens required for everything but reading
# public/**, behind a second Varnish and nginx: a read made with a
# credential (bearer token, ?token=, signed URL) is never handed to a caller
# without one (the same URL answers 401), and public streams are still
# cached (two anonymous long-polls of one URL cost the origin one).
secret="$(head -c 32 /dev/urandom | base64)"
aport="$(free_port)" aops="$(free_port)"
log "starting durastream with access control on 127.0.0.1:$aport (ops: $aops)"
DURASTREAM_AUTH_HMAC_SECRET="$secret" "$tmp/durastream" serve --addr "127.0.0.1:$aport" --ops-addr "127.0.0.1:$aops" \
  --data-dir "$tmp/data-auth" --durability memory --long-poll-timeout 500ms --anonymous 'read:public/**' \
  >"$tmp/server-auth.log" 2>&1 </dev/null &
bg_pids+=" $!"
wait_port "http://127.0.0.1:$aops" "durastream (access control on)" || { cat "$tmp/server-auth.log"; exit 1; }
start_caches auth "$aport"
token="$(DURASTREAM_AUTH_HMAC_SECRET="$secret" "$tmp/durastream" token --grant 'all:**' --ttl 10m)"
signed="$(DURASTREAM_AUTH_HMAC_SECRET="$secret" "$tmp/durastream" sign-url --path private/s --ttl 10m)"
private_body="private-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" public_body="public-bytes"
a="http://127.0.0.1:$aport/v1/stream"
for p in private/s public/s; do
  curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: text/plain' "$a/$p"
done
curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $token" -H 'Content-Type: text/plain' --data-binary "$private_body" "$a/private/s"
curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $token" -H 'Content-Type: text/plain' --data-binary "$public_body" "$a/public/s"
auth_longpolls() {
  curl -fsS "http://127.0.0.1:$aops/metrics" | awk -F'[{} ]' \
    '$1=="durastream_requests_total" && $2 ~ "op=\"long-poll\"" {s+=$NF} END {print s+0}'
}
expect() { # WHAT STATUS BODY URL [CURL ARGS...]: the answer's status, and its body (401: anything but BODY)
  local what="$1" want="$2" body="$3" url="$4" got
  shift 4
  got="$(curl -sS -o "$tmp/auth-body" -w '%{http_code}' "$@" "$url")" || got="curl failed"
  if [[ "$got" != "$want" ]] || { [[ "$want" == 200 ]] && [[ "$(cat "$tmp/auth-body")" != "$body" ]]; } ||
    { [[ "$want" != 200 ]] && grep -qF "$body" "$tmp/auth-body"; }; then
    log "access control through $cache: $what: got $got ($(head -c 200 "$tmp/auth-body")), want $want"
    return 1
  fi
}
for c in "varnish http://127.0.0.1:$vport" "nginx http://127.0.0.1:$nport"; do
  set -- $c
  cache="$1" u="$2/v1/stream/private/s" ok=1
  # The same two URLs, read first with each credential, then without.
  for q in "offset=-1" "cursor=1&live=long-poll&offset=-1"; do
    expect "bearer token, $q" 200 "$private_body" "$u?$q" -H "Authorization: Bearer $token" || ok=0
    expect "?token=, $q" 200 "$private_body" "$u?$q&token=$token" || ok=0
    expect "signed URL, $q" 200 "$private_body" "$u?$q&$signed" || ok=0
    expect "bearer token again, $q" 200 "$private_body" "$u?$q" -H "Authorization: Bearer $token" || ok=0
    expect "no credential, $q" 401 "$private_body" "$u?$q" || ok=0
  done
  # A public stream: the second anonymous long-poll of one URL (an answer
  # durastream lets caches keep for 1 s) comes from the cache.
  pu="$2/v1/stream/public/s?cursor=1&live=long-poll&offset=-1"
  before="$(auth_longpolls)"
  expect "public, first read" 200 "$public_body" "$pu" || ok=0
  expect "public, second read" 200 "$public_body" "$pu" || ok=0
  n=$(($(auth_longpolls) - before))
  if ((n != 1)); then
    log "access control through $cache: two anonymous reads of a public stream made $n origin long-polls, want 1 (not cached)"
    ok=0
  fi
  if ((ok)); then
    echo "access control through $cache: credentialed reads (bearer, ?token=, signed URL) never answered without a credential (401); public stream cached (2 reads, 1 origin long-poll)"
  else
    log "access control through $cache FAILED"
    rc=1
  fi
done

[[ -n "${DEPLOY_RESULTS:-}" ]] && cp "$tmp/results.jsonl" "$DEPLOY_RESULTS"
exit "$rc"
