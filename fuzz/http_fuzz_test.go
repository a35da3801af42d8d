package fuzz

// HTTP fuzzing of the server handler, in process. Run one target at a time:
//
//	go test ./fuzz -run=^$ -fuzz=^FuzzHTTP$ -fuzztime=120s
//	go test ./fuzz -run=^$ -fuzz=^FuzzHTTPSequence$ -fuzztime=120s -fuzzminimizetime=0
//
// (-fuzzminimizetime=0: a sequence of requests hits sync.Pool refills, map
// iteration order and timers differently from run to run, so coverage is
// a little noisy; without the flag the workers spend most of their time
// minimizing inputs whose "new" coverage then does not reproduce.)
//
// Both decode their input into HTTP requests (fzDecoder below): a method,
// a path (stream names, reserved and traversal forms, escapes, long and
// unicode paths, or raw bytes), a query (offsets, live modes, cursors),
// headers (offsets, TTL, expiry, producer, Stream-Closed values and
// casing, Stream-Seq, content types, content encodings, If-None-Match,
// fork headers, X-Forwarded-For), and a body sent with Content-Length,
// chunked, gzip- or zstd-compressed, or truncated. The request is
// serialized and parsed back with http.ReadRequest, as net/http would
// parse it off the wire (inputs it cannot parse are skipped: net/http
// answers those itself), and served with an httptest.ResponseRecorder.
//
//   - FuzzHTTP sends one request per input to a server whose engine lives
//     across inputs (a few fixed stream names), so streams get created,
//     appended to, closed, forked and deleted by successive inputs. The
//     engine is replaced every fzResetEvery inputs to bound memory. A failure
//     may depend on earlier inputs: the log shows the last requests.
//   - FuzzHTTPSequence decodes each input into up to 16 requests against a
//     fresh engine seeded with the same few streams, so a failure
//     reproduces from its input alone.
//
// Properties of every response: no panic; no 5xx (memory durability cannot
// fill a disk, and requests are sequential so the live-reader cap is never
// hit: any 5xx is a bug); every 4xx/5xx has a text/plain message; 204, 304
// and HEAD responses have no body; Content-Length, when set, is the body's
// length; successful stream operations return a well-formed
// Stream-Next-Offset; JSON reads are JSON arrays; SSE bodies are well-formed
// data/control events; nothing is created under __ds or at a path that
// breaks the path rules.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

const (
	fzPrefix     = "/v1/stream/"
	fzResetEvery = 20000 // FuzzHTTP: inputs per engine
	fzMaxSteps   = 16    // FuzzHTTPSequence: requests per input
	fzMaxPath    = 1024
	fzMaxRead    = 4 << 10
)

// ---------------------------------------------------------------------------
// Tables the fzDecoder picks from. Values starting with "\x00" are dynamic
// (see fzDyn): the last offset or ETag the server returned.

