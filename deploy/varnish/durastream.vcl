# Varnish 7 in front of durastream (PROTOCOL.md section 10: caching and
# collapsing). durastream's own Cache-Control headers decide what is cached;
# this file only sets the timeouts live reads need and keeps credentials and
# writes out of the cache.
#
#   varnishd -a :8080 -f /etc/varnish/durastream.vcl -s malloc,1G
#
# No parameter needs changing (what durastream gives no max-age is never
# kept, whatever default_ttl says); deploy/run.sh starts varnishd this way.
#
# Edit the backend address. deploy/run.sh starts durastream and Varnish with
# this file (the backend rewritten to a test port) and runs the conformance
# suite and the fan-out measurements through it.
vcl 4.1;

backend durastream {
    .host = "127.0.0.1";
    .port = "4437";
    .connect_timeout = 2s;
    # A long-poll waits up to --long-poll-timeout (30 s) before its first
    # byte; an SSE response sends a control event at least every few
    # seconds and ends after --sse-max-duration (60 s).
    .first_byte_timeout = 75s;
    .between_bytes_timeout = 75s;
}

sub vcl_recv {
    # Writes, and anything but GET, go straight through. (HEAD too: Varnish
    # would fetch a GET for it, and a HEAD answers with metadata a GET
    # lacks; it is never cacheable anyway.)
    if (req.method != "GET") {
        return (pass);
    }
    # Reads that carry a credential (access control on: a bearer token, a
    # ?token= or a signed URL) are the caller's alone. durastream marks
    # their answers private too; passing them also keeps them from waiting
    # on another caller's request.
    if (req.http.Authorization || req.url ~ "[?&](token|signature)=") {
        return (pass);
    }
    # SSE: streamed to each client, never cached (durastream says no-cache).
    if (req.url ~ "[?&]live=sse(&|$)") {
        return (pass);
    }
    if (req.url ~ "^/(health|metrics)$") {
        return (pass);
    }
    # Everything else is looked up: catch-up ranges are cached for their
    # max-age, and concurrent misses for one URL (long-polls with the same
    # offset and cursor) wait for one origin request: request collapsing.
    return (hash);
}

sub vcl_backend_response {
    # Stream bodies as they arrive (a long catch-up read, SSE).
    set beresp.do_stream = true;
    # A no-store answer (the tail of a stream, an error, a long-poll timeout
    # without a cursor) must not make the readers waiting on its URL wait
    # in turn: mark it uncacheable for a moment so they go to the origin
    # together (Varnish's hit-for-miss).
    if (beresp.http.Cache-Control ~ "no-store|private") {
        set beresp.uncacheable = true;
        set beresp.ttl = 1s;
        return (deliver);
    }
    # Catch-up reads are "no-cache": keep the body, but ask durastream
    # before serving it to a later request (If-None-Match; unchanged data
    # comes back as a 304 and the stored body is sent): a stream may have
    # grown, closed, been deleted or recreated. The TTL cannot be 0: Varnish
    # neither serves nor revalidates an object whose TTL is 0, so every read
    # would fetch the whole body again. One microsecond: requests that
    # arrived while this answer was being fetched share it (request
    # collapsing: 100 readers of one big stream cost the origin about one
    # copy), and every request that arrives after it revalidates. For
    # strict read-your-writes through the cache, see "Caches" in the README.
    if (beresp.http.Cache-Control ~ "no-cache") {
        set beresp.ttl = 1ms / 1000;
        set beresp.grace = 0s;
        set beresp.keep = 10m;
        return (deliver);
    }
    # What durastream gave no lifetime (no max-age) is not kept either,
    # whatever varnishd's default_ttl says (120 s unless changed): the same
    # moment of hit-for-miss as no-store.
    if (beresp.http.Cache-Control !~ "max-?age") {
        set beresp.uncacheable = true;
        set beresp.ttl = 1s;
        return (deliver);
    }
    # What is left says max-age: a long-poll batch or timeout for one
    # cursor interval (1 s, enough to hand it to every waiting reader), or
    # catch-up reads when durastream runs with --catchup-max-age.
}

sub vcl_deliver {
    # Say whether the cache answered (for operators and deploy/run.sh).
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
