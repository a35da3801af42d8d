package server_test

// The Durable Streams proxy protocol (proxy.go, presign.go) against local
// upstreams (httptest, HTTP and HTTPS) that stream SSE slowly. The
// allowlist names 127.0.0.1, the only way to reach a loopback upstream.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/fetch"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/testkit"
	"github.com/durastream/durastream/vfs"
	"github.com/durastream/durastream/vfs/errorfs"
)

const proxySecret = "test-proxy-secret-0123456789abcdef"

// upstream is a local upstream server.
type upstream struct {
	*httptest.Server
	calls    atomic.Int64 // requests received, all paths
	canceled chan string  // paths whose request ended early (client went away)
	stop     chan struct{}

	mu   sync.Mutex
	last *http.Request // the last /echo request, its body in lastBody
	body []byte
}

// sseBody is what /sse?n=N sends: N events "data: token-i".
func sseBody(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "data: token-%d\n\n", i)
	}
	return b.String()
}

// newUpstream starts an upstream; tls: over HTTPS.
//
//	/sse?n=N&delay=MS    text/event-stream, N events, MS between them
//	/echo                records the request, answers "ok"
//	/status?code=C&size=S  status C, application/json, S bytes of body
//	/redirect            302 to /sse
//	/slow-headers        no answer until the client leaves
//	/silent              one event, then nothing until the client leaves
func newUpstream(t *testing.T, tls bool) *upstream {
	t.Helper()
	u := &upstream{canceled: make(chan string, 16), stop: make(chan struct{})}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		q := r.URL.Query()
		wait := func(d time.Duration) bool { // false: the client left
			select {
			case <-time.After(d):
				return true
			case <-r.Context().Done():
				u.canceled <- r.URL.Path
				return false
			case <-u.stop:
				return false
			}
		}
		switch r.URL.Path {
		case "/sse":
			n, _ := strconv.Atoi(q.Get("n"))
			delay, _ := strconv.Atoi(q.Get("delay"))
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("X-Request-Id", "req-42")
			w.Header().Set("Set-Cookie", "session=secret")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			for i := 0; i < n; i++ {
				fmt.Fprintf(w, "data: token-%d\n\n", i)
				w.(http.Flusher).Flush()
				if delay > 0 && !wait(time.Duration(delay)*time.Millisecond) {
					return
				}
			}
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			u.mu.Lock()
			u.last, u.body = r, b
			u.mu.Unlock()
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok")
		case "/status":
			code, _ := strconv.Atoi(q.Get("code"))
			size, _ := strconv.Atoi(q.Get("size"))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			if size == 0 {
				io.WriteString(w, `{"error":"rate limited"}`)
			} else {
				w.Write(bytes.Repeat([]byte("e"), size))
			}
		case "/redirect":
			http.Redirect(w, r, "/sse?n=1", http.StatusFound)
		case "/slow-headers":
			wait(10 * time.Second)
		case "/silent":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			wait(10 * time.Second)
		default:
			http.NotFound(w, r)
		}
	})
	if tls {
		u.Server = httptest.NewTLSServer(h)
	} else {
		u.Server = httptest.NewServer(h)
	}
	t.Cleanup(func() {
		close(u.stop)
		u.Server.Close()
	})
	return u
}

// lastEcho returns the last /echo request and its body.
func (u *upstream) lastEcho() (*http.Request, []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last, u.body
}

// waitCanceled waits until the upstream saw a request to path end early.
func (u *upstream) waitCanceled(t *testing.T, path string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-u.canceled:
			if p == path {
				return
			}
		case <-deadline:
			t.Fatalf("the upstream request to %s was not cancelled within 5 s", path)
		}
	}
}

type proxyOpts struct {
	allow         []string
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxBody       int64
	baseURL       string
	dir           string            // data directory; default a fresh one
	durability    engine.Durability // default memory
	roots         *x509.CertPool    // trusted by the upstream client
	clock         func() time.Time  // the engine's; default time.Now
	ttl           time.Duration     // of stored fetches; default the manager's
	maxResponse   int64             // largest stored response; default the manager's
	maxConcurrent int               // upstream fetches at once; default the manager's
	fs            vfs.FS            // the engine's file system; default the OS's
}

// proxyHarness is a harness with the proxy protocol on.
type proxyHarness struct {
	*harness
	mgr   *fetch.Manager
	clock atomic.Int64 // added to the proxy's clock, in ns
	close func()       // stops everything, once
}