var (
	fzMethods = []string{"GET", "GET", "GET", "HEAD", "POST", "POST", "POST", "PUT", "PUT", "DELETE",
		"OPTIONS", "PATCH", "get", "Put", "BREW", "CONNECT", "TRACE"}

	// Stream names shared by every request (relative to the prefix).
	fzStreams = []string{"s0", "s1", "s2", "s3", "d/s4"}

	fzPaths = []string{
		"s0", "s1", "s2", "s3", "d/s4", "s0", "s1", "s2", "s3", // common
		"", "/", "/health", "/metrics", "/v1/stream", "/v1/streamX/s0", "/v1//stream/s0", "/V1/STREAM/s0",
		"__ds", "__ds/", "__ds/subscriptions/x", "%5F%5Fds/x", "%5f%5fDS", "_%5fds", "__DS/x", "app/__ds",
		"a/../s0", "a/%2e%2e/s0", "a/%2E./s0", "./s0", "s0/.", "..", "%2e", "s0/", "//s0", "s0//x", "/v1/stream//s0",
		"s0%2F..%2Fs1", "d%2Fs4", "d%2fs4", "%2F", "a%00b", "a%0D%0Ab", "%7F", "%1f", "a%20b", "a+b", "a;b", "a?b",
		"%C3%A9/%E6%97%A5%E6%9C%AC", "%F0%9F%98%80", "%FF%FE", "%C0%AF", "%25", "%",
		strings.Repeat("x", fzMaxPath), strings.Repeat("y", fzMaxPath+1), strings.Repeat("%C3%A9", 600),
		strings.Repeat("a/", 300) + "b",
	}

	fzQueryNames = []string{"offset", "offset", "live", "live", "cursor", "OFFSET", "x", ""}
	fzOffsets    = []string{"\x00tail", "\x00tail", "-1", "-1", "now", "0000000000000000_0000000000000000",
		"0000000000000000_0000000000000001", "0000000000000001_0000000000000000", "9999999999999999_9999999999999999",
		"0000000000001844_6744073709551615", "", "-2", "NOW", "0", "abc", "0_0", "%00", "-1%20", "now,now"}
	fzLive    = []string{"long-poll", "sse", "", "LONG-POLL", "SSE", "longpoll", "true", "sse%00"}
	fzCursors = []string{"0", "1", "123456", "99999999999999999999", "-1", "abc", "18446744073709551615", "\x00tail"}

	fzHeaderNames = []string{
		"Content-Type", "Content-Type", "Content-Encoding", "Stream-TTL", "stream-ttl", "Stream-Expires-At",
		"Stream-Closed", "STREAM-CLOSED", "Stream-Seq", "Producer-Id", "Producer-Epoch", "Producer-Seq",
		"If-None-Match", "Stream-Forked-From", "Stream-Fork-Offset", "Stream-Fork-Sub-Offset", "Accept-Encoding",
		"X-Forwarded-For", "Access-Control-Request-Headers", "Content-Length", "Transfer-Encoding", "Expect",
	}
	fzHeaderValues = map[string][]string{
		"Content-Type": {"application/json", "text/plain", "application/octet-stream", "APPLICATION/JSON; charset=utf-8",
			"text/plain;charset=utf-8", "", "application/json ; x=y", "text/event-stream", "multipart/form-data; boundary=x",
			"application/json;", ";", "text/"},
		"Content-Encoding": {"gzip", "zstd", "x-gzip", "identity", "GZIP", " zstd ", "br", "deflate", "gzip, zstd", "", "\x01"},
		"Stream-Ttl": {"0", "1", "3600", "-1", "1.5", "03600", "", "1099511627776", "1099511627777",
			"99999999999999999999999", " 60", "1e3"},
		"Stream-Expires-At": {"2099-01-01T00:00:00Z", "2099-01-01T00:00:00.123456789+05:30", "2000-01-01T00:00:00Z",
			"tomorrow", "", "2099-13-01T00:00:00Z", "2099-01-01", "9999-12-31T23:59:59Z", "1900000000"},
		"Stream-Closed": {"true", "TRUE", "True", " true ", "false", "1", "yes", "", "true, true", "tru"},
		"Stream-Seq":    {"1", "2", "0001", "0002", "a", "z", "", "\x00tail", "\xff", strings.Repeat("9", 300)},
		"Producer-Id":   {"p1", "p1", "p2", "", " ", "p\x00", strings.Repeat("p", 2000), "é"},
		"Producer-Epoch": {"0", "0", "1", "2", "9007199254740991", "9007199254740992", "-1", "01", "", "x",
			"18446744073709551616"},
		"Producer-Seq":  {"0", "1", "2", "3", "10", "9007199254740991", "9007199254740992", "-1", "00", "", "1.0"},
		"If-None-Match": {"\x00etag", "\x00etag", "*", `"x"`, `W/"x"`, "\x00etag, *", "", `""`},
		"Stream-Forked-From": {"/v1/stream/s0", "/v1/stream/s1", "s2", "/v1/stream/s3", "/v1/stream/d/s4",
			"http://example.com/v1/stream/s0", "/v1/stream/__ds/x", "/v1/stream/missing", "", "/", "%2e%2e",
			"/v1/stream/s0?offset=-1", "::", "/v1/stream/a%2Fb", "\x7f"},
		"Stream-Fork-Offset":     {"\x00tail", "\x00tail", "0000000000000000_0000000000000000", "-1", "now", "abc", ""},
		"Stream-Fork-Sub-Offset": {"0", "1", "5", "-1", "x", "", "4611686018427387904", "01"},
		"Accept-Encoding":        {"gzip", "zstd", "gzip;q=0", "zstd;q=0.0, gzip", "*", "identity", "br", ""},
		"X-Forwarded-For":        {"10.0.0.1", "1.1.1.1, 10.0.0.2", "2001:db8::1", "[2001:db8::1]:80", "junk", ""},
		"Content-Length":         {"0", "1", "5", "-1", "99999999999", "x", ""},
		"Transfer-Encoding":      {"chunked", "gzip", "identity", "chunked, chunked", ""},
		"Expect":                 {"100-continue", "x"},
	}
	fzGenericValues = []string{"", "0", "1", "true", "x", "\x00tail", "\x00etag"}

	fzBodies = [][]byte{
		nil, []byte(`{"a":1}`), []byte(`[{"a":1},{"b":2}]`), []byte(`[]`), []byte(`[[1,2],[3]]`), []byte(`"x"`),
		[]byte(`[1,]`), []byte(`{"a":`), []byte("hello\nworld\r\nagain\r"), []byte("\x00\x01\xff\xfe binary"),
		[]byte(" [ ] "), []byte(`[{"a":[]}, 1, "two", null]`), bytes.Repeat([]byte("z"), 5000),
		bytes.Repeat([]byte(`{"k":"vvvvvvvvvvvvvvvvvvvvvvvvvvvvv"},`), 300),
	}
	fzRemotes = []string{"192.0.2.1:1234", "[2001:db8::7]:443", "pipe", "", "192.0.2.1"}
)

