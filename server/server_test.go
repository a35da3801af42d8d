package server_test

// HTTP-level tests of the server: routing, security and CORS headers,
// request validation, limits, request decoding, idempotent producers,
// health and metrics. Reads (caching, ETags, compression, paging,
// long-poll) are in read_test.go and SSE in sse_test.go.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/klauspost/compress/zstd"
)

const prefix = "/v1/stream/"

// testConfig is the server configuration the tests run with.
func testConfig() server.Config {
	return server.Config{
		LongPollTimeout: 300 * time.Millisecond,
		SSEMaxDuration:  2 * time.Second,
		MaxAppendBytes:  1 << 20,
		MaxReadBytes:    64 << 10,
		LiveChunkBytes:  64 << 10,
	}
}

// harness is one engine + server + HTTP test server + client.
type harness struct {
	t   *testing.T
	eng *engine.Engine
	srv *server.Server
	ts  *httptest.Server
	hc  *http.Client
}

func newHarness(t *testing.T) *harness {
	return newHarnessWith(t, engine.DurabilityMemory, testConfig())
}

func newHarnessWith(t *testing.T, d engine.Durability, cfg server.Config) *harness {
	t.Helper()
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: d})
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := eng.Close(); err != nil {
			t.Errorf("engine.Close: %v", err)
		}
	})
	srv, err := server.New(eng, cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ts := httptest.NewServer(srv)
	// No transparent gzip: the tests look at Content-Encoding themselves.
	tr := &http.Transport{DisableCompression: true}
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	t.Cleanup(func() {
		srv.Shutdown()
		tr.CloseIdleConnections()
		ts.Close()
	})
	return &harness{t: t, eng: eng, srv: srv, ts: ts, hc: hc}
}

// url returns the absolute URL of p: a stream path (relative to the
// prefix, may carry a query) or, when it starts with "/", a URL path.
func (h *harness) url(p string) string {
	if strings.HasPrefix(p, "/") {
		return h.ts.URL + p
	}
	return h.ts.URL + prefix + p
}

// result is a fully read response.
type result struct {
	status int
	hdr    http.Header
	body   []byte
}

func (r *result) get(name string) string { return r.hdr.Get(name) }

// chunkedReader hides the length of a body so the client sends it chunked.
type chunkedReader struct{ r io.Reader }

func (c chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

// newRequest builds a request; kv are header name/value pairs. A []byte
// body is sent with Content-Length, an io.Reader one chunked.
func (h *harness) newRequest(ctx context.Context, method, p string, body any, kv ...string) *http.Request {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	case io.Reader:
		rd = b
	default:
		h.t.Fatalf("bad body type %T", body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.url(p), rd)
	if err != nil {
		h.t.Fatalf("NewRequest %s %s: %v", method, p, err)
	}
	if len(kv)%2 != 0 {
		h.t.Fatalf("odd header list %q", kv)
	}
	for i := 0; i < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	return req
}

// do sends a request and reads the whole response.
func (h *harness) do(method, p string, body any, kv ...string) *result {
	h.t.Helper()
	return h.send(h.newRequest(context.Background(), method, p, body, kv...))
}

func (h *harness) send(req *http.Request) *result {
	h.t.Helper()
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return &result{status: resp.StatusCode, hdr: resp.Header, body: b}
}

// want fails the test unless r has the status.
func want(t *testing.T, r *result, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d (body %q)", what, r.status, status, trunc(r.body))
	}
}

func trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// create makes a stream with a content type and initial data.
func (h *harness) create(name, ct string, data []byte) *result {
	h.t.Helper()
	r := h.do("PUT", name, data, "Content-Type", ct)
	want(h.t, r, http.StatusCreated, "PUT "+name)
	return r
}

// appendData POSTs data and expects 204.
func (h *harness) appendData(name, ct string, data []byte) *result {
	h.t.Helper()
	r := h.do("POST", name, data, "Content-Type", ct)
	want(h.t, r, http.StatusNoContent, "POST "+name)
	return r
}

// closeStream closes a stream without data.
func (h *harness) closeStream(name string) *result {
	h.t.Helper()
	r := h.do("POST", name, nil, "Stream-Closed", "true")
	want(h.t, r, http.StatusNoContent, "close "+name)
	return r
}

// readAll reads a byte stream from the start, following pages.
func (h *harness) readAll(name string) []byte {
	h.t.Helper()
	var out []byte
	off := "-1"
	for i := 0; i < 1000; i++ {
		r := h.do("GET", name+"?offset="+off, nil)
		want(h.t, r, http.StatusOK, "GET "+name)
		out = append(out, r.body...)
		if r.get("Stream-Up-To-Date") == "true" {
			return out
		}
		off = r.get("Stream-Next-Offset")
	}
	h.t.Fatalf("readAll %s: too many pages", name)
	return nil
}