func newProxyHarness(t *testing.T, o proxyOpts) *proxyHarness {
	t.Helper()
	if o.allow == nil {
		o.allow = []string{"http://127.0.0.1:*/**", "https://127.0.0.1:*/**"}
	}
	allow, err := fetch.ParseAllowlist(o.allow)
	if err != nil {
		t.Fatal(err)
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.durability == "" {
		o.durability = engine.DurabilityMemory
	}
	eng, err := engine.Open(o.dir, &engine.Options{Durability: o.durability, Clock: o.clock, FS: o.fs})
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	tr := fetch.NewTransport(allow, o.headerTimeout)
	if o.roots != nil {
		tr.TLSClientConfig.RootCAs = o.roots
	}
	mgr, err := fetch.New(eng, fetch.Config{Allow: allow, TTL: o.ttl, HeaderTimeout: o.headerTimeout, IdleTimeout: o.idleTimeout,
		MaxResponseBytes: o.maxResponse, MaxConcurrent: o.maxConcurrent, Client: fetch.NewClient(tr)})
	if err != nil {
		t.Fatalf("fetch.New: %v", err)
	}
	ph := &proxyHarness{mgr: mgr}
	cfg := testConfig()
	cfg.Proxy = server.ProxyConfig{Manager: mgr, Secret: proxySecret, MaxRequestBytes: o.maxBody, BaseURL: o.baseURL,
		Now: func() time.Time { return time.Now().Add(time.Duration(ph.clock.Load())) }}
	srv, err := server.New(eng, cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ts := httptest.NewServer(srv)
	hcTr := &http.Transport{DisableCompression: true}
	hc := &http.Client{Transport: hcTr, Timeout: 15 * time.Second}
	var once sync.Once
	ph.close = func() {
		once.Do(func() {
			srv.Shutdown()
			hcTr.CloseIdleConnections()
			ts.Close()
			mgr.Close()
			tr.CloseIdleConnections()
			if err := eng.Close(); err != nil && o.fs == nil { // (faults injected: Close reports them)
				t.Errorf("engine.Close: %v", err)
			}
		})
	}
	t.Cleanup(ph.close)
	ph.harness = &harness{t: t, eng: eng, srv: srv, ts: ts, hc: hc}
	return ph
}

// create POSTs /v1/proxy with service authentication; kv are more headers.
func (ph *proxyHarness) create(upstreamURL, method string, body any, kv ...string) *result {
	ph.t.Helper()
	hdr := append([]string{"Authorization", "Bearer " + proxySecret, "Upstream-URL", upstreamURL,
		"Upstream-Method", method}, kv...)
	return ph.do("POST", "/v1/proxy", body, hdr...)
}

// mustCreate creates a proxy stream and returns its pre-signed URL as a
// path with query.
func (ph *proxyHarness) mustCreate(upstreamURL string) string {
	ph.t.Helper()
	r := ph.create(upstreamURL, "GET", nil)
	want(ph.t, r, http.StatusCreated, "create "+upstreamURL)
	return locPath(ph.t, r)
}

var locRE = regexp.MustCompile(`^http://127\.0\.0\.1:\d+/v1/proxy/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\?expires=(\d+)&signature=([A-Za-z0-9_-]{43})$`)

// locPath checks a 201's Location and returns it as path + query.
func locPath(t *testing.T, r *result) string {
	t.Helper()
	loc := r.get("Location")
	if !locRE.MatchString(loc) {
		t.Fatalf("Location %q does not look like {proxy-url}/{uuid}?expires=&signature=", loc)
	}
	u, _ := url.Parse(loc)
	return u.RequestURI()
}

// idOf is the stream id of a pre-signed path.
func idOf(loc string) string {
	p, _, _ := strings.Cut(loc, "?")
	return strings.TrimPrefix(p, "/v1/proxy/")
}

// with adds query parameters to a path that has a query.
func with(loc, params string) string { return loc + "&" + params }

// wantProxyError checks a JSON error envelope of section 11.
func wantProxyError(t *testing.T, r *result, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d %s (body %q)", r.status, status, code, trunc(r.body))
	}
	if ct := r.get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not the JSON envelope: %v", r.body, err)
	}
	if e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("error %+v, want code %s and a message", e.Error, code)
	}
}

// follow reads a proxy stream from offset with long-polls until it is
// closed, and returns the data and the last response.
func (ph *proxyHarness) follow(loc, offset string) ([]byte, *result) {
	ph.t.Helper()
	var out []byte
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r := ph.do("GET", with(loc, "offset="+url.QueryEscape(offset)+"&live=long-poll"), nil)
		switch r.status {
		case http.StatusOK:
			out = append(out, r.body...)
		case http.StatusNoContent:
		default:
			ph.t.Fatalf("long-poll: status %d (%q)", r.status, r.body)
		}
		if r.get("Upstream-Content-Type") == "" || r.get("Upstream-Outcome") == "" {
			ph.t.Errorf("long-poll without Upstream-Content-Type or Upstream-Outcome: %v", r.hdr)
		}
		offset = r.get("Stream-Next-Offset")
		if r.get("Stream-Closed") == "true" {
			return out, r
		}
	}
	ph.t.Fatalf("proxy stream not closed within 20 s (%d bytes read)", len(out))
	return nil, nil
}

func TestProxyCreateAndRead(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	const n = 30
	r := ph.create(up.URL+"/sse?n=30&delay=10", "POST", `{"prompt":"hi"}`,
		"Content-Type", "application/json", "Upstream-Authorization", "Bearer upstream-key")
	want(t, r, http.StatusCreated, "create")
	if ct := r.get("Upstream-Content-Type"); ct != "text/event-stream" {
		t.Errorf("Upstream-Content-Type %q", ct)
	}
	if len(r.body) != 0 {
		t.Errorf("201 has a body %q", r.body)
	}
	loc := locPath(t, r)
	m := locRE.FindStringSubmatch(r.get("Location"))
	exp, _ := strconv.ParseInt(m[2], 10, 64)
	if d := time.Until(time.Unix(exp, 0)); d < 24*time.Hour-time.Minute || d > 24*time.Hour+time.Minute {
		t.Errorf("expires in %v, want 24 h", d)
	}
	expose := headerList(r.get("Access-Control-Expose-Headers"))
	for _, h := range []string{"location", "upstream-content-type", "upstream-status", "stream-next-offset", "stream-closed"} {
		if !expose[h] {
			t.Errorf("Access-Control-Expose-Headers lacks %s: %q", h, r.get("Access-Control-Expose-Headers"))
		}
	}

	// Follow from the start with long-polls.
	got, last := ph.follow(loc, "-1")
	if string(got) != sseBody(n) {
		t.Fatalf("long-poll read %q, want %q", trunc(got), trunc([]byte(sseBody(n))))
	}
	if o := last.get("Upstream-Outcome"); o != "complete" {
		t.Errorf("Upstream-Outcome %q at the end, want complete", o)
	}
	if up.calls.Load() != 1 {
		t.Errorf("upstream called %d times", up.calls.Load())
	}

	// A catch-up read returns the whole response, closed.
	whole := ph.do("GET", loc, nil)
	want(t, whole, http.StatusOK, "catch-up")
	if string(whole.body) != sseBody(n) || whole.get("Stream-Closed") != "true" {
		t.Errorf("catch-up %q closed=%q", trunc(whole.body), whole.get("Stream-Closed"))
	}
	if ct := whole.get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("read Content-Type %q, want application/octet-stream", ct)
	}
	if whole.get("Upstream-Content-Type") != "text/event-stream" || whole.get("Upstream-Outcome") != "complete" {
		t.Errorf("catch-up Upstream-Content-Type %q Upstream-Outcome %q", whole.get("Upstream-Content-Type"), whole.get("Upstream-Outcome"))
	}
	if cc := whole.get("Cache-Control"); !strings.HasPrefix(cc, "private") {
		t.Errorf("Cache-Control %q: an authenticated read must not be shared-cacheable", cc)
	}
	if whole.get("Set-Cookie") != "" {
		t.Error("the upstream's Set-Cookie reached a reader")
	}

	// Resume at an offset taken from a partial read: nothing lost or doubled.
	first := ph.do("GET", with(loc, "offset=-1&live=long-poll"), nil)
	want(t, first, http.StatusOK, "first long-poll")
	mid := first.get("Stream-Next-Offset")
	rest := ph.do("GET", with(loc, "offset="+url.QueryEscape(mid)), nil)
	want(t, rest, http.StatusOK, "resume")
	if string(first.body)+string(rest.body) != sseBody(n) {
		t.Errorf("resumed read: %q + %q", trunc(first.body), trunc(rest.body))
	}

	// offset=now at the closed tail: no data, closed.
	now := ph.do("GET", with(loc, "offset=now"), nil)
	want(t, now, http.StatusOK, "offset=now")
	if len(now.body) != 0 || now.get("Stream-Closed") != "true" {
		t.Errorf("offset=now: %q closed=%q", now.body, now.get("Stream-Closed"))
	}
}

