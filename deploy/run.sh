#!/usr/bin/env bash
# Checks the shipped cache configurations with the real Varnish and nginx:
# durastream behind each (deploy/varnish/durastream.vcl,
# deploy/nginx/durastream.conf), the conformance suite through each (the
# cache must not break the protocol), a long-poll fan-out through each and
# direct (deliveries complete, in order, no duplicates; origin long-polls
# per append, at most 2 through Varnish, which collapses them), and the
# catch-up of one popular stream (full copies from the origin, at most 2
# through Varnish, which keeps the body and revalidates it).
#
# Usage: deploy/run.sh
#
# Environment:
#   FANOUT_SUBSCRIBERS  long-poll readers of one stream (default 200; the
#                       BENCHMARKS.md figures use 1000)
#   FANOUT_DURATION     writer phase (default 5s), FANOUT_RATE appends/s (default 5)
#   CATCHUP_READERS     readers of one popular stream (default 20), CATCHUP_SIZE (default 16MiB)
#   DEPLOY_CONFORMANCE  0 skips the conformance runs
#
# Installs varnish and nginx with apt-get when they are missing (CI, as root).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
durability=memory
log_tag="deploy/run.sh"
# shellcheck source=../scripts/test-server.sh
source "$root/scripts/test-server.sh"

if ! command -v varnishd >/dev/null || ! command -v nginx >/dev/null; then
  log "installing varnish and nginx (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends varnish nginx >/dev/null
fi
export PATH="$PATH:/usr/sbin"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/durastream-deploy.XXXXXX")"
chmod 755 "$tmp" # varnishd's worker user reads the VCL
varnish_pid="" nginx_pid=""
stop_caches() {
  local p
  for p in $varnish_pid $nginx_pid; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true # (not a bare wait: the server is a child too)
  done
}
trap 'rc=$?; stop_caches; (exit $rc); cleanup' EXIT

build_server
start_server --long-poll-timeout 500ms --webhook-dev
origin="http://127.0.0.1:$server_port"

wait_port() { # URL what
  local i
  for ((i = 0; i < 100; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "$1/health" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$2 did not answer at $1"
  return 1
}

# --- Varnish -------------------------------------------------------------------
vport="$(free_port)"
sed -e "s/\.port = \"4437\"/.port = \"$server_port\"/" "$here/varnish/durastream.vcl" >"$tmp/durastream.vcl"
chmod 644 "$tmp/durastream.vcl"
varnishd -F -n "$tmp/varnish" -a "127.0.0.1:$vport" -f "$tmp/durastream.vcl" -s malloc,512m \
  -p default_ttl=0 -p thread_pool_max=3000 >"$tmp/varnish.log" 2>&1 &
varnish_pid=$!
wait_port "http://127.0.0.1:$vport" varnish || { cat "$tmp/varnish.log"; exit 1; }

# --- nginx ---------------------------------------------------------------------------
nport="$(free_port)"
mkdir -p "$tmp/nginx/cache"
sed -e "s/127.0.0.1:4437/127.0.0.1:$server_port/" -e "s/127.0.0.1:8080/127.0.0.1:$nport/" \
  -e "s#/var/cache/nginx/durastream#$tmp/nginx/cache#" "$here/nginx/durastream.conf" >"$tmp/nginx/durastream.conf"
cat >"$tmp/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    include $tmp/nginx/durastream.conf;
}
CONF
ulimit -n 16384 2>/dev/null || true
nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" >"$tmp/nginx.log" 2>&1 &
nginx_pid=$!
wait_port "http://127.0.0.1:$nport" nginx || { cat "$tmp/nginx.log" "$tmp/nginx/error.log"; exit 1; }

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
    // offset -1, which the cache may collapse too) included.
    const f = r.fanout, origin = after - before, perAppend = origin / f.acked
    console.log(`fanout-longpoll ${name}: ${f.connected}/${f.subscribers} subscribers, ${f.acked} appends, delivered ${f.delivered}/${f.expected}, missing ${f.missing}, duplicates ${f.duplicates}, out of order ${f.out_of_order}, delivery p50 ${r.fanout.delivery_ms.p50.toFixed(1)} ms p99 ${r.fanout.delivery_ms.p99.toFixed(1)} ms, origin long-polls ${origin} (${perAppend.toFixed(2)} per append, first reads included)`)
    const bad = f.missing || f.duplicates || f.out_of_order || f.connected < f.subscribers || (name === `varnish` && perAppend > 2)
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
[[ -n "${DEPLOY_RESULTS:-}" ]] && cp "$tmp/results.jsonl" "$DEPLOY_RESULTS"
exit "$rc"