// tail returns the stream's Stream-Next-Offset from HEAD.
func (h *harness) tail(name string) string {
	h.t.Helper()
	r := h.do("HEAD", name, nil)
	want(h.t, r, http.StatusOK, "HEAD "+name)
	return r.get("Stream-Next-Offset")
}

// headerList splits a comma-separated header into lower-cased tokens.
func headerList(v string) map[string]bool {
	m := map[string]bool{}
	for _, p := range strings.Split(v, ",") {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			m[p] = true
		}
	}
	return m
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// ---------------------------------------------------------------------------
// Security and CORS headers

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	h := newHarness(t)
	steps := []struct {
		name   string
		method string
		path   string
		body   any
		kv     []string
		status int
	}{
		{"create", "PUT", "s", "hello", []string{"Content-Type", "text/plain"}, 201},
		{"create again", "PUT", "s", nil, []string{"Content-Type", "text/plain"}, 200},
		{"append", "POST", "s", " world", []string{"Content-Type", "text/plain"}, 204},
		{"read", "GET", "s?offset=-1", nil, nil, 200},
		{"read now", "GET", "s?offset=now", nil, nil, 200},
		{"long-poll timeout", "GET", "s?offset=now&live=long-poll", nil, nil, 204},
		{"head", "HEAD", "s", nil, nil, 200},
		{"missing", "GET", "nope", nil, nil, 404},
		{"missing head", "HEAD", "nope", nil, nil, 404},
		{"bad offset", "GET", "s?offset=abc", nil, nil, 400},
		{"content type conflict", "POST", "s", "x", []string{"Content-Type", "application/json"}, 409},
		{"method", "PATCH", "s", nil, nil, 405},
		{"outside prefix", "GET", "/elsewhere", nil, nil, 404},
		{"reserved", "GET", "__ds/subscriptions/x", nil, nil, 404},
		{"preflight", "OPTIONS", "s", nil, []string{"Origin", "https://example.com", "Access-Control-Request-Method", "POST"}, 204},
		{"health", "GET", "/health", nil, nil, 200},
		{"metrics", "GET", "/metrics", nil, nil, 200},
		{"delete", "DELETE", "s", nil, nil, 204},
		{"deleted", "GET", "s", nil, nil, 404},
	}
	for _, st := range steps {
		r := h.do(st.method, st.path, st.body, st.kv...)
		if r.status != st.status {
			t.Errorf("%s: %s %s: status %d, want %d (body %q)", st.name, st.method, st.path, r.status, st.status, r.body)
		}
		for hdr, wantV := range map[string]string{
			"X-Content-Type-Options":       "nosniff",
			"Cross-Origin-Resource-Policy": "cross-origin",
			"Access-Control-Allow-Origin":  "*",
		} {
			if got := r.get(hdr); got != wantV {
				t.Errorf("%s: %s = %q, want %q", st.name, hdr, got, wantV)
			}
		}
		exp := headerList(r.get("Access-Control-Expose-Headers"))
		for _, n := range []string{"stream-next-offset", "etag"} {
			if !exp[n] {
				t.Errorf("%s: Access-Control-Expose-Headers %q lacks %s", st.name, r.get("Access-Control-Expose-Headers"), n)
			}
		}
	}
}

func TestCORSPreflight(t *testing.T) {
	h := newHarness(t)
	h.create("exists", "text/plain", nil)
	for _, p := range []string{"exists", "not/yet/created"} {
		r := h.do("OPTIONS", p, nil,
			"Origin", "https://app.example",
			"Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "content-type, producer-id, x-custom-thing")
		want(t, r, http.StatusNoContent, "preflight "+p)
		if len(r.body) != 0 {
			t.Errorf("preflight %s: body %q, want empty", p, r.body)
		}
		methods := headerList(r.get("Access-Control-Allow-Methods"))
		for _, m := range []string{"get", "head", "post", "put", "delete", "options"} {
			if !methods[m] {
				t.Errorf("preflight %s: Allow-Methods %q lacks %s", p, r.get("Access-Control-Allow-Methods"), m)
			}
		}
		allowed := headerList(r.get("Access-Control-Allow-Headers"))
		for _, n := range []string{"content-type", "if-none-match", "stream-seq", "stream-ttl", "stream-expires-at",
			"stream-closed", "producer-id", "producer-epoch", "producer-seq", "content-encoding", "x-custom-thing"} {
			if !allowed[n] {
				t.Errorf("preflight %s: Allow-Headers %q lacks %s", p, r.get("Access-Control-Allow-Headers"), n)
			}
		}
		exposed := headerList(r.get("Access-Control-Expose-Headers"))
		for _, n := range []string{"stream-next-offset", "etag", "stream-cursor", "stream-up-to-date", "stream-closed",
			"producer-epoch", "producer-seq", "producer-expected-seq", "producer-received-seq", "stream-sse-data-encoding"} {
			if !exposed[n] {
				t.Errorf("preflight %s: Expose-Headers %q lacks %s", p, r.get("Access-Control-Expose-Headers"), n)
			}
		}
		if r.get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("preflight %s: Allow-Origin %q", p, r.get("Access-Control-Allow-Origin"))
		}
	}
	// A preflight never creates a stream.
	if r := h.do("HEAD", "not/yet/created", nil); r.status != http.StatusNotFound {
		t.Errorf("HEAD after preflight: %d, want 404", r.status)
	}
}