func TestProxyForwardsHeadersAndBody(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	r := ph.create(up.URL+"/echo", "PUT", `{"a":1}`, "Content-Type", "application/json",
		"Upstream-Authorization", "Bearer upstream-key", "X-Custom", "v1", "Connection", "X-Hop", "X-Hop", "gone",
		"Cookie", "c=1")
	want(t, r, http.StatusCreated, "create")
	req, body := up.lastEcho()
	if req == nil {
		t.Fatal("upstream not called")
	}
	if req.Method != "PUT" || string(body) != `{"a":1}` {
		t.Errorf("upstream got %s %q", req.Method, body)
	}
	checks := map[string]string{
		"Authorization": "Bearer upstream-key", // Upstream-Authorization, not the service secret
		"Content-Type":  "application/json",
		"X-Custom":      "v1",
		"Cookie":        "c=1",
		"X-Hop":         "", // named by Connection: hop-by-hop
		"Upstream-Url":  "",
	}
	for k, v := range checks {
		if got := req.Header.Get(k); got != v {
			t.Errorf("upstream header %s = %q, want %q", k, got, v)
		}
	}
	if strings.Contains(fmt.Sprint(req.Header), proxySecret) || strings.Contains(req.URL.RawQuery, proxySecret) {
		t.Error("the service secret reached the upstream")
	}
	got, _ := ph.follow(locPath(t, r), "-1")
	if string(got) != "ok" {
		t.Errorf("stream %q", got)
	}
}

func TestProxyReadSSE(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	const n = 20
	loc := ph.mustCreate(up.URL + "/sse?n=20&delay=15")
	s := ph.openSSE(with(loc, "offset=-1&live=sse"))
	if ct := s.resp.Header.Get("Upstream-Content-Type"); ct != "text/event-stream" {
		t.Errorf("SSE Upstream-Content-Type %q", ct)
	}
	var text strings.Builder
	closed := false
	for !closed {
		ev, ok := s.next(t, 5*time.Second)
		if !ok {
			t.Fatalf("SSE ended before the stream closed (err %v); got %q", s.err, trunc([]byte(text.String())))
		}
		switch ev.typ {
		case "data":
			text.WriteString(ev.joined())
		case "control":
			closed = ev.control(t)["streamClosed"] == true
		}
	}
	if text.String() != sseBody(n) {
		t.Errorf("SSE data %q, want %q", trunc([]byte(text.String())), trunc([]byte(sseBody(n))))
	}
	s.waitEnd(t, 3*time.Second)
}

func TestProxyHTTPSUpstream(t *testing.T) {
	up := newUpstream(t, true)
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	ph := newProxyHarness(t, proxyOpts{roots: roots})
	loc := ph.mustCreate(up.URL + "/sse?n=10&delay=10")
	got, last := ph.follow(loc, "-1")
	if string(got) != sseBody(10) || last.get("Upstream-Outcome") != "complete" {
		t.Errorf("HTTPS upstream: %q outcome %q", trunc(got), last.get("Upstream-Outcome"))
	}
	// Without the test CA the upstream's certificate is refused: 502.
	ph2 := newProxyHarness(t, proxyOpts{})
	r := ph2.create(up.URL+"/sse?n=1", "GET", nil)
	wantProxyError(t, r, http.StatusBadGateway, "UPSTREAM_ERROR")
}

