package server_test

// Tests of the limits against hostile clients (limits.go): path rules, the
// live-reader cap and per-client rate limiting. The max append body (413)
// is TestMaxAppendBytes in server_test.go; header timeouts and header size
// are http.Server settings, tested in cmd/durastream.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
)

// wantMessage fails unless r is a text/plain error with a message.
func wantMessage(t *testing.T, r *result, what string) {
	t.Helper()
	if len(bytes.TrimSpace(r.body)) == 0 {
		t.Errorf("%s: %d with an empty body", what, r.status)
	}
	if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("%s: Content-Type %q, want text/plain", what, ct)
	}
}

func TestPathRules(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat("x", 1025)
	cases := []struct {
		name   string
		path   string // relative to the prefix, as sent
		status int
		// noStream: after a rejected PUT, no stream may exist at this
		// (unescaped) engine path.
		noStream string
	}{
		{"too long", long, http.StatusRequestURITooLong, long},
		{"too long with escapes", strings.Repeat("y", 1020) + "/%C3%A9%C3%A9%C3%A9", http.StatusRequestURITooLong, ""},
		{"escaped NUL", "a%00b", 400, "a\x00b"},
		{"escaped newline", "a%0Ab", 400, "a\nb"},
		{"escaped CR", "a%0db", 400, "a\rb"},
		{"escaped 0x1F", "a%1Fb", 400, "a\x1fb"},
		{"escaped DEL", "a%7Fb", 400, "a\x7fb"},
		{"escaped tab", "a%09b", 400, "a\tb"},
		{"dot-dot", "a/../b", 400, "b"},
		{"dot-dot escaped lower", "a/%2e%2e/b", 400, "b"},
		{"dot-dot half escaped", "a/.%2E/b", 400, "b"},
		{"dot escaped", "a/%2e/b", 400, "a/b"},
		{"leading dot-dot", "../x", 400, "x"},
		{"trailing dot-dot", "a/..", 400, ""},
		{"escaped slash", "a%2Fb", 400, "a/b"},
		{"escaped slash lower", "a%2fb", 400, "a/b"},
		{"escaped slash dot-dot", "a%2F..%2Fb", 400, "b"},
		{"escaped slash under __ds", "__ds%2Fx", 400, "__ds/x"},
		{"empty segment", "a//b", 400, "a/b"},
		{"trailing slash", "a/", 400, "a"},
		{"leading slash", "/v1/stream//a", 400, "a"},
		{"reserved", "__ds", 404, "__ds"},
		{"reserved below", "__ds/x", 404, "__ds/x"},
		{"reserved escaped", "%5F%5Fds/x", 404, "__ds/x"},
		{"reserved escaped lower", "%5f%5fds", 404, "__ds"},
		{"reserved half escaped", "_%5Fds/y", 404, "__ds/y"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, m := range []string{"PUT", "POST", "GET", "HEAD", "DELETE"} {
				var r *result
				switch m {
				case "PUT", "POST":
					r = h.do(m, c.path, "x", "Content-Type", "text/plain")
				default:
					r = h.do(m, c.path, nil)
				}
				if r.status != c.status {
					t.Fatalf("%s %s: status %d, want %d (body %q)", m, c.path, r.status, c.status, r.body)
				}
				if m != "HEAD" {
					wantMessage(t, r, m+" "+c.path)
				}
			}
			if c.noStream != "" {
				if _, err := h.eng.Head(c.noStream); err == nil {
					t.Errorf("a stream exists at %q", c.noStream)
				}
			}
		})
	}
	if st := h.eng.Stats(); st.Streams != 0 {
		t.Errorf("engine holds %d streams after rejected requests, want 0", st.Streams)
	}
	// Just within the rules.
	h.create(strings.Repeat("z", 1024), "text/plain", nil)
	h.create("a.b/..c/.d/%2e%2e%2e/%C3%A9/x%20y", "text/plain", nil)
	if _, err := h.eng.Head("a.b/..c/.d/.../é/x y"); err != nil {
		t.Errorf("unusual but valid path: %v", err)
	}
	h.create("app/__ds", "text/plain", nil)
}

func TestMaxPathBytesConfig(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPathBytes = 8
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("12345678", "text/plain", nil)
	r := h.do("PUT", "123456789", nil, "Content-Type", "text/plain")
	want(t, r, http.StatusRequestURITooLong, "PUT 9-byte path")
	wantMessage(t, r, "414")
	if !strings.Contains(string(r.body), "8 bytes") {
		t.Errorf("414 message %q does not name the limit", r.body)
	}
	// The limit counts unescaped bytes: %C3%A9 is two.
	h.create("%C3%A9%C3%A9%C3%A9%C3%A9", "text/plain", nil)
	want(t, h.do("GET", "%C3%A9%C3%A9%C3%A9%C3%A9x?offset=-1", nil), http.StatusRequestURITooLong, "GET 9 bytes")
}