// ---------------------------------------------------------------------------
// Request validation

func TestMalformedRequests(t *testing.T) {
	h := newHarness(t)
	h.create("bin", "application/octet-stream", []byte("0123456789"))
	tail := h.tail("bin")

	cases := []struct {
		name   string
		method string
		path   string
		body   any
		kv     []string
		status int
		// created: for PUTs of a fresh path, the path must still not exist.
		noCreate string
	}{
		// Offsets and live modes.
		{name: "offset abc", method: "GET", path: "bin?offset=abc", status: 400},
		{name: "offset -2", method: "GET", path: "bin?offset=-2", status: 400},
		{name: "offset 0,1", method: "GET", path: "bin?offset=0,1", status: 400},
		{name: "offset twice", method: "GET", path: "bin?offset=-1&offset=-1", status: 400},
		{name: "offset empty", method: "GET", path: "bin?offset=", status: 400},
		{name: "offset NOW", method: "GET", path: "bin?offset=NOW", status: 400},
		{name: "offset short", method: "GET", path: "bin?offset=0_0", status: 400},
		{name: "offset overflow", method: "GET", path: "bin?offset=9999999999999999_9999999999999999", status: 400},
		{name: "offset past tail", method: "GET", path: "bin?offset=0000000000000000_0000000000001000", status: 400},
		{name: "live bogus", method: "GET", path: "bin?offset=-1&live=bogus", status: 400},
		{name: "live empty-ish", method: "GET", path: "bin?offset=-1&live=LONG-POLL", status: 400},
		{name: "long-poll without offset", method: "GET", path: "bin?live=long-poll", status: 400},
		{name: "sse without offset", method: "GET", path: "bin?live=sse", status: 400},
		{name: "long-poll bad offset", method: "GET", path: "bin?offset=x&live=long-poll", status: 400},
		{name: "sse bad offset", method: "GET", path: "bin?offset=x&live=sse", status: 400},

		// Stream-TTL and Stream-Expires-At.
		{name: "ttl leading zero", method: "PUT", path: "ttl1", kv: []string{"Stream-TTL", "03600"}, status: 400, noCreate: "ttl1"},
		{name: "ttl plus", method: "PUT", path: "ttl2", kv: []string{"Stream-TTL", "+1"}, status: 400, noCreate: "ttl2"},
		{name: "ttl fraction", method: "PUT", path: "ttl3", kv: []string{"Stream-TTL", "1.5"}, status: 400, noCreate: "ttl3"},
		{name: "ttl negative", method: "PUT", path: "ttl4", kv: []string{"Stream-TTL", "-1"}, status: 400, noCreate: "ttl4"},
		{name: "ttl empty", method: "PUT", path: "ttl5", kv: []string{"Stream-TTL", ""}, status: 400, noCreate: "ttl5"},
		{name: "ttl exponent", method: "PUT", path: "ttl6", kv: []string{"Stream-TTL", "3.6e3"}, status: 400, noCreate: "ttl6"},
		{name: "ttl underscore", method: "PUT", path: "ttl7", kv: []string{"Stream-TTL", "1_000"}, status: 400, noCreate: "ttl7"},
		{name: "ttl huge", method: "PUT", path: "ttl8", kv: []string{"Stream-TTL", "99999999999999999999999"}, status: 400, noCreate: "ttl8"},
		{name: "expires garbage", method: "PUT", path: "exp1", kv: []string{"Stream-Expires-At", "tomorrow"}, status: 400, noCreate: "exp1"},
		{name: "expires date only", method: "PUT", path: "exp2", kv: []string{"Stream-Expires-At", "2030-01-01"}, status: 400, noCreate: "exp2"},
		{name: "expires unix", method: "PUT", path: "exp3", kv: []string{"Stream-Expires-At", "1900000000"}, status: 400, noCreate: "exp3"},
		{name: "ttl and expires", method: "PUT", path: "exp4", kv: []string{"Stream-TTL", "60", "Stream-Expires-At", "2099-01-01T00:00:00Z"}, status: 400, noCreate: "exp4"},

		// Producer headers.
		{name: "producer id only", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "p"}, status: 400},
		{name: "producer no seq", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "p", "Producer-Epoch", "0"}, status: 400},
		{name: "producer no id", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Epoch", "0", "Producer-Seq", "0"}, status: 400},
		{name: "producer epoch text", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "p", "Producer-Epoch", "one", "Producer-Seq", "0"}, status: 400},
		{name: "producer seq float", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "p", "Producer-Epoch", "0", "Producer-Seq", "1.0"}, status: 400},
		{name: "producer seq negative", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "p", "Producer-Epoch", "0", "Producer-Seq", "-1"}, status: 400},
		{name: "producer epoch 2^53", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "p", "Producer-Epoch", "9007199254740992", "Producer-Seq", "0"}, status: 400},
		{name: "producer seq 2^53", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "p", "Producer-Epoch", "0", "Producer-Seq", "9007199254740992"}, status: 400},
		{name: "producer empty id", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "", "Producer-Epoch", "0", "Producer-Seq", "0"}, status: 400},
		{name: "producer epoch leading zero", method: "POST", path: "bin", body: "x", kv: []string{"Content-Type", "application/octet-stream", "Producer-Id", "p", "Producer-Epoch", "01", "Producer-Seq", "0"}, status: 400},

		// Forks.
		{name: "fork offset malformed", method: "PUT", path: "f1", kv: []string{"Stream-Forked-From", prefix + "bin", "Stream-Fork-Offset", "abc"}, status: 400, noCreate: "f1"},
		{name: "fork offset sentinel", method: "PUT", path: "f2", kv: []string{"Stream-Forked-From", prefix + "bin", "Stream-Fork-Offset", "-1"}, status: 400, noCreate: "f2"},
		{name: "fork offset past tail", method: "PUT", path: "f3", kv: []string{"Stream-Forked-From", prefix + "bin", "Stream-Fork-Offset", "0000000000000000_0000000000001000"}, status: 400, noCreate: "f3"},
		{name: "fork sub-offset malformed", method: "PUT", path: "f4", kv: []string{"Stream-Forked-From", prefix + "bin", "Stream-Fork-Sub-Offset", "x"}, status: 400, noCreate: "f4"},
		{name: "sub-offset without source", method: "PUT", path: "f5", kv: []string{"Stream-Fork-Sub-Offset", "1"}, status: 400, noCreate: "f5"},
		{name: "fork offset without source", method: "PUT", path: "f6", kv: []string{"Stream-Fork-Offset", tail}, status: 400, noCreate: "f6"},
		{name: "fork of missing source", method: "PUT", path: "f7", kv: []string{"Stream-Forked-From", prefix + "missing"}, status: 404, noCreate: "f7"},

		// Append bodies.
		{name: "post body without content type", method: "POST", path: "bin", body: "data", status: 400},
		{name: "post empty", method: "POST", path: "bin", body: "", kv: []string{"Content-Type", "application/octet-stream"}, status: 400},
		{name: "post empty no headers", method: "POST", path: "bin", status: 400},
		{name: "post empty closed=false", method: "POST", path: "bin", kv: []string{"Stream-Closed", "false"}, status: 400},
		{name: "post to missing", method: "POST", path: "missing", body: "x", kv: []string{"Content-Type", "text/plain"}, status: 404},

		// Methods and paths.
		{name: "patch", method: "PATCH", path: "bin", status: 405},
		{name: "unknown method", method: "BREW", path: "bin", status: 405},
		{name: "empty stream path", method: "GET", path: "/v1/stream/", status: 400},
		{name: "dot-dot segment", method: "PUT", path: "a/../b", status: 400, noCreate: "b"},
		{name: "dot-dot encoded", method: "PUT", path: "a/%2E%2E/c", status: 400, noCreate: "c"},
		{name: "dot-dot get", method: "GET", path: "a/../bin", status: 400},
		{name: "dot segment", method: "PUT", path: "a/./d", status: 400, noCreate: "a/d"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(c.method, c.path, c.body, c.kv...)
			if r.status != c.status {
				t.Fatalf("%s %s: status %d, want %d (body %q)", c.method, c.path, r.status, c.status, r.body)
			}
			if c.method != "HEAD" && len(bytes.TrimSpace(r.body)) == 0 {
				t.Errorf("%d response has an empty body", r.status)
			}
			if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("error Content-Type %q, want text/plain", ct)
			}
			if cc := r.get("Cache-Control"); cc != "no-store" {
				t.Errorf("error Cache-Control %q, want no-store", cc)
			}
			if r.get("ETag") != "" {
				t.Errorf("error response carries ETag %q", r.get("ETag"))
			}
			if c.status == http.StatusMethodNotAllowed && r.get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if c.noCreate != "" {
				if r := h.do("HEAD", c.noCreate, nil); r.status != http.StatusNotFound {
					t.Errorf("HEAD %s after rejected PUT: %d, want 404", c.noCreate, r.status)
				}
			}
		})
	}
	// None of the rejected appends changed the stream.
	if got := h.tail("bin"); got != tail {
		t.Errorf("tail moved from %s to %s by rejected requests", tail, got)
	}
	if st := h.eng.Stats(); st.Streams != 1 {
		t.Errorf("engine holds %d streams, want 1", st.Streams)
	}
}