func TestProxyAbortKeepsDataAndCloses(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	loc := ph.mustCreate(up.URL + "/sse?n=500&delay=20")

	// Read until some tokens have arrived.
	var seen []byte
	off := "-1"
	for len(seen) < 3*len("data: token-0\n\n") {
		r := ph.do("GET", with(loc, "offset="+url.QueryEscape(off)+"&live=long-poll"), nil)
		if r.status != http.StatusOK && r.status != http.StatusNoContent {
			t.Fatalf("long-poll %d %q", r.status, r.body)
		}
		if r.get("Upstream-Outcome") != "running" {
			t.Errorf("Upstream-Outcome %q while running", r.get("Upstream-Outcome"))
		}
		seen = append(seen, r.body...)
		off = r.get("Stream-Next-Offset")
	}

	// Service authentication cannot abort; an unknown action is refused.
	r := ph.do("PATCH", "/v1/proxy/"+idOf(loc)+"?action=abort", nil, "Authorization", "Bearer "+proxySecret)
	wantProxyError(t, r, http.StatusUnauthorized, "MISSING_SIGNATURE")
	r = ph.do("PATCH", "/v1/proxy/"+idOf(loc)+"?action=abort&secret="+proxySecret, nil)
	wantProxyError(t, r, http.StatusUnauthorized, "MISSING_SIGNATURE")
	wantProxyError(t, ph.do("PATCH", with(loc, "action=stop"), nil), http.StatusBadRequest, "INVALID_ACTION")
	wantProxyError(t, ph.do("PATCH", loc, nil), http.StatusBadRequest, "INVALID_ACTION")

	r = ph.do("PATCH", with(loc, "action=abort"), nil)
	want(t, r, http.StatusNoContent, "abort")
	up.waitCanceled(t, "/sse")

	whole := ph.do("GET", loc, nil)
	want(t, whole, http.StatusOK, "read after abort")
	full := sseBody(500)
	if !bytes.HasPrefix(whole.body, seen) || !strings.HasPrefix(full, string(whole.body)) || len(whole.body) == len(full) {
		t.Errorf("after abort the stream holds %d bytes (%q); want what was read (%d bytes) and more, a prefix of the response",
			len(whole.body), trunc(whole.body), len(seen))
	}
	if whole.get("Stream-Closed") != "true" || whole.get("Upstream-Outcome") != "aborted" {
		t.Errorf("after abort: Stream-Closed %q Upstream-Outcome %q", whole.get("Stream-Closed"), whole.get("Upstream-Outcome"))
	}
	// A live reader at the tail is told it is closed at once.
	lp := ph.do("GET", with(loc, "offset="+url.QueryEscape(whole.get("Stream-Next-Offset"))+"&live=long-poll"), nil)
	if lp.status != http.StatusNoContent || lp.get("Stream-Closed") != "true" {
		t.Errorf("long-poll at the tail after abort: %d closed=%q", lp.status, lp.get("Stream-Closed"))
	}
	head := ph.do("HEAD", "/v1/proxy/"+idOf(loc), nil, "Authorization", "Bearer "+proxySecret)
	want(t, head, http.StatusOK, "HEAD after abort")
	if head.get("Stream-Closed") != "true" || head.get("Upstream-Outcome") != "aborted" {
		t.Errorf("HEAD after abort: Stream-Closed %q Upstream-Outcome %q", head.get("Stream-Closed"), head.get("Upstream-Outcome"))
	}
	// Idempotent, and so is aborting a completed stream.
	want(t, ph.do("PATCH", with(loc, "action=abort"), nil), http.StatusNoContent, "second abort")
	done := ph.mustCreate(up.URL + "/sse?n=2")
	ph.follow(done, "-1")
	want(t, ph.do("PATCH", with(done, "action=abort"), nil), http.StatusNoContent, "abort a completed stream")
	if o := ph.do("GET", done, nil).get("Upstream-Outcome"); o != "complete" {
		t.Errorf("aborting a completed stream changed its outcome to %q", o)
	}
}

func TestProxyDeleteAbortsAndRemoves(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	loc := ph.mustCreate(up.URL + "/sse?n=500&delay=20")
	id := idOf(loc)
	ph.do("GET", with(loc, "offset=-1&live=long-poll"), nil)

	// Pre-signed parameters do not authorize a delete.
	wantProxyError(t, ph.do("DELETE", loc, nil), http.StatusUnauthorized, "MISSING_SECRET")
	wantProxyError(t, ph.do("DELETE", "/v1/proxy/"+id, nil, "Authorization", "Bearer wrong-secret-wrong-secret"),
		http.StatusUnauthorized, "INVALID_SECRET")

	want(t, ph.do("DELETE", "/v1/proxy/"+id, nil, "Authorization", "Bearer "+proxySecret), http.StatusNoContent, "delete")
	up.waitCanceled(t, "/sse")
	wantProxyError(t, ph.do("GET", loc, nil), http.StatusNotFound, "STREAM_NOT_FOUND")
	r := ph.do("HEAD", "/v1/proxy/"+id+"?secret="+proxySecret, nil)
	if r.status != http.StatusNotFound {
		t.Errorf("HEAD after delete: %d", r.status)
	}
	wantProxyError(t, ph.do("PATCH", with(loc, "action=abort"), nil), http.StatusNotFound, "STREAM_NOT_FOUND")
	// Idempotent; unknown ids too.
	want(t, ph.do("DELETE", "/v1/proxy/"+id+"?secret="+proxySecret, nil), http.StatusNoContent, "second delete")
	want(t, ph.do("DELETE", "/v1/proxy/00000000-0000-4000-8000-000000000000?secret="+proxySecret, nil),
		http.StatusNoContent, "delete unknown")
	if paths, _ := ph.eng.List("__ds/fetch/"); len(paths) != 0 {
		t.Errorf("streams left after delete: %q", paths)
	}
}