// Body modes.
const (
	fzBodyLength  = iota // Content-Length
	fzBodyChunked        // Transfer-Encoding: chunked
	fzBodyGzip           // gzip-compressed, Content-Encoding added unless set
	fzBodyZstd           // zstd-compressed, likewise
	fzBodyShort          // Content-Length claims 7 more bytes than sent
	fzBodyNone           // no body and no length
	fzBodyModes
)

// ---------------------------------------------------------------------------
// The fzDecoder.

// fzDecoder reads choices and raw strings from fuzz input; past the end it
// yields zeros and empty strings.
type fzDecoder struct{ b []byte }

func (d *fzDecoder) byte() byte {
	if len(d.b) == 0 {
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// raw reads a string with a 2-byte big-endian length.
func (d *fzDecoder) raw() string {
	n := int(d.byte())<<8 | int(d.byte())
	n = min(n, len(d.b))
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// choose picks from table, or a raw string after the selector 0xFF.
func (d *fzDecoder) choose(table []string) string {
	s := d.byte()
	if s == 0xFF || len(table) == 0 {
		return d.raw()
	}
	return table[int(s)%len(table)]
}

// fzRequest is one decoded request.
type fzRequest struct {
	alt            bool // the rate-limited, forwarded-for-trusting server
	remote         string
	method, target string
	header         [][2]string
	body           []byte
	mode           int
}

// fzDyn holds what earlier responses said: values requests may echo (the
// last offset and ETag), and per stream the offsets known to be message
// boundaries.
//
// Known engine behaviour (reported, not a server property): a JSON-mode
// read or fork at an offset inside a message is not rejected, and the
// response is not valid JSON. So a JSON read is only required to be a JSON
// array when it starts at -1, now, or an offset the server returned for
// that stream (and the stream is not a fork taken at any other offset).
type fzDyn struct {
	tail, etag string
	bounds     map[string]map[string]bool // stream -> offsets the server returned
	tainted    map[string]bool            // forks taken at an offset not known to be a boundary
}

// observe records a response to a request for stream name.
func (v *fzDyn) observe(name string, r *http.Request, res *http.Response, body []byte) {
	if v.bounds == nil {
		v.bounds, v.tainted = map[string]map[string]bool{}, map[string]bool{}
	}
	code := res.StatusCode
	switch {
	case r.Method == http.MethodDelete && code == http.StatusNoContent:
		delete(v.bounds, name)
		delete(v.tainted, name)
		return
	case r.Method == http.MethodPut && code == http.StatusCreated:
		v.bounds[name] = map[string]bool{}
		v.tainted[name] = false
		if from := r.Header.Get("Stream-Forked-From"); from != "" {
			if u, err := url.Parse(from); err == nil && u.Path != "" {
				from = u.Path
			}
			src := strings.TrimPrefix(strings.TrimPrefix(from, fzPrefix), "/")
			off, hasOff := r.Header.Get("Stream-Fork-Offset"), len(r.Header.Values("Stream-Fork-Offset")) > 0
			if v.tainted[src] || (hasOff && !v.bounds[src][off] && off != fzTail0) {
				v.tainted[name] = true
			}
			for o := range v.bounds[src] {
				if !hasOff || o <= off {
					v.bounds[name][o] = true
				}
			}
		}
	}
	if code >= 300 || v.bounds[name] == nil {
		return
	}
	if o := res.Header.Get("Stream-Next-Offset"); o != "" {
		v.bounds[name][o] = true
	}
}

// jsonCheckable reports whether a JSON read of stream name must be valid.
func (v *fzDyn) jsonCheckable(name string, r *http.Request) bool {
	if v.tainted[name] {
		return false
	}
	offs := r.URL.Query()["offset"]
	if len(offs) == 0 {
		return true
	}
	o := offs[0]
	return o == "-1" || o == "now" || o == fzTail0 || v.bounds[name][o]
}

func (v *fzDyn) subst(s string) string {
	switch s {
	case "\x00tail":
		return v.tail
	case "\x00etag":
		return v.etag
	case "\x00etag, *":
		return v.etag + ", *"
	}
	return s
}

// fzDecode reads one request: [server][remote][method][path][query]
// [n headers][name value]...[body][body mode].
func fzDecode(d *fzDecoder, v *fzDyn) *fzRequest {
	q := &fzRequest{}
	q.alt = d.byte()%8 == 7
	q.remote = d.choose(fzRemotes)
	q.method = d.choose(fzMethods)
	path := d.choose(fzPaths)
	if !strings.HasPrefix(path, "/") {
		path = fzPrefix + path
	}
	var query string
	if s := d.byte(); s == 0xFF {
		query = d.raw()
	} else {
		var parts []string
		for range int(s) % 5 {
			name := d.choose(fzQueryNames)
			var val string
			switch strings.ToLower(name) {
			case "offset":
				val = d.choose(fzOffsets)
			case "live":
				val = d.choose(fzLive)
			case "cursor":
				val = d.choose(fzCursors)
			default:
				val = d.choose(fzGenericValues)
			}
			parts = append(parts, name+"="+v.subst(val))
		}
		query = strings.Join(parts, "&")
	}
	q.target = path
	if query != "" {
		q.target += "?" + query
	}
	for range int(d.byte()) % 9 {
		name := d.choose(fzHeaderNames)
		vals, ok := fzHeaderValues[http.CanonicalHeaderKey(name)]
		if !ok {
			vals = fzGenericValues
		}
		q.header = append(q.header, [2]string{name, v.subst(d.choose(vals))})
	}
	if s := d.byte(); s == 0xFF {
		q.body = []byte(d.raw())
	} else {
		q.body = fzBodies[int(s)%len(fzBodies)]
	}
	q.mode = int(d.byte()) % fzBodyModes
	return q
}

// wire serializes the request as a client would send it.
func (q *fzRequest) wire(t *testing.T) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: example.com\r\n", q.method, q.target)
	hasCE := false
	for _, h := range q.header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
		hasCE = hasCE || strings.EqualFold(h[0], "Content-Encoding")
	}
	body := q.body
	switch q.mode {
	case fzBodyGzip, fzBodyZstd:
		var zb bytes.Buffer
		if q.mode == fzBodyGzip {
			zw := gzip.NewWriter(&zb)
			zw.Write(body)
			zw.Close()
		} else {
			zw, err := zstd.NewWriter(&zb)
			if err != nil {
				t.Fatal(err)
			}
			zw.Write(body)
			zw.Close()
		}
		body = zb.Bytes()
		if !hasCE {
			fmt.Fprintf(&b, "Content-Encoding: %s\r\n", map[int]string{fzBodyGzip: "gzip", fzBodyZstd: "zstd"}[q.mode])
		}
	}
	switch q.mode {
	case fzBodyNone:
		b.WriteString("\r\n")
	case fzBodyChunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(&b)
		for len(body) > 0 {
			n := min(len(body), 1000)
			cw.Write(body[:n])
			body = body[n:]
		}
		cw.Close()
		b.WriteString("\r\n")
	case fzBodyShort:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body)+7)
		b.Write(body)
	default:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
		b.Write(body)
	}
	return b.Bytes()
}