func TestReservedNamespace(t *testing.T) {
	h := newHarness(t)
	paths := []string{
		"__ds",
		"__ds/",
		"__ds/subscriptions/x",
		"__ds/subscriptions/x/deeper",
		"%5F%5Fds/subscriptions/y", // escaped: the decoded path is what counts
	}
	for _, p := range paths {
		for _, m := range []string{"PUT", "POST", "GET", "DELETE", "HEAD"} {
			var body any
			var kv []string
			switch m {
			case "PUT":
				body, kv = `{"pattern":"*"}`, []string{"Content-Type", "application/json"}
			case "POST":
				body, kv = `{"x":1}`, []string{"Content-Type", "application/json"}
			case "GET":
				p := p + "?offset=-1"
				r := h.do(m, p, nil)
				if r.status != http.StatusNotFound {
					t.Errorf("%s %s: %d, want 404", m, p, r.status)
				}
				continue
			}
			r := h.do(m, p, body, kv...)
			if r.status != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", m, p, r.status)
			}
			if m != "HEAD" && len(r.body) == 0 {
				t.Errorf("%s %s: empty 404 body", m, p)
			}
		}
		// Live reads too.
		for _, q := range []string{"?offset=-1&live=long-poll", "?offset=-1&live=sse"} {
			if r := h.do("GET", p+q, nil); r.status != http.StatusNotFound {
				t.Errorf("GET %s%s: %d, want 404", p, q, r.status)
			}
		}
	}
	for _, p := range []string{"__ds", "__ds/subscriptions/x", "__ds/subscriptions/y"} {
		if r := h.do("HEAD", p, nil); r.status != http.StatusNotFound {
			t.Errorf("HEAD %s afterwards: %d, want 404", p, r.status)
		}
		if _, err := h.eng.Head(p); err == nil {
			t.Errorf("engine has a stream at %s", p)
		}
	}
	if st := h.eng.Stats(); st.Streams != 0 {
		t.Errorf("engine holds %d streams after __ds requests, want 0", st.Streams)
	}
	// A stream whose name merely contains __ds further down is fine.
	h.create("app/__ds", "text/plain", []byte("ok"))
	h.create("__dsx", "text/plain", []byte("ok"))
}