func TestProxySignatures(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	loc := ph.mustCreate(up.URL + "/sse?n=3")
	ph.follow(loc, "-1")
	id := idOf(loc)
	q, _ := url.ParseQuery(strings.SplitN(loc, "?", 2)[1])
	exp, sig := q.Get("expires"), q.Get("signature")
	other := ph.mustCreate(up.URL + "/sse?n=1")
	otherID := idOf(other)
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	expN, _ := strconv.ParseInt(exp, 10, 64)
	path := func(id, exp, sig string) string {
		return "/v1/proxy/" + id + "?expires=" + url.QueryEscape(exp) + "&signature=" + url.QueryEscape(sig)
	}

	want(t, ph.do("GET", path(id, exp, sig), nil), http.StatusOK, "genuine")
	invalid := map[string]string{
		"another stream's id":   path(otherID, exp, sig),
		"expires + 1":           path(id, strconv.FormatInt(expN+1, 10), sig),
		"expires far future":    path(id, "99999999999", sig),
		"expires with a zero":   path(id, "0"+exp, sig),
		"signature first char":  path(id, exp, flip(sig, 0)),
		"signature last char":   path(id, exp, flip(sig, len(sig)-1)),
		"signature truncated":   path(id, exp, sig[:len(sig)-1]),
		"signature padded":      path(id, exp, sig+"="),
		"signature std base64":  path(id, exp, strings.NewReplacer("-", "+", "_", "/").Replace(sig)+"+/"),
		"signature not base64":  path(id, exp, "!!!!"),
		"expires not a number":  path(id, "soon", sig),
		"signature given twice": path(id, exp, sig) + "&signature=" + sig,
	}
	for name, p := range invalid {
		t.Run(name, func(t *testing.T) {
			r := ph.do("GET", p, nil)
			wantProxyError(t, r, http.StatusUnauthorized, "SIGNATURE_INVALID")
			if r.get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			// The same for an abort.
			wantProxyError(t, ph.do("PATCH", p+"&action=abort", nil), http.StatusUnauthorized, "SIGNATURE_INVALID")
		})
	}
	wantProxyError(t, ph.do("GET", "/v1/proxy/"+id, nil), http.StatusUnauthorized, "MISSING_SIGNATURE")
	wantProxyError(t, ph.do("GET", "/v1/proxy/"+id+"?expires="+exp, nil), http.StatusUnauthorized, "MISSING_SIGNATURE")
	wantProxyError(t, ph.do("GET", "/v1/proxy/"+id+"?signature="+sig, nil), http.StatusUnauthorized, "MISSING_SIGNATURE")

	// Service authentication is the read fallback.
	want(t, ph.do("GET", "/v1/proxy/"+id+"?secret="+proxySecret, nil), http.StatusOK, "GET with ?secret=")
	want(t, ph.do("GET", "/v1/proxy/"+id, nil, "Authorization", "Bearer "+proxySecret), http.StatusOK, "GET with Bearer")
	want(t, ph.do("GET", path(id, exp, flip(sig, 3)), nil, "Authorization", "Bearer "+proxySecret), http.StatusOK,
		"bad signature, good secret")
	wantProxyError(t, ph.do("GET", "/v1/proxy/"+id+"?secret=nope-nope-nope-nope", nil), http.StatusUnauthorized, "INVALID_SECRET")

	// Expiry: a genuine URL past its time; a tampered expired one is invalid.
	ph.clock.Store(int64(25 * time.Hour))
	wantProxyError(t, ph.do("GET", loc, nil), http.StatusUnauthorized, "SIGNATURE_EXPIRED")
	wantProxyError(t, ph.do("PATCH", with(loc, "action=abort"), nil), http.StatusUnauthorized, "SIGNATURE_EXPIRED")
	wantProxyError(t, ph.do("GET", path(id, exp, flip(sig, 5)), nil), http.StatusUnauthorized, "SIGNATURE_INVALID")
	want(t, ph.do("GET", "/v1/proxy/"+id+"?secret="+proxySecret, nil), http.StatusOK, "service auth after expiry")
	// A URL issued now is valid for 24 h from now.
	fresh := ph.mustCreate(up.URL + "/sse?n=1")
	want(t, ph.do("GET", fresh, nil), http.StatusOK, "fresh URL")
}

func TestProxyHeadNeedsServiceAuth(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	loc := ph.mustCreate(up.URL + "/sse?n=5")
	got, _ := ph.follow(loc, "-1")
	r := ph.do("HEAD", loc, nil)
	if r.status != http.StatusUnauthorized || len(r.body) != 0 {
		t.Fatalf("HEAD with a pre-signed URL only: %d %q, want 401 without a body", r.status, r.body)
	}
	r = ph.do("HEAD", "/v1/proxy/"+idOf(loc), nil, "Authorization", "Bearer "+proxySecret)
	want(t, r, http.StatusOK, "HEAD")
	if r.get("Stream-Next-Offset") == "" || r.get("Stream-Closed") != "true" || r.get("Upstream-Content-Type") != "text/event-stream" ||
		r.get("Upstream-Outcome") != "complete" || r.get("Content-Type") != "application/octet-stream" {
		t.Errorf("HEAD headers %v", r.hdr)
	}
	if tail := ph.do("GET", with(loc, "offset=now"), nil).get("Stream-Next-Offset"); tail != r.get("Stream-Next-Offset") {
		t.Errorf("HEAD tail %q, read tail %q", r.get("Stream-Next-Offset"), tail)
	}
	if len(got) == 0 {
		t.Error("no data")
	}
}

func TestProxyUpstreamErrorIsNotStored(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	r := ph.create(up.URL+"/status?code=429", "POST", `{}`)
	if r.status != http.StatusBadGateway || r.get("Upstream-Status") != "429" ||
		r.get("Content-Type") != "application/json" || string(r.body) != `{"error":"rate limited"}` {
		t.Errorf("upstream 429: %d Upstream-Status %q Content-Type %q body %q", r.status, r.get("Upstream-Status"),
			r.get("Content-Type"), r.body)
	}
	if r.get("Location") != "" {
		t.Error("a 502 has a Location")
	}
	// A large error body is truncated (64 KiB by default).
	r = ph.create(up.URL+"/status?code=500&size=1000000", "GET", nil)
	if r.status != http.StatusBadGateway || r.get("Upstream-Status") != "500" || len(r.body) != 64<<10 {
		t.Errorf("upstream 500: %d Upstream-Status %q, %d body bytes", r.status, r.get("Upstream-Status"), len(r.body))
	}
	if paths, _ := ph.eng.List("__ds/fetch/"); len(paths) != 0 {
		t.Errorf("an upstream error was stored: %q", paths)
	}
}

func TestProxyRedirectRefused(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	r := ph.create(up.URL+"/redirect", "GET", nil)
	wantProxyError(t, r, http.StatusBadRequest, "REDIRECT_NOT_ALLOWED")
	if n := up.calls.Load(); n != 1 {
		t.Errorf("upstream called %d times: the redirect was followed", n)
	}
}