// ---------------------------------------------------------------------------
// The servers and the checks.

type fzServers struct {
	eng       *engine.Engine
	main, alt *server.Server
}

func fzConfig() server.Config {
	return server.Config{
		LongPollTimeout: 5 * time.Millisecond,
		SSEMaxDuration:  20 * time.Millisecond,
		MaxAppendBytes:  256 << 10,
		MaxReadBytes:    fzMaxRead,
		MaxPathBytes:    fzMaxPath,
	}
}

// fzNewServers opens a memory engine in dir with the fixed streams: s0 JSON
// with data, s1 text, s2 binary and closed, s3 a fork of s0, d/s4 JSON with
// a TTL.
func fzNewServers(t testing.TB, dir string) *fzServers {
	eng, err := engine.Open(dir, &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fzConfig()
	main, err := server.New(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RateLimit, cfg.RateBurst, cfg.TrustForwardedFor, cfg.MaxLiveReaders = 1000, 1000, true, 1
	alt, err := server.New(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &fzServers{eng: eng, main: main, alt: alt}
	ctx := t.Context()
	must := func(_ engine.StreamInfo, _ bool, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(eng.Create(ctx, "s0", engine.CreateOptions{ContentType: "application/json", Data: []byte(`[{"a":1},{"b":2}]`)}))
	must(eng.Create(ctx, "s1", engine.CreateOptions{ContentType: "text/plain", Data: []byte("line one\r\nline two\n")}))
	must(eng.Create(ctx, "s2", engine.CreateOptions{ContentType: "application/octet-stream", Data: []byte("\x00\x01\x02"), Closed: true}))
	must(eng.Create(ctx, "s3", engine.CreateOptions{ContentType: "application/json", ForkFrom: "s0"}))
	must(eng.Create(ctx, "d/s4", engine.CreateOptions{ContentType: "application/json", TTL: 3600, HasTTL: true}))
	return s
}

func (s *fzServers) close() {
	s.main.Shutdown()
	s.alt.Shutdown()
	s.eng.Close()
}

// serve parses and serves one request and checks the response. It
// returns a description of the exchange (for failure messages), or "" if
// net/http would not have parsed the request.
func (s *fzServers) serve(t *testing.T, q *fzRequest, v *fzDyn) string {
	raw := q.wire(t)
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return ""
	}
	r.RemoteAddr = q.remote
	h := http.Handler(s.main)
	if q.alt {
		h = s.alt
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	r.Body.Close()
	res := w.Result()
	body := w.Body.Bytes()
	desc := fmt.Sprintf("request (alt=%v, remote %q):\n%q\nresponse %d %v\n%q", q.alt, q.remote, fzTrunc(raw), res.StatusCode, res.Header, fzTrunc(body))
	name := strings.TrimPrefix(r.URL.Path, fzPrefix)
	if err := fzCheck(r, res, body, v.jsonCheckable(name, r)); err != nil {
		t.Fatalf("%v\n%s", err, desc)
	}
	v.observe(name, r, res, body)
	if o := res.Header.Get("Stream-Next-Offset"); o != "" {
		v.tail = o
	}
	if e := res.Header.Get("ETag"); e != "" {
		v.etag = e
	}
	return desc
}

func fzTrunc(b []byte) []byte {
	if len(b) > 600 {
		return append(b[:600:600], "..."...)
	}
	return b
}

// fzCheck verifies the properties of one response.
func fzCheck(r *http.Request, res *http.Response, body []byte, checkJSON bool) error {
	code := res.StatusCode
	if code >= 500 {
		return fmt.Errorf("status %d", code)
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		return fmt.Errorf("no X-Content-Type-Options: nosniff")
	}
	if code >= 400 {
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			return fmt.Errorf("%d with Content-Type %q", code, ct)
		}
		if r.Method != http.MethodHead && len(bytes.TrimSpace(body)) == 0 {
			return fmt.Errorf("%d without a message", code)
		}
		if code == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			return fmt.Errorf("429 without Retry-After")
		}
		return nil
	}
	// (net/http drops such bodies; the recorder keeps them. Only stream
	// responses are held to it: /health and /metrics write for HEAD too.)
	if strings.HasPrefix(r.URL.Path, fzPrefix) &&
		(code == http.StatusNoContent || code == http.StatusNotModified || r.Method == http.MethodHead) && len(body) > 0 {
		return fmt.Errorf("%d to %s with a %d-byte body", code, r.Method, len(body))
	}
	if cl := res.Header.Get("Content-Length"); cl != "" && r.Method != http.MethodHead && code != http.StatusNotModified {
		if cl != fmt.Sprint(len(body)) {
			return fmt.Errorf("Content-Length %s, body %d bytes", cl, len(body))
		}
	}
	if !strings.HasPrefix(r.URL.Path, fzPrefix) || r.Method == http.MethodOptions || code == http.StatusNotModified {
		return nil
	}
	name := strings.TrimPrefix(r.URL.Path, fzPrefix)
	if err := fzCheckName(name, r); err != nil {
		return fmt.Errorf("%d for a stream path that breaks the rules: %v", code, err)
	}
	sse := r.Method == http.MethodGet && r.URL.Query().Get("live") == "sse"
	if r.Method != http.MethodDelete && !sse {
		if _, err := engine.ParseOffset(res.Header.Get("Stream-Next-Offset")); err != nil {
			return fmt.Errorf("%d with Stream-Next-Offset %q", code, res.Header.Get("Stream-Next-Offset"))
		}
	}
	if code == http.StatusCreated && res.Header.Get("Location") == "" {
		return fmt.Errorf("201 without Location")
	}
	plain := r.Method == http.MethodGet && !sse && code == http.StatusOK && res.Header.Get("Content-Encoding") == ""
	if plain && !strings.EqualFold(engine.MediaType(res.Header.Get("Content-Type")), "application/json") &&
		len(body) > fzMaxRead {
		return fmt.Errorf("%d-byte read response, MaxReadBytes is %d", len(body), fzMaxRead)
	}
	switch {
	case sse:
		return fzCheckSSE(body)
	case checkJSON && r.Method == http.MethodGet && code == http.StatusOK && res.Header.Get("Content-Encoding") == "" &&
		strings.EqualFold(engine.MediaType(res.Header.Get("Content-Type")), "application/json"):
		if !json.Valid(body) || len(body) == 0 || body[0] != '[' {
			return fmt.Errorf("JSON read is not a JSON array")
		}
	}
	return nil
}

// fzCheckName applies the path rules to a stream path that was served.
func fzCheckName(name string, r *http.Request) error {
	switch {
	case name == "" || len(name) > fzMaxPath:
		return fmt.Errorf("length %d", len(name))
	case name == "__ds" || strings.HasPrefix(name, "__ds/"):
		return fmt.Errorf("reserved")
	case strings.Contains(strings.ToLower(r.URL.RawPath), "%2f"):
		return fmt.Errorf("escaped slash")
	case strings.ContainsFunc(name, func(c rune) bool { return c < 0x20 || c == 0x7f }):
		return fmt.Errorf("control character")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("segment %q", seg)
		}
	}
	return nil
}

// fzCheckSSE verifies an SSE body: events of type data or control, each data
// event followed by a control event whose data is a JSON object with a
// well-formed streamNextOffset.
func fzCheckSSE(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		return fmt.Errorf("SSE body does not end with a blank line")
	}
	var typ string
	var data []string
	lastData := false
	for _, line := range strings.Split(string(body[:len(body)-1]), "\n") {
		if line != "" {
			field, val, _ := strings.Cut(line, ":")
			switch field {
			case "event":
				typ = strings.TrimPrefix(val, " ")
			case "data":
				data = append(data, val)
			default:
				return fmt.Errorf("SSE line %q", line)
			}
			continue
		}
		switch typ {
		case "data":
			if lastData {
				return fmt.Errorf("SSE data event not followed by control")
			}
			lastData = true
		case "control":
			var c struct {
				Next *string `json:"streamNextOffset"`
			}
			if err := json.Unmarshal([]byte(strings.Join(data, "\n")), &c); err != nil || c.Next == nil {
				return fmt.Errorf("SSE control data %q: %v", data, err)
			}
			if _, err := engine.ParseOffset(*c.Next); err != nil {
				return fmt.Errorf("SSE control offset %q", *c.Next)
			}
			lastData = false
		default:
			return fmt.Errorf("SSE event type %q", typ)
		}
		typ, data = "", nil
	}
	if lastData {
		return fmt.Errorf("SSE body ends with a data event")
	}
	return nil
}