// ---------------------------------------------------------------------------
// Limits

func TestMaxAppendBytes(t *testing.T) {
	const limit = 1 << 20
	data := randBytes(limit+1, 1)
	zeros := make([]byte, limit+1)
	cases := []struct {
		name     string
		method   string
		body     []byte
		chunked  bool
		encoding string
		ok       bool
	}{
		{"post exact", "POST", data[:limit], false, "", true},
		{"post exact chunked", "POST", data[:limit], true, "", true},
		{"post over", "POST", data, false, "", false},
		{"post over chunked", "POST", data, true, "", false},
		{"put exact", "PUT", data[:limit], false, "", true},
		{"put exact chunked", "PUT", data[:limit], true, "", true},
		{"put over", "PUT", data, false, "", false},
		{"put over chunked", "PUT", data, true, "", false},
		// The limit applies to the decoded body: a small gzip of too many zeros.
		{"post gzip exact", "POST", zeros[:limit], false, "gzip", true},
		{"post gzip over", "POST", zeros, false, "gzip", false},
		{"put zstd over", "PUT", zeros, true, "zstd", false},
	}
	h := newHarness(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "lim/" + strconv.Itoa(i)
			if c.method == "POST" {
				h.create(name, "application/octet-stream", nil)
			}
			payload := c.body
			kv := []string{"Content-Type", "application/octet-stream"}
			switch c.encoding {
			case "gzip":
				payload = gzipBytes(t, payload)
				kv = append(kv, "Content-Encoding", "gzip")
			case "zstd":
				payload = zstdBytes(t, payload)
				kv = append(kv, "Content-Encoding", "zstd")
			}
			var body any = payload
			if c.chunked {
				body = chunkedReader{bytes.NewReader(payload)}
			}
			req := h.newRequest(context.Background(), c.method, name, body, kv...)
			if c.chunked != (req.ContentLength <= 0) {
				t.Fatalf("request ContentLength %d, chunked %v", req.ContentLength, c.chunked)
			}
			r := h.send(req)
			if !c.ok {
				want(t, r, http.StatusRequestEntityTooLarge, c.name)
				if len(r.body) == 0 {
					t.Errorf("413 with empty body")
				}
				if c.method == "PUT" {
					if r := h.do("HEAD", name, nil); r.status != http.StatusNotFound {
						t.Errorf("oversized PUT created the stream: HEAD %d", r.status)
					}
				} else if got := h.tail(name); got != engine.Offset(0).String() {
					t.Errorf("oversized POST moved the tail to %s", got)
				}
				return
			}
			if c.method == "PUT" {
				want(t, r, http.StatusCreated, c.name)
			} else {
				want(t, r, http.StatusNoContent, c.name)
			}
			if got := r.get("Stream-Next-Offset"); got != engine.Offset(limit).String() {
				t.Errorf("Stream-Next-Offset %s, want %s", got, engine.Offset(limit))
			}
			if got := h.readAll(name); !bytes.Equal(got, c.body) {
				t.Errorf("stored %d bytes differ from the %d sent", len(got), len(c.body))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Request Content-Encoding

func TestRequestContentEncoding(t *testing.T) {
	h := newHarness(t)
	data := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 200)
	data = append(data, randBytes(3000, 7)...)
	gz := gzipBytes(t, data)
	zs := zstdBytes(t, data)
	corrupt := append([]byte(nil), gz...)
	for i := 20; i < len(corrupt)-8; i += 7 {
		corrupt[i] ^= 0x5a
	}

	cases := []struct {
		name     string
		method   string
		encoding string
		body     []byte
		status   int // for PUT 201 means success; for POST 204
	}{
		{"post gzip", "POST", "gzip", gz, 204},
		{"post GZIP upper", "POST", "GZIP", gz, 204},
		{"post x-gzip", "POST", "x-gzip", gz, 204},
		{"post zstd", "POST", "zstd", zs, 204},
		{"post identity", "POST", "identity", data, 204},
		{"put gzip", "PUT", "gzip", gz, 201},
		{"put zstd", "PUT", "zstd", zs, 201},
		{"post gzip not gzip", "POST", "gzip", []byte("plainly not gzip data"), 400},
		{"post gzip corrupt", "POST", "gzip", corrupt, 400},
		{"post gzip truncated", "POST", "gzip", gz[:len(gz)/2], 400},
		{"post zstd corrupt", "POST", "zstd", []byte("definitely not a zstd frame at all"), 400},
		{"put gzip corrupt", "PUT", "gzip", corrupt, 400},
		{"put zstd truncated", "PUT", "zstd", zs[:len(zs)/2], 400},
		{"post br", "POST", "br", data, 415},
		{"post deflate", "POST", "deflate", data, 415},
		{"put compress", "PUT", "compress", data, 415},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "enc/" + strconv.Itoa(i)
			if c.method == "POST" {
				h.create(name, "application/octet-stream", nil)
			}
			r := h.do(c.method, name, c.body, "Content-Type", "application/octet-stream", "Content-Encoding", c.encoding)
			want(t, r, c.status, c.name)
			if c.status >= 400 {
				if len(r.body) == 0 {
					t.Errorf("%d with empty body", r.status)
				}
				if c.method == "PUT" {
					if r := h.do("HEAD", name, nil); r.status != http.StatusNotFound {
						t.Errorf("failed PUT created the stream (HEAD %d)", r.status)
					}
				} else if got := h.readAll(name); len(got) != 0 {
					t.Errorf("failed POST stored %d bytes", len(got))
				}
				return
			}
			if got := r.get("Stream-Next-Offset"); got != engine.Offset(len(data)).String() {
				t.Errorf("Stream-Next-Offset %s, want %s (decoded length)", got, engine.Offset(len(data)))
			}
			if got := h.readAll(name); !bytes.Equal(got, data) {
				t.Errorf("stored bytes (%d) differ from decompressed data (%d)", len(got), len(data))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Idempotent producers

func TestIdempotentProducer(t *testing.T) {
	h := newHarness(t)
	h.create("p", "text/plain", nil)
	type hdrs map[string]string
	steps := []struct {
		name         string
		epoch, seq   string
		body         string
		status       int
		want         hdrs // headers that must have these values
		absent       []string
		tailAfterLen int
	}{
		{"first", "0", "0", "a", 200, hdrs{"Producer-Epoch": "0", "Producer-Seq": "0"}, nil, 1},
		{"duplicate", "0", "0", "a", 204, hdrs{"Producer-Epoch": "0", "Producer-Seq": "0"}, nil, 1},
		{"next", "0", "1", "b", 200, hdrs{"Producer-Epoch": "0", "Producer-Seq": "1"}, nil, 2},
		{"older duplicate reports highest seq", "0", "0", "a", 204, hdrs{"Producer-Epoch": "0", "Producer-Seq": "1"}, nil, 2},
		{"gap", "0", "3", "d", 409, hdrs{"Producer-Expected-Seq": "2", "Producer-Received-Seq": "3"}, []string{"Producer-Seq"}, 2},
		{"new epoch", "1", "0", "c", 200, hdrs{"Producer-Epoch": "1", "Producer-Seq": "0"}, nil, 3},
		{"stale epoch", "0", "2", "z", 403, hdrs{"Producer-Epoch": "1"}, []string{"Producer-Seq"}, 3},
		{"new epoch must start at 0", "2", "1", "z", 400, nil, nil, 3},
		{"same epoch continues", "1", "1", "d", 200, hdrs{"Producer-Epoch": "1", "Producer-Seq": "1"}, nil, 4},
	}
	for _, st := range steps {
		r := h.do("POST", "p", st.body, "Content-Type", "text/plain",
			"Producer-Id", "writer-1", "Producer-Epoch", st.epoch, "Producer-Seq", st.seq)
		if r.status != st.status {
			t.Fatalf("%s: status %d, want %d (body %q)", st.name, r.status, st.status, r.body)
		}
		for k, v := range st.want {
			if got := r.get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", st.name, k, got, v)
			}
		}
		for _, k := range st.absent {
			if got := r.get(k); got != "" {
				t.Errorf("%s: unexpected %s = %q", st.name, k, got)
			}
		}
		if st.status >= 400 && len(r.body) == 0 {
			t.Errorf("%s: %d with empty body", st.name, r.status)
		}
		if st.status < 300 {
			if got := r.get("Stream-Next-Offset"); got != engine.Offset(st.tailAfterLen).String() {
				t.Errorf("%s: Stream-Next-Offset %s, want %s", st.name, got, engine.Offset(st.tailAfterLen))
			}
		}
	}
	if got := string(h.readAll("p")); got != "abcd" {
		t.Errorf("stream holds %q, want %q", got, "abcd")
	}
	// Another producer id is independent; an unknown producer must start at 0.
	r := h.do("POST", "p", "x", "Content-Type", "text/plain", "Producer-Id", "writer-2", "Producer-Epoch", "0", "Producer-Seq", "5")
	want(t, r, http.StatusConflict, "unknown producer at seq 5")
	if r.get("Producer-Expected-Seq") != "0" || r.get("Producer-Received-Seq") != "5" {
		t.Errorf("unknown producer gap headers: expected %q received %q", r.get("Producer-Expected-Seq"), r.get("Producer-Received-Seq"))
	}
	// Close with a producer; a retry of the same tuple is a success, anything else 409 closed.
	r = h.do("POST", "p", "e", "Content-Type", "text/plain", "Stream-Closed", "true",
		"Producer-Id", "writer-1", "Producer-Epoch", "1", "Producer-Seq", "2")
	want(t, r, http.StatusOK, "append-and-close")
	if r.get("Stream-Closed") != "true" {
		t.Errorf("append-and-close: Stream-Closed %q", r.get("Stream-Closed"))
	}
	r = h.do("POST", "p", "e", "Content-Type", "text/plain", "Stream-Closed", "true",
		"Producer-Id", "writer-1", "Producer-Epoch", "1", "Producer-Seq", "2")
	want(t, r, http.StatusNoContent, "retry of the closing append")
	if r.get("Stream-Closed") != "true" || r.get("Producer-Seq") != "2" {
		t.Errorf("retry of closing append: Stream-Closed %q Producer-Seq %q", r.get("Stream-Closed"), r.get("Producer-Seq"))
	}
	r = h.do("POST", "p", "f", "Content-Type", "text/plain",
		"Producer-Id", "writer-1", "Producer-Epoch", "1", "Producer-Seq", "3")
	want(t, r, http.StatusConflict, "append after close")
	if r.get("Stream-Closed") != "true" || r.get("Stream-Next-Offset") != engine.Offset(5).String() {
		t.Errorf("409 closed: Stream-Closed %q Stream-Next-Offset %q", r.get("Stream-Closed"), r.get("Stream-Next-Offset"))
	}
}

// ---------------------------------------------------------------------------
// Health and metrics

func TestHealth(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/health", nil)
	want(t, r, http.StatusOK, "health")
	if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("health body %q: %v", r.body, err)
	}
	if v["status"] != "ok" {
		t.Errorf("health status %v", v["status"])
	}
	if r.get("Cache-Control") != "no-store" {
		t.Errorf("health Cache-Control %q", r.get("Cache-Control"))
	}
}

func TestMetrics(t *testing.T) {
	h := newHarnessWith(t, engine.DurabilitySync, testConfig())
	h.create("m", "text/plain", []byte("hello"))
	h.appendData("m", "text/plain", []byte(" world"))
	h.appendData("m", "text/plain", []byte("!"))
	want(t, h.do("GET", "m?offset=-1", nil), 200, "read")
	want(t, h.do("GET", "m?offset=abc", nil), 400, "bad read")
	want(t, h.do("GET", "m?offset=now&live=long-poll", nil), 204, "long-poll")
	want(t, h.do("HEAD", "m", nil), 200, "head")
	want(t, h.do("GET", "missing", nil), 404, "missing")

	r := h.do("GET", "/metrics", nil)
	want(t, r, http.StatusOK, "metrics")
	if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("metrics Content-Type %q", ct)
	}
	body := string(r.body)
	for _, line := range []string{
		`durastream_requests_total{op="create",status="201"} 1`,
		`durastream_requests_total{op="append",status="204"} 2`,
		`durastream_requests_total{op="read",status="200"} 1`,
		`durastream_requests_total{op="read",status="400"} 1`,
		`durastream_requests_total{op="read",status="404"} 1`,
		`durastream_requests_total{op="long-poll",status="204"} 1`,
		`durastream_requests_total{op="head",status="200"} 1`,
		`durastream_append_duration_seconds_bucket{le="+Inf"} 2`,
		`durastream_append_duration_seconds_count 2`,
		"durastream_streams 1",
		"durastream_live_readers 0",
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
	for _, name := range []string{"# TYPE durastream_requests_total counter", "# TYPE durastream_append_duration_seconds histogram",
		"# TYPE durastream_streams gauge", "# TYPE durastream_commit_fsyncs_total counter"} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %q", name)
		}
	}
	// Sync durability: the three writes were fsynced at least once.
	v := metricValue(t, body, "durastream_commit_fsyncs_total")
	if v < 1 {
		t.Errorf("durastream_commit_fsyncs_total %v, want >= 1", v)
	}
	if v := metricValue(t, body, "durastream_stored_bytes"); v != 12 {
		t.Errorf("durastream_stored_bytes %v, want 12", v)
	}
	// Histogram buckets are cumulative and non-decreasing.
	var last float64 = -1
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "durastream_append_duration_seconds_bucket") {
			f, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			if err != nil || f < last {
				t.Errorf("bucket line %q (previous %v)", l, last)
			}
			last = f
		}
	}
}