func TestProxyAllowlist(t *testing.T) {
	up := newUpstream(t, false)
	port := strings.TrimPrefix(up.URL, "http://127.0.0.1:")
	ph := newProxyHarness(t, proxyOpts{allow: []string{
		"http://127.0.0.1:" + port + "/sse",
		"http://localhost:*/**",
		"http://**:*/open/**",
	}})
	cases := map[string]string{
		"unlisted path":          up.URL + "/echo",
		"unlisted host":          "https://example.com/v1/chat",
		"localhost by name":      "http://localhost:" + port + "/sse", // matches, but a name never unlocks loopback
		"wildcard host, IP":      up.URL + "/open/x",                  // wildcards never match an IP
		"not http":               "ftp://127.0.0.1:" + port + "/sse",
		"relative":               "/sse",
		"user info":              "http://user:pw@127.0.0.1:" + port + "/sse",
		"encoded slash":          up.URL + "/sse%2F..",
		"numeric host":           "http://2130706433:" + port + "/sse",
		"metadata":               "http://169.254.169.254/latest/meta-data",
		"upstream url is spaces": "   ",
	}
	for name, u := range cases {
		t.Run(name, func(t *testing.T) {
			r := ph.create(u, "GET", nil)
			if strings.TrimSpace(u) == "" {
				wantProxyError(t, r, http.StatusBadRequest, "MISSING_UPSTREAM_URL")
				return
			}
			wantProxyError(t, r, http.StatusForbidden, "UPSTREAM_NOT_ALLOWED")
		})
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("upstream reached %d times by refused URLs", n)
	}
	want(t, ph.create(up.URL+"/sse?n=1", "GET", nil), http.StatusCreated, "the listed URL")
}

func TestProxyRequestValidation(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{maxBody: 1024})
	auth := []string{"Authorization", "Bearer " + proxySecret}
	do := func(method, p string, body any, kv ...string) *result {
		return ph.do(method, p, body, append(append([]string{}, auth...), kv...)...)
	}
	wantProxyError(t, ph.do("POST", "/v1/proxy", nil, "Upstream-URL", up.URL+"/sse", "Upstream-Method", "GET"),
		http.StatusUnauthorized, "MISSING_SECRET")
	wantProxyError(t, ph.do("POST", "/v1/proxy?secret=wrong", nil, "Upstream-URL", up.URL+"/sse", "Upstream-Method", "GET"),
		http.StatusUnauthorized, "INVALID_SECRET")
	wantProxyError(t, ph.do("POST", "/v1/proxy", nil, "Authorization", "Basic "+proxySecret,
		"Upstream-URL", up.URL+"/sse", "Upstream-Method", "GET"), http.StatusUnauthorized, "MISSING_SECRET")
	wantProxyError(t, do("POST", "/v1/proxy", nil, "Upstream-Method", "GET"), http.StatusBadRequest, "MISSING_UPSTREAM_URL")
	wantProxyError(t, do("POST", "/v1/proxy", nil, "Upstream-URL", up.URL+"/sse"), http.StatusBadRequest, "MISSING_UPSTREAM_METHOD")
	for _, m := range []string{"TRACE", "CONNECT", "HEAD", "OPTIONS", "G ET"} {
		wantProxyError(t, do("POST", "/v1/proxy", nil, "Upstream-URL", up.URL+"/sse", "Upstream-Method", m),
			http.StatusBadRequest, "INVALID_UPSTREAM_METHOD")
	}
	r := do("POST", "/v1/proxy?secret="+proxySecret, bytes.Repeat([]byte("x"), 2048), "Upstream-URL", up.URL+"/echo", "Upstream-Method", "POST")
	wantProxyError(t, r, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	r = do("POST", "/v1/proxy", chunkedReader{bytes.NewReader(bytes.Repeat([]byte("x"), 2048))}, "Upstream-URL", up.URL+"/echo", "Upstream-Method", "POST")
	wantProxyError(t, r, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
	if up.calls.Load() != 0 {
		t.Errorf("invalid requests reached the upstream %d times", up.calls.Load())
	}
	// A lower-case method is accepted.
	want(t, do("POST", "/v1/proxy", nil, "Upstream-URL", up.URL+"/sse?n=1", "Upstream-Method", "get"), http.StatusCreated, "lower-case method")

	// Ids are checked before anything else: junk is 404 without auth.
	for _, id := range []string{"x", "00000000-0000-4000-8000-00000000000G", "00000000-0000-4000-8000-00000000000A",
		"000000000000400080000000000000000000", "{00000000-0000-4000-8000-000000000000}", "%2e%2e", "..",
		strings.Repeat("a", 5000)} {
		wantProxyError(t, ph.do("GET", "/v1/proxy/"+id+"?expires=1&signature=x", nil), http.StatusNotFound, "STREAM_NOT_FOUND")
	}
	// An unknown well-formed id: authentication first, then 404.
	unknown := "/v1/proxy/00000000-0000-4000-8000-000000000000"
	wantProxyError(t, ph.do("GET", unknown, nil), http.StatusUnauthorized, "MISSING_SIGNATURE")
	wantProxyError(t, ph.do("GET", unknown+"?secret="+proxySecret, nil), http.StatusNotFound, "STREAM_NOT_FOUND")
	// Routes that do not exist.
	wantProxyError(t, do("GET", "/v1/proxy", nil), http.StatusNotFound, "NOT_FOUND")
	wantProxyError(t, do("PUT", unknown, nil), http.StatusNotFound, "NOT_FOUND")
	wantProxyError(t, do("GET", unknown+"/more", nil), http.StatusNotFound, "NOT_FOUND")
	// Read errors of the base protocol come in the envelope too.
	loc := ph.mustCreate(up.URL + "/sse?n=1")
	wantProxyError(t, ph.do("GET", with(loc, "offset=bogus"), nil), http.StatusBadRequest, "INVALID_REQUEST")
	wantProxyError(t, ph.do("GET", with(loc, "live=sse"), nil), http.StatusBadRequest, "INVALID_REQUEST")
}

func TestProxyHeaderTimeout(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{headerTimeout: 300 * time.Millisecond})
	start := time.Now()
	r := ph.create(up.URL+"/slow-headers", "GET", nil)
	wantProxyError(t, r, http.StatusGatewayTimeout, "UPSTREAM_TIMEOUT")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("504 after %v", d)
	}
	if paths, _ := ph.eng.List("__ds/fetch/"); len(paths) != 0 {
		t.Errorf("a timed-out fetch was stored: %q", paths)
	}
}

func TestProxyIdleTimeoutEndsStream(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{idleTimeout: 400 * time.Millisecond})
	loc := ph.mustCreate(up.URL + "/silent")
	start := time.Now()
	got, last := ph.follow(loc, "-1")
	if string(got) != "data: first\n\n" {
		t.Errorf("idle stream %q", got)
	}
	if o := last.get("Upstream-Outcome"); o != "idle-timeout" {
		t.Errorf("Upstream-Outcome %q, want idle-timeout", o)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v", d)
	}
	up.waitCanceled(t, "/silent")
}