// ---------------------------------------------------------------------------
// Seeds: realistic requests, encoded with raw strings for every choice.

type fzSeed struct {
	method, path, query string
	kv                  []string
	body                string
	mode                int
}

func fzRawStr(b *bytes.Buffer, s string) {
	b.WriteByte(0xFF)
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(s)))
	b.Write(n[:])
	b.WriteString(s)
}

func (s fzSeed) encode(b *bytes.Buffer) {
	b.WriteByte(0)               // main server
	b.WriteByte(0)               // first remote address
	fzRawStr(b, s.method)        //
	fzRawStr(b, fzPrefix+s.path) // absolute: used as is
	b.WriteByte(0xFF)
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(s.query)))
	b.Write(n[:])
	b.WriteString(s.query)
	b.WriteByte(byte(len(s.kv) / 2))
	for i := 0; i+1 < len(s.kv); i += 2 {
		fzRawStr(b, s.kv[i])
		fzRawStr(b, s.kv[i+1])
	}
	fzRawStr(b, s.body)
	b.WriteByte(byte(s.mode))
}

const fzTail0 = "0000000000000000_0000000000000000"

var fzSeeds = []fzSeed{
	{method: "PUT", path: "s0", kv: []string{"Content-Type", "application/json"}},
	{method: "PUT", path: "s1", kv: []string{"Content-Type", "text/plain", "Stream-TTL", "3600"}, body: "hello"},
	{method: "PUT", path: "s2", kv: []string{"Content-Type", "application/octet-stream", "Stream-Expires-At", "2099-01-01T00:00:00Z"}},
	{method: "POST", path: "s0", kv: []string{"Content-Type", "application/json"}, body: `[{"from":"ann"},{"from":"bo"}]`},
	{method: "POST", path: "s0", kv: []string{"Content-Type", "application/json", "Producer-Id", "p1", "Producer-Epoch", "0", "Producer-Seq", "0"}, body: `{"n":1}`},
	{method: "POST", path: "s0", kv: []string{"Content-Type", "application/json", "Producer-Id", "p1", "Producer-Epoch", "0", "Producer-Seq", "1"}, body: `{"n":2}`, mode: fzBodyGzip},
	{method: "POST", path: "s1", kv: []string{"Content-Type", "text/plain", "Stream-Seq", "0001"}, body: "more\ntext", mode: fzBodyZstd},
	{method: "POST", path: "s1", kv: []string{"Content-Type", "text/plain"}, body: "chunked body", mode: fzBodyChunked},
	{method: "GET", path: "s0", query: "offset=-1"},
	{method: "GET", path: "s0", query: "offset=" + fzTail0, kv: []string{"Accept-Encoding", "gzip"}},
	{method: "GET", path: "s0", query: "offset=-1", kv: []string{"If-None-Match", `"x"`}},
	{method: "GET", path: "s1", query: "offset=now&live=long-poll&cursor=1"},
	{method: "GET", path: "s0", query: "offset=-1&live=sse"},
	{method: "GET", path: "s2", query: "offset=-1&live=sse"},
	{method: "HEAD", path: "d/s4"},
	{method: "PUT", path: "f1", kv: []string{"Content-Type", "application/json", "Stream-Forked-From", fzPrefix + "s0", "Stream-Fork-Offset", fzTail0}},
	{method: "POST", path: "s1", kv: []string{"Stream-Closed", "true"}},
	{method: "POST", path: "s0", kv: []string{"Content-Type", "application/json", "Stream-Closed", "TRUE"}, body: `{"bye":true}`},
	{method: "DELETE", path: "s0"},
	{method: "DELETE", path: "s3"},
	{method: "OPTIONS", path: "s0", kv: []string{"Access-Control-Request-Headers", "x-custom"}},
	{method: "PUT", path: "%5F%5Fds/x", kv: []string{"Content-Type", "application/json"}, body: `{}`},
	{method: "PUT", path: "a/%2e%2e/s9", kv: []string{"Content-Type", "text/plain"}},
}