// metricValue returns the value of an unlabelled metric line.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, l)
			}
			return f
		}
	}
	t.Fatalf("metric %s missing", name)
	return 0
}

// ---------------------------------------------------------------------------
// Durable round trip through the HTTP layer.

func TestSyncDurabilityRoundTrip(t *testing.T) {
	h := newHarnessWith(t, engine.DurabilitySync, testConfig())
	data := randBytes(100<<10, 3)
	h.create("d/s", "application/octet-stream", data[:1000])
	for off := 1000; off < len(data); off += 9000 {
		end := min(off+9000, len(data))
		h.appendData("d/s", "application/octet-stream", data[off:end])
	}
	r := h.do("PUT", "d/s", nil, "Content-Type", "application/octet-stream")
	want(t, r, http.StatusOK, "idempotent PUT")
	r = h.do("PUT", "d/s", nil, "Content-Type", "text/plain")
	want(t, r, http.StatusConflict, "PUT with other content type")
	if got := h.readAll("d/s"); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want %d identical", len(got), len(data))
	}
	want(t, h.do("DELETE", "d/s", nil), http.StatusNoContent, "delete")
	want(t, h.do("DELETE", "d/s", nil), http.StatusNotFound, "delete again")
	want(t, h.do("GET", "d/s", nil), http.StatusNotFound, "read deleted")
}

func TestLocationOnCreate(t *testing.T) {
	h := newHarness(t)
	r := h.create("loc/a%20b", "text/plain", nil)
	loc := r.get("Location")
	if loc != h.ts.URL+prefix+"loc/a%20b" {
		t.Errorf("Location %q, want %q", loc, h.ts.URL+prefix+"loc/a%20b")
	}
	if _, err := h.eng.Head("loc/a b"); err != nil {
		t.Errorf("engine lookup of the unescaped path: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	for _, cfg := range []server.Config{
		{LongPollTimeout: -time.Second},
		{SSEMaxDuration: -1},
		{MaxAppendBytes: -1},
		{MaxReadBytes: -1},
		{Prefix: "/__ds/"},
	} {
		if _, err := server.New(eng, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