// The proxy's limits and storage failures, each with its section 11 code:
// a response past the largest stored one ends the stream (too-large, what
// was stored kept); more fetches than allowed at once is 503 UNAVAILABLE
// with Retry-After; an engine that cannot store the new stream is 502
// STORAGE_ERROR, with no Location.
func TestProxyLimitsAndStorageErrors(t *testing.T) {
	up := newUpstream(t, false)
	t.Run("too large", func(t *testing.T) {
		ph := newProxyHarness(t, proxyOpts{maxResponse: 40})
		loc := ph.mustCreate(up.URL + "/sse?n=10")
		got, last := ph.follow(loc, "-1")
		if len(got) != 40 || !strings.HasPrefix("data: token-0\n\ndata: token-1\n\ndata: token-2\n\n", string(got)) {
			t.Errorf("too-large stream %q, want its first 40 bytes", got)
		}
		if o := last.get("Upstream-Outcome"); o != "too-large" {
			t.Errorf("Upstream-Outcome %q, want too-large", o)
		}
	})
	t.Run("busy", func(t *testing.T) {
		ph := newProxyHarness(t, proxyOpts{maxConcurrent: 1})
		ph.mustCreate(up.URL + "/silent") // holds the one slot
		r := ph.create(up.URL+"/sse?n=1", "GET", nil)
		wantProxyError(t, r, http.StatusServiceUnavailable, "UNAVAILABLE")
		if r.get("Retry-After") == "" {
			t.Error("busy: no Retry-After")
		}
	})
	t.Run("storage error", func(t *testing.T) {
		fs := errorfs.New(nil)
		ph := newProxyHarness(t, proxyOpts{durability: engine.DurabilitySync, fs: fs})
		fs.Inject(errorfs.Rule{Op: errorfs.Fdatasync, PathContains: "/wal/", Err: syscall.EIO, Times: 1})
		r := ph.create(up.URL+"/sse?n=1", "GET", nil)
		wantProxyError(t, r, http.StatusBadGateway, "STORAGE_ERROR")
		if r.get("Location") != "" {
			t.Errorf("a Location for a stream that was not stored: %q", r.get("Location"))
		}
	})
}

func TestProxyCORS(t *testing.T) {
	ph := newProxyHarness(t, proxyOpts{})
	for _, p := range []string{"/v1/proxy", "/v1/proxy/00000000-0000-4000-8000-000000000000"} {
		r := ph.do("OPTIONS", p, nil, "Origin", "https://app.example", "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "upstream-url, upstream-method, x-custom")
		want(t, r, http.StatusNoContent, "preflight "+p)
		methods := headerList(r.get("Access-Control-Allow-Methods"))
		for _, m := range []string{"get", "head", "post", "patch", "delete"} {
			if !methods[m] {
				t.Errorf("%s: Allow-Methods lacks %s: %q", p, m, r.get("Access-Control-Allow-Methods"))
			}
		}
		hdrs := headerList(r.get("Access-Control-Allow-Headers"))
		for _, h := range []string{"upstream-url", "upstream-method", "upstream-authorization", "authorization", "content-type", "x-custom"} {
			if !hdrs[h] {
				t.Errorf("%s: Allow-Headers lacks %s: %q", p, h, r.get("Access-Control-Allow-Headers"))
			}
		}
		if r.get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("Allow-Origin %q", r.get("Access-Control-Allow-Origin"))
		}
	}
	r := ph.do("GET", "/v1/proxy/00000000-0000-4000-8000-000000000000", nil)
	expose := headerList(r.get("Access-Control-Expose-Headers"))
	for _, h := range []string{"location", "upstream-content-type", "upstream-status", "upstream-outcome",
		"stream-next-offset", "stream-up-to-date", "stream-closed", "stream-cursor"} {
		if !expose[h] {
			t.Errorf("Expose-Headers lacks %s on an error: %q", h, r.get("Access-Control-Expose-Headers"))
		}
	}
}

func TestProxyOffAndConfig(t *testing.T) {
	h := newHarness(t)
	if r := h.do("POST", "/v1/proxy", nil, "Authorization", "Bearer "+proxySecret); r.status != http.StatusNotFound {
		t.Errorf("proxy off: POST /v1/proxy = %d", r.status)
	}
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	mgr, err := fetch.New(eng, fetch.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	for _, c := range []server.ProxyConfig{
		{Manager: mgr},
		{Manager: mgr, Secret: "short"},
		{Manager: mgr, Secret: proxySecret, URLTTL: -time.Second},
		{Manager: mgr, Secret: proxySecret, BaseURL: "api.example.com/v1/proxy"},
		{Manager: mgr, Secret: proxySecret, BaseURL: "https://api.example.com/v1/proxy?x=1"},
	} {
		if _, err := server.New(eng, server.Config{Proxy: c}); err == nil {
			t.Errorf("server.New accepted %+v", c)
		}
	}
}

// The client leaving before the upstream answers drops the fetch.
func TestProxyCreateClientGone(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req := ph.newRequest(ctx, "POST", "/v1/proxy", nil, "Authorization", "Bearer "+proxySecret,
		"Upstream-URL", up.URL+"/slow-headers", "Upstream-Method", "GET")
	if resp, err := ph.hc.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got %d, want the request to time out", resp.StatusCode)
	}
	up.waitCanceled(t, "/slow-headers")
	if paths, _ := ph.eng.List("__ds/fetch/"); len(paths) != 0 {
		t.Errorf("streams stored for a fetch nobody can find: %q", paths)
	}
}