// ---------------------------------------------------------------------------
// The targets.

func FuzzHTTP(f *testing.F) {
	for _, s := range fzSeeds {
		var b bytes.Buffer
		s.encode(&b)
		f.Add(b.Bytes())
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 2, 0, 1, 1, 0})

	// One engine per fuzz worker process, replaced every fzResetEvery inputs.
	dir := f.TempDir()
	var cur *fzServers
	var calls atomic.Int64
	f.Cleanup(func() {
		if cur != nil {
			cur.close()
		}
	})
	var v fzDyn
	var history []string
	f.Fuzz(func(t *testing.T, data []byte) {
		if cur == nil || calls.Add(1)%fzResetEvery == 0 {
			if cur != nil {
				cur.close()
			}
			cur, v, history = fzNewServers(t, dir), fzDyn{}, nil
		}
		q := fzDecode(&fzDecoder{b: data}, &v)
		// Log the requests before this one: with state kept across inputs,
		// they may matter.
		for i, h := range history {
			t.Logf("earlier request %d:\n%s", i-len(history), h)
		}
		if desc := cur.serve(t, q, &v); desc != "" {
			history = append(history, desc)
			if len(history) > 8 {
				history = history[1:]
			}
		}
	})
}

func FuzzHTTPSequence(f *testing.F) {
	seqs := [][]int{
		{0, 3, 4, 5, 8, 9, 10},       // create, append, producer, read
		{11, 12, 6, 7, 13, 14},       // long-poll, SSE, append text
		{15, 8, 16, 17, 11, 12, 13},  // fork, close, live reads at the closed tail
		{18, 19, 8, 15, 18, 1, 2, 0}, // deletes with forks alive, recreate
		{20, 21, 22, 16, 16, 17, 5},  // preflight, reserved, traversal, double close
	}
	for _, seq := range seqs {
		var b bytes.Buffer
		for _, i := range seq {
			fzSeeds[i].encode(&b)
		}
		f.Add(b.Bytes())
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fzNewServers(t, dir)
		defer s.close()
		var v fzDyn
		d := &fzDecoder{b: data}
		for i := 0; i < fzMaxSteps && len(d.b) > 0; i++ {
			s.serve(t, fzDecode(d, &v), &v)
		}
	})
}