// liveGet starts a GET in the background and returns its result later.
func (h *harness) liveGet(ctx context.Context, p string) <-chan *result {
	ch := make(chan *result, 1)
	req := h.newRequest(ctx, "GET", p, nil)
	go func() {
		resp, err := (&http.Client{Transport: h.hc.Transport}).Do(req)
		if err != nil {
			ch <- &result{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- &result{status: resp.StatusCode, hdr: resp.Header, body: b}
	}()
	return ch
}

func TestMaxLiveReaders(t *testing.T) {
	cfg := testConfig()
	cfg.MaxLiveReaders = 2
	cfg.LongPollTimeout = 10 * time.Second
	cfg.SSEMaxDuration = 10 * time.Second
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("live", "text/plain", []byte("a"))
	tail := h.tail("live")

	wantBusy := func(p string) {
		t.Helper()
		r := h.do("GET", p, nil)
		want(t, r, http.StatusServiceUnavailable, "GET "+p+" beyond the cap")
		wantMessage(t, r, "503")
		if ra := r.get("Retry-After"); ra != "1" {
			t.Errorf("503 Retry-After %q, want 1", ra)
		}
		if !strings.Contains(string(r.body), "live readers") {
			t.Errorf("503 message %q", r.body)
		}
	}

	// Two long-polls wait at the tail: the cap is reached.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1 := h.liveGet(ctx, "live?offset="+tail+"&live=long-poll")
	p2 := h.liveGet(ctx, "live?offset=now&live=long-poll")
	waitLiveReaders(t, h, 2)
	wantBusy("live?offset=" + tail + "&live=long-poll")
	wantBusy("live?offset=-1&live=sse")
	// Catch-up reads, writes and metadata are not live reads.
	want(t, h.do("GET", "live?offset=-1", nil), http.StatusOK, "catch-up read at the cap")
	want(t, h.do("HEAD", "live", nil), http.StatusOK, "HEAD at the cap")
	// An invalid live mode is still a 400, not a 503.
	want(t, h.do("GET", "live?offset=-1&live=bogus", nil), http.StatusBadRequest, "live=bogus at the cap")

	// Data wakes both; their slots are freed.
	h.appendData("live", "text/plain", []byte("b"))
	for i, ch := range []<-chan *result{p1, p2} {
		select {
		case r := <-ch:
			want(t, r, http.StatusOK, "long-poll "+strconv.Itoa(i))
			if string(r.body) != "b" {
				t.Errorf("long-poll %d body %q", i, r.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("long-poll %d did not return", i)
		}
	}
	waitLiveReaders(t, h, 0)

	// SSE connections hold slots for as long as they stream.
	s1 := h.openSSE("live?offset=-1&live=sse")
	s1.mustNext(t, "data")
	s2 := h.openSSE("live?offset=now&live=sse")
	s2.mustNext(t, "control")
	waitLiveReaders(t, h, 2)
	wantBusy("live?offset=now&live=long-poll")
	s1.cancel()
	waitLiveReaders(t, h, 1)
	// A slot is free again: a long-poll that finds data returns at once.
	r := h.do("GET", "live?offset=-1&live=long-poll", nil)
	want(t, r, http.StatusOK, "long-poll after an SSE client left")
	if string(r.body) != "ab" {
		t.Errorf("long-poll body %q", r.body)
	}
}

func TestMaxLiveReadersUnlimited(t *testing.T) {
	cfg := testConfig()
	cfg.MaxLiveReaders = -1
	cfg.LongPollTimeout = 10 * time.Second
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("u", "text/plain", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var chs []<-chan *result
	for range 5 {
		chs = append(chs, h.liveGet(ctx, "u?offset=now&live=long-poll"))
	}
	waitLiveReaders(t, h, 5)
	h.appendData("u", "text/plain", []byte("x"))
	for _, ch := range chs {
		want(t, <-ch, http.StatusOK, "long-poll without a cap")
	}
}

func TestRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit = 0.1 // one token every 10 s
	cfg.RateBurst = 3
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)

	want(t, h.do("PUT", "r", nil, "Content-Type", "text/plain"), http.StatusCreated, "request 1")
	want(t, h.do("GET", "r?offset=-1", nil), http.StatusOK, "request 2")
	want(t, h.do("GET", "missing", nil), http.StatusNotFound, "request 3")
	for i := range 3 {
		r := h.do("GET", "r?offset=-1", nil)
		want(t, r, http.StatusTooManyRequests, "request beyond the burst")
		wantMessage(t, r, "429")
		// The next token is <= 10 s away; Retry-After rounds up.
		ra, err := strconv.Atoi(r.get("Retry-After"))
		if err != nil || ra < 9 || ra > 10 {
			t.Errorf("429 #%d Retry-After %q, want 9..10", i, r.get("Retry-After"))
		}
		if r.get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("429 without CORS headers: a browser could not read it")
		}
	}
	// Every kind of request counts, including preflights and __ds.
	want(t, h.do("OPTIONS", "r", nil), http.StatusTooManyRequests, "preflight over the limit")
	want(t, h.do("PUT", "__ds/x", nil), http.StatusTooManyRequests, "__ds over the limit")
	// Health checks and metrics are not limited.
	want(t, h.do("GET", "/health", nil), http.StatusOK, "health over the limit")
	r := h.do("GET", "/metrics", nil)
	want(t, r, http.StatusOK, "metrics over the limit")
	if !strings.Contains(string(r.body), `op="rate-limited",status="429"`) {
		t.Errorf("metrics do not count rate-limited requests")
	}
	// Without --trust-forwarded-for the header does not make a new client.
	r = h.do("GET", "r?offset=-1", nil, "X-Forwarded-For", "10.9.9.9")
	want(t, r, http.StatusTooManyRequests, "spoofed X-Forwarded-For")
}

func TestRateLimitRefills(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit = 20 // a token every 50 ms; default burst: 20
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	ok, limited := 0, 0
	var ra string
	for range 40 {
		r := h.do("HEAD", "nothing", nil)
		switch r.status {
		case http.StatusNotFound:
			ok++
		case http.StatusTooManyRequests:
			limited++
			ra = r.get("Retry-After")
		default:
			t.Fatalf("status %d", r.status)
		}
	}
	if ok < 20 || limited == 0 {
		t.Fatalf("40 quick requests at 20/s burst 20: %d passed, %d limited", ok, limited)
	}
	if ra != "1" {
		t.Errorf("Retry-After %q for a 50 ms wait, want 1 (at least a second)", ra)
	}
	time.Sleep(200 * time.Millisecond)
	want(t, h.do("HEAD", "nothing", nil), http.StatusNotFound, "after the bucket refilled")
}

func TestRateLimitTrustForwardedFor(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit = 0.01
	cfg.RateBurst = 1
	cfg.TrustForwardedFor = true
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	get := func(xff ...string) int {
		t.Helper()
		var kv []string
		for _, v := range xff {
			kv = append(kv, "X-Forwarded-For", v)
		}
		return h.do("GET", "/v1/stream/x?offset=-1", nil, kv...).status
	}
	if s := get("10.0.0.1"); s != 404 {
		t.Fatalf("first request from 10.0.0.1: %d", s)
	}
	if s := get("10.0.0.1"); s != 429 {
		t.Errorf("second request from 10.0.0.1: %d, want 429", s)
	}
	if s := get("10.0.0.2"); s != 404 {
		t.Errorf("first request from 10.0.0.2: %d, want 404", s)
	}
	// The client cannot choose its identity by prepending addresses: the
	// proxy's (last) entry counts.
	if s := get("203.0.113.7, 10.0.0.1"); s != 429 {
		t.Errorf("spoofed first entry: %d, want 429", s)
	}
	if s := get("203.0.113.7", "10.0.0.2"); s != 429 {
		t.Errorf("spoofed first header: %d, want 429", s)
	}
	// IPv6 clients are limited by /64.
	if s := get("2001:db8:1:2::1"); s != 404 {
		t.Errorf("first IPv6 request: %d", s)
	}
	if s := get("2001:db8:1:2:ffff::9"); s != 429 {
		t.Errorf("same /64: %d, want 429", s)
	}
	if s := get("2001:db8:1:3::1"); s != 404 {
		t.Errorf("other /64: %d, want 404", s)
	}
	// Garbage in the header falls back to the peer address.
	if s := get("not-an-ip"); s != 404 {
		t.Errorf("garbage X-Forwarded-For, first request from the peer: %d", s)
	}
	if s := get("also garbage"); s != 429 {
		t.Errorf("garbage X-Forwarded-For, second request from the peer: %d, want 429", s)
	}
}