func TestProxyBaseURL(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{baseURL: "https://api.example.com/edge/v1/proxy/"})
	r := ph.create(up.URL+"/sse?n=1", "GET", nil)
	want(t, r, http.StatusCreated, "create")
	loc := r.get("Location")
	if !regexp.MustCompile(`^https://api\.example\.com/edge/v1/proxy/[0-9a-f-]{36}\?expires=\d+&signature=[\w-]{43}$`).MatchString(loc) {
		t.Fatalf("Location %q does not use the base URL", loc)
	}
	// The signature does not depend on the base URL: the same id and
	// parameters work on the listener itself.
	u, _ := url.Parse(loc)
	want(t, ph.do("GET", "/v1/proxy/"+strings.TrimPrefix(u.Path, "/edge/v1/proxy/")+"?"+u.RawQuery, nil), http.StatusOK, "read")
}

// A server that stops mid-fetch closes the stream with what it stored
// (outcome interrupted); after a restart with the same secret the
// pre-signed URL still reads it.
func TestProxyInterruptedByRestart(t *testing.T) {
	up := newUpstream(t, false)
	dir := t.TempDir()
	ph := newProxyHarness(t, proxyOpts{dir: dir, durability: engine.DurabilitySync})
	loc := ph.mustCreate(up.URL + "/sse?n=500&delay=20")
	var seen []byte
	off := "-1"
	for len(seen) == 0 {
		r := ph.do("GET", with(loc, "offset="+url.QueryEscape(off)+"&live=long-poll"), nil)
		seen = append(seen, r.body...)
		off = r.get("Stream-Next-Offset")
	}
	ph.close()
	up.waitCanceled(t, "/sse")

	ph2 := newProxyHarness(t, proxyOpts{dir: dir, durability: engine.DurabilitySync})
	r := ph2.do("GET", loc, nil)
	want(t, r, http.StatusOK, "read after restart")
	if !bytes.HasPrefix(r.body, seen) || !strings.HasPrefix(sseBody(500), string(r.body)) {
		t.Errorf("after restart %q, read before %q", trunc(r.body), trunc(seen))
	}
	if r.get("Stream-Closed") != "true" || r.get("Upstream-Outcome") != "interrupted" {
		t.Errorf("after restart: Stream-Closed %q Upstream-Outcome %q", r.get("Stream-Closed"), r.get("Upstream-Outcome"))
	}
	lp := ph2.do("GET", with(loc, "offset="+url.QueryEscape(r.get("Stream-Next-Offset"))+"&live=long-poll"), nil)
	if lp.status != http.StatusNoContent || lp.get("Stream-Closed") != "true" {
		t.Errorf("a live read at the tail after restart: %d closed=%q (it must not wait)", lp.status, lp.get("Stream-Closed"))
	}
	want(t, ph2.do("PATCH", with(loc, "action=abort"), nil), http.StatusNoContent, "abort an interrupted stream")
}

// A long-poll read that finds its proxy stream closed, and reads the
// fetch's outcome only after a delete removed its record, answers 404,
// never a closed stream whose outcome says running (a crash torture run
// saw that once). The reader is parked at that point by a hook; the fetch
// is ended first (its stream closes, the reader wakes) and deleted while
// the reader is parked.
func TestProxyReadRacingDelete(t *testing.T) {
	up := newUpstream(t, false)
	ph := newProxyHarness(t, proxyOpts{})
	loc := ph.mustCreate(up.URL + "/sse?n=500&delay=20")
	id := idOf(loc)
	first := ph.do("GET", with(loc, "offset=-1"), nil)
	parked, deleted := make(chan struct{}), make(chan struct{})
	var once sync.Once
	server.SetProxyClosedSeen(ph.srv, func(string) {
		once.Do(func() { close(parked) })
		select {
		case <-deleted:
		case <-time.After(10 * time.Second):
			t.Error("the delete did not finish")
		}
	})
	got := make(chan *result, 1)
	go func() { // follow the stream until it ends one way or another
		off := first.get("Stream-Next-Offset")
		for {
			r := ph.do("GET", with(loc, "offset="+off+"&live=long-poll"), nil)
			if r.status != http.StatusOK && r.status != http.StatusNoContent || r.get("Stream-Closed") == "true" {
				got <- r
				return
			}
			off = r.get("Stream-Next-Offset")
		}
	}()
	time.Sleep(100 * time.Millisecond) // the reader follows the live tail
	if err := ph.mgr.Abort(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case <-parked:
	case <-time.After(10 * time.Second):
		t.Fatal("no read parked at the closed stream: the race was not exercised")
	}
	if err := ph.mgr.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	close(deleted)
	if r := <-got; r.status != http.StatusNotFound {
		t.Errorf("read racing a delete: %d, Stream-Closed %q, Upstream-Outcome %q, want 404", r.status, r.get("Stream-Closed"), r.get("Upstream-Outcome"))
	}
}

// A proxy stream whose upstream runs for longer than the TTL, read by
// nobody meanwhile, is found when it ends (not 404 while its body is
// still stored), complete.
func TestProxyTTLLongUpstream(t *testing.T) {
	clock := testkit.NewClock()
	const events = 6
	up := newDFUpstream(t, false, events, func(u *dfUpstream) { u.gate = make(chan struct{}) })
	ph := newProxyHarness(t, proxyOpts{clock: clock.Now, ttl: time.Hour})
	loc := ph.mustCreate(up.ts.URL + "/long")
	f, err := ph.mgr.Get(idOf(loc))
	if err != nil {
		t.Fatal(err)
	}
	waitBody := func(what string, done func(engine.StreamInfo) bool) { // Head renews nothing
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			info, err := ph.eng.Head(f.Body)
			if err == nil && done(info) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v, %v", what, info, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	for i := range events { // 120 minutes, an event every 20
		clock.Advance(20 * time.Minute)
		up.release(t, 1)
		n := len(dfBody(i + 1))
		waitBody(fmt.Sprintf("%d bytes stored", n), func(in engine.StreamInfo) bool { return int(in.Tail) >= n })
	}
	waitBody("the stream closed", func(in engine.StreamInfo) bool { return in.Closed })
	r := ph.do("GET", with(loc, "offset=-1"), nil)
	want(t, r, http.StatusOK, "read after a long upstream")
	if !bytes.Equal(r.body, dfBody(events)) || r.get("Upstream-Outcome") != "complete" {
		t.Fatalf("read %q, Upstream-Outcome %q", r.body, r.get("Upstream-Outcome"))
	}
}
