package server_test

// Hostile input over real connections: request smuggling with
// Content-Length and Transfer-Encoding, Expect, errors that quote what they
// got, bodies that trickle in, expiry limits, and JSON reads at offsets
// inside messages.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/testkit"
)

// rawResponse is one response read off a raw connection.
type rawResponse struct {
	status int
	hdr    http.Header
	body   []byte
}

// rawExchange writes raw to a new connection to addr and reads responses
// until the server closes the connection (closed) or none arrives within
// quiet (the connection is still open).
func rawExchange(t *testing.T, addr, raw string, quiet time.Duration) (resps []rawResponse, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return resps, false
			}
			return resps, true // EOF, reset: closed
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("reading a response body: %v", err)
		}
		resps = append(resps, rawResponse{resp.StatusCode, resp.Header, b})
	}
}

func addrOf(h *harness) string { return h.ts.Listener.Addr().String() }

const zeroOffset = "0000000000000000_0000000000000000"

// TestRequestSmuggling sends every combination of Content-Length and
// Transfer-Encoding over raw TCP, each followed by bytes that parse as a
// second request: an append to a stream the first request does not touch.
// Where the framing is in doubt (RFC 9112 6.1, 6.3) a proxy in front may
// have framed the request otherwise and sent those bytes as part of it:
// they must never run, and the connection must close after the response.
func TestRequestSmuggling(t *testing.T) {
	h := newHarness(t)
	h.create("front", "text/plain", nil)
	h.create("victim", "text/plain", nil)
	h.create("pipelined", "text/plain", nil)

	const smuggled = "POST /v1/stream/victim HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nEVIL"
	const pipelined = "POST /v1/stream/pipelined HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
	const chunked = "5\r\nhello\r\n0\r\n\r\n"
	head := func(proto string, hdrs ...string) string {
		return "POST /v1/stream/front " + proto + "\r\nHost: x\r\nContent-Type: text/plain\r\n" +
			strings.Join(hdrs, "\r\n") + "\r\n\r\n"
	}
	cl := func(n int) string { return "Content-Length: " + strconv.Itoa(n) }
	te := "Transfer-Encoding: chunked"

	cases := []struct {
		name string
		raw  string
		// keepAlive: the framing is unambiguous and the connection stays
		// open, so the second request is a real one and runs.
		keepAlive bool
		status    int // of the first response; 0: any
	}{
		{name: "Content-Length only", raw: head("HTTP/1.1", cl(5)) + "hello" + pipelined, keepAlive: true, status: 204},
		{name: "Content-Length twice, same value", raw: head("HTTP/1.1", cl(5), cl(5)) + "hello" + pipelined, keepAlive: true, status: 204},
		{name: "Transfer-Encoding only", raw: head("HTTP/1.1", te) + chunked + smuggled, status: 204},
		{name: "Content-Length covering the smuggled bytes, then Transfer-Encoding",
			raw: head("HTTP/1.1", cl(len(chunked+smuggled)), te) + chunked + smuggled},
		{name: "Transfer-Encoding, then Content-Length covering the smuggled bytes",
			raw: head("HTTP/1.1", te, cl(len(chunked+smuggled))) + chunked + smuggled},
		{name: "Content-Length shorter than the chunked body", raw: head("HTTP/1.1", cl(3), te) + chunked + smuggled},
		{name: "Content-Length and Transfer-Encoding: Chunked", raw: head("HTTP/1.1", cl(len(chunked+smuggled)), "Transfer-Encoding: Chunked") + chunked + smuggled},
		{name: "Content-Length and an empty chunked body", raw: head("HTTP/1.1", cl(5+len(smuggled)), te) + "0\r\n\r\n" + smuggled},
		{name: "Transfer-Encoding twice", raw: head("HTTP/1.1", cl(len(chunked+smuggled)), te, te) + chunked + smuggled, status: 501},
		{name: "Transfer-Encoding: chunked, chunked", raw: head("HTTP/1.1", "Transfer-Encoding: chunked, chunked") + chunked + smuggled, status: 501},
		{name: "Transfer-Encoding: gzip, chunked, and Content-Length", raw: head("HTTP/1.1", cl(len(chunked+smuggled)), "Transfer-Encoding: gzip, chunked") + chunked + smuggled, status: 501},
		{name: "Transfer-Encoding: identity, and Content-Length", raw: head("HTTP/1.1", cl(5), "Transfer-Encoding: identity") + "hello" + smuggled, status: 501},
		{name: "HTTP/1.0 keep-alive with Transfer-Encoding and Content-Length",
			raw: head("HTTP/1.0", "Connection: keep-alive", te, cl(5)) + "hello" + smuggled, status: 204},
		{name: "HTTP/1.0 keep-alive with Transfer-Encoding, no Content-Length",
			raw: head("HTTP/1.0", "Connection: keep-alive", te) + chunked + smuggled},
		{name: "HTTP/1.0 keep-alive with Content-Length only", raw: head("HTTP/1.0", "Connection: keep-alive", cl(5)) + "hello" + smuggled, status: 204},
		{name: "two Content-Lengths that differ", raw: head("HTTP/1.1", cl(5), cl(5+len(smuggled))) + "hello" + smuggled, status: 400},
		{name: "Content-Length: 5, 5", raw: head("HTTP/1.1", "Content-Length: 5, 5") + "hello" + smuggled, status: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, victim := h.tail("pipelined"), h.tail("victim")
			quiet := 3 * time.Second // a closing server closes at once
			if c.keepAlive {
				quiet = 500 * time.Millisecond
			}
			resps, closed := rawExchange(t, addrOf(h), c.raw, quiet)
			if len(resps) == 0 {
				t.Fatalf("no response (closed %v)", closed)
			}
			if c.status != 0 && resps[0].status != c.status {
				t.Errorf("first response %d %q, want %d", resps[0].status, resps[0].body, c.status)
			}
			if got := h.tail("victim"); got != victim {
				t.Fatalf("the smuggled request ran: victim's tail moved from %s to %s (responses %d)", victim, got, len(resps))
			}
			if c.keepAlive {
				if closed || len(resps) != 2 || resps[1].status != http.StatusNoContent || h.tail("pipelined") == before {
					t.Fatalf("keep-alive: %d responses, closed %v; the pipelined request should have run", len(resps), closed)
				}
				return
			}
			if !closed {
				t.Fatalf("connection still open after %d responses; it must close", len(resps))
			}
			if len(resps) != 1 {
				t.Errorf("%d responses, want 1", len(resps))
			}
		})
	}
}

// TestExpectationFailedHasMessage: an Expect other than 100-continue is a
// 417 with a message, whether net/http answers it (HTTP/1, on a server
// prepared with PrepareHTTPServer) or the handler does (HTTP/2).
func TestExpectationFailedHasMessage(t *testing.T) {
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv, err := server.New(eng, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, status int, hdr http.Header, body []byte) {
		t.Helper()
		if status != http.StatusExpectationFailed {
			t.Fatalf("status %d (%q), want 417", status, body)
		}
		if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q", ct)
		}
		if msg := strings.TrimSpace(string(body)); msg == "" || len(msg) > 200 {
			t.Errorf("message %q", body)
		}
		if hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("no security headers: %v", hdr)
		}
	}

	t.Run("HTTP/1.1", func(t *testing.T) {
		ts := httptest.NewUnstartedServer(srv)
		ts.Listener = server.PrepareHTTPServer(ts.Config, ts.Listener)
		ts.Start()
		defer ts.Close()
		addr := ts.Listener.Addr().String()
		for _, raw := range []string{
			"POST /v1/stream/x HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc",
			"GET /v1/stream/x HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",
			"GET /health HTTP/1.0\r\nExpect: x\r\n\r\n",
			// After a good request on the same connection.
			"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nExpect: x\r\n\r\n",
		} {
			resps, closed := rawExchange(t, addr, raw, 3*time.Second)
			if len(resps) == 0 || !closed {
				t.Fatalf("%q: %d responses, closed %v", raw, len(resps), closed)
			}
			last := resps[len(resps)-1]
			check(t, last.status, last.hdr, last.body)
			if len(resps) == 2 && resps[0].status != http.StatusOK {
				t.Fatalf("%q: first response %d", raw, resps[0].status)
			}
		}
		// A body that happens to look like a 417 goes out unchanged.
		ts2 := httptest.NewServer(srv) // (not prepared: the stream holds the bytes)
		defer ts2.Close()
		fake := "HTTP/1.1 417 Expectation Failed\r\n\r\n"
		req, _ := http.NewRequest("PUT", ts2.URL+"/v1/stream/fake", strings.NewReader(fake))
		req.Header.Set("Content-Type", "text/plain")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
			t.Fatalf("PUT: %v %v", resp, err)
		}
		resps, _ := rawExchange(t, addr, "GET /v1/stream/fake HTTP/1.1\r\nHost: x\r\n\r\n", 300*time.Millisecond)
		if len(resps) != 1 || resps[0].status != 200 || string(resps[0].body) != fake {
			t.Fatalf("read of the fake: %+v", resps)
		}
	})

	t.Run("HTTP/2", func(t *testing.T) {
		ts := httptest.NewUnstartedServer(srv)
		ts.EnableHTTP2 = true
		ts.StartTLS()
		defer ts.Close()
		hc := ts.Client()
		hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		req, _ := http.NewRequest("GET", ts.URL+"/v1/stream/x", nil)
		req.Header.Set("Expect", "bogus")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("proto %s", resp.Proto)
		}
		body, _ := io.ReadAll(resp.Body)
		check(t, resp.StatusCode, resp.Header, body)
	})
}

// TestErrorsQuoteShortSanitizedInput: an error that quotes what the client
// sent quotes at most a short prefix, in printable ASCII.
func TestErrorsQuoteShortSanitizedInput(t *testing.T) {
	h := newHarness(t)
	h.create("s", "text/plain", nil)
	// 20 KiB, with bytes outside ASCII (which net/http lets through as
	// obs-text), over a raw connection: Go's client refuses to send them.
	long := strings.Repeat("x-evil-coding\xff\t<script>", 20<<10/24)
	resps, _ := rawExchange(t, addrOf(h), "POST /v1/stream/s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"+
		"Content-Encoding: "+long+"\r\nContent-Length: 4\r\n\r\ndata", 300*time.Millisecond)
	if len(resps) != 1 || resps[0].status != http.StatusUnsupportedMediaType {
		t.Fatalf("unknown Content-Encoding: %+v", resps)
	}
	msg := string(resps[0].body)
	if len(msg) > 200 || !strings.Contains(msg, "x-evil-coding") || !strings.Contains(msg, "...") {
		t.Fatalf("415 message (%d bytes): %q", len(msg), trunc(resps[0].body))
	}
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; (c < 0x20 || c > 0x7e) && c != '\n' {
			t.Fatalf("415 message has byte %#x: %q", c, msg)
		}
	}

	// A malformed trailer after a chunked body: net/http's error quotes the
	// line, the message only a short prefix of it.
	resps, _ = rawExchange(t, addrOf(h), "POST /v1/stream/s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"+strings.Repeat("A", 3000)+"\r\n\r\n", 300*time.Millisecond)
	if len(resps) != 1 {
		t.Fatalf("malformed trailer: %d responses", len(resps))
	}
	if resps[0].status != http.StatusBadRequest || len(resps[0].body) > 200 {
		t.Fatalf("malformed trailer: %d %q", resps[0].status, trunc(resps[0].body))
	}

	// Every error message is short, whatever the request carried.
	for _, c := range []struct {
		method, path string
		kv           []string
	}{
		{"PUT", "t", []string{"Stream-TTL", strings.Repeat("9", 5000)}},
		{"PUT", "t", []string{"Stream-Expires-At", strings.Repeat("2030-", 2000)}},
		{"POST", "s", []string{"Producer-Id", "p", "Producer-Epoch", strings.Repeat("1", 5000), "Producer-Seq", "0"}},
		{"GET", "s?offset=" + strings.Repeat("7", 5000), nil},
		{"GET", "s?live=" + strings.Repeat("z", 5000), nil},
		{"PUT", "u", []string{"Stream-Forked-From", "/v1/stream/" + strings.Repeat("n", 5000)}},
	} {
		r := h.do(c.method, c.path, nil, c.kv...)
		if r.status < 400 || len(r.body) == 0 || len(r.body) > 300 {
			t.Errorf("%s %.40s: %d, message of %d bytes: %q", c.method, c.path, r.status, len(r.body), trunc(r.body))
		}
	}
}

// TestSlowBodyIsCutOff: a body that trickles in at a byte every 200 ms is
// answered 408 once BodyReadTimeout (plus what the bytes that did arrive
// bought at BodyMinRate) has passed, and the reason is logged; a body sent
// at a fair pace takes as long as it needs.
func TestSlowBodyIsCutOff(t *testing.T) {
	logs := &testkit.SyncBuffer{}
	cfg := testConfig()
	cfg.BodyReadTimeout = time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("slow", "text/plain", nil)

	trickle := func(t *testing.T, head string, next func(i int) string) {
		c, err := net.Dial("tcp", addrOf(h))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, head)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := io.WriteString(c, next(i)); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no response to a body trickling in for %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		body, _ := io.ReadAll(resp.Body)
		took := time.Since(start)
		if resp.StatusCode != http.StatusRequestTimeout || len(bytes.TrimSpace(body)) == 0 ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("after %v: %d %q, want 408 with a message", took, resp.StatusCode, body)
		}
		if took < 900*time.Millisecond || took > 4*time.Second {
			t.Errorf("408 after %v; the deadline is about 1 s", took)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Errorf("connection still open after the 408")
		}
	}
	t.Run("Content-Length", func(t *testing.T) {
		trickle(t, "POST /v1/stream/slow HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n",
			func(int) string { return "x" })
	})
	t.Run("chunked", func(t *testing.T) {
		trickle(t, "POST /v1/stream/slow HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
			func(int) string { return "1\r\nx\r\n" })
	})
	if got := h.tail("slow"); got != zeroOffset {
		t.Errorf("a cut-off body was appended: tail %s", got)
	}
	if !strings.Contains(logs.String(), "request body too slow") {
		t.Errorf("no log line for the 408s:\n%s", logs)
	}

	t.Run("fair pace", func(t *testing.T) {
		// 64 KiB at 40 KiB/s takes 1.6 s, past the 1 s base timeout, but
		// each 4 KiB buys half a second more.
		c, err := net.Dial("tcp", addrOf(h))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /v1/stream/slow HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 65536\r\n\r\n")
		for range 16 {
			time.Sleep(100 * time.Millisecond)
			io.WriteString(c, strings.Repeat("y", 4096))
		}
		br := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("fair-paced body: %v %v", resp, err)
		}
		// The deadline is gone once the body is in: the connection serves
		// another request after a pause longer than the timeout.
		time.Sleep(1500 * time.Millisecond)
		io.WriteString(c, "GET /v1/stream/slow?offset=-1 HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err = http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("next request on the connection: %v %v", resp, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if len(b) != 65536 {
			t.Fatalf("read %d bytes", len(b))
		}
	})
}

// TestExpiryLimits: an expiry or TTL the server cannot represent is a 400,
// not a stream that expires at once (year 9999 overflowed int64
// nanoseconds); the limits themselves work; Stream-Expires-At is RFC 3339,
// strictly.
func TestExpiryLimits(t *testing.T) {
	h := newHarness(t)
	for i, c := range []struct {
		header, value string
		status        int
		msg           string // in the 400's message
	}{
		{"Stream-Expires-At", "9999-12-31T00:00:00Z", 400, "2262-04-11"},
		{"Stream-Expires-At", "2262-04-11T23:47:16.854775808Z", 400, "2262-04-11"},
		{"Stream-Expires-At", "2262-04-12T00:00:00+00:01", 400, "2262-04-11"},
		{"Stream-Expires-At", "2262-04-11T23:47:16.854775807Z", 201, ""},
		{"Stream-Expires-At", "2262-04-11T23:47:16Z", 201, ""},
		{"Stream-Expires-At", "2099-06-01t12:00:00.5z", 201, ""},
		{"Stream-Expires-At", "2099-06-01T12:00:00-23:59", 201, ""},
		{"Stream-Expires-At", "2099-06-01T12:00:00+00:60", 400, "RFC 3339"},
		{"Stream-Expires-At", "2099-06-01T12:00:00+24:00", 400, "RFC 3339"},
		{"Stream-Expires-At", "2099-06-01T1:00:00Z", 400, "RFC 3339"},
		{"Stream-Expires-At", "2099-06-01T12:00:00,5Z", 400, "RFC 3339"},
		{"Stream-Expires-At", "2099-02-29T12:00:00Z", 400, "RFC 3339"},
		{"Stream-Expires-At", "2099-06-01T12:00:60Z", 400, "RFC 3339"},
		{"Stream-Expires-At", "2000-01-01T00:00:00Z", 400, "past"},
		{"Stream-TTL", "9223372036", 201, ""},
		{"Stream-TTL", "9223372037", 400, "9223372036"},
		{"Stream-TTL", "10000000000", 400, "9223372036"},
		{"Stream-TTL", "1099511627776", 400, "9223372036"},
		{"Stream-TTL", "99999999999999999999999", 400, "9223372036"},
		{"Stream-TTL", "3600", 201, ""},
		{"Stream-TTL", "03600", 400, "integer"},
		{"Stream-TTL", "-1", 400, "integer"},
	} {
		name := "e" + strconv.Itoa(i)
		t.Run(c.header+": "+c.value, func(t *testing.T) {
			top := h.t
			h.t = t // h's helpers fail the subtest
			defer func() { h.t = top }()
			r := h.do("PUT", name, nil, "Content-Type", "text/plain", c.header, c.value)
			if c.status != 201 {
				want(t, r, c.status, "PUT")
				if !strings.Contains(string(r.body), c.msg) {
					t.Errorf("message %q does not say %q", r.body, c.msg)
				}
				if r := h.do("HEAD", name, nil); r.status != 404 {
					t.Errorf("refused, yet HEAD is %d", r.status)
				}
				return
			}
			want(t, r, c.status, "PUT")
			// Created, and still there.
			r = h.do("HEAD", name, nil)
			want(t, r, http.StatusOK, "HEAD after create")
			if c.header == "Stream-TTL" && r.get("Stream-TTL") != c.value {
				t.Errorf("Stream-TTL %q, want %q", r.get("Stream-TTL"), c.value)
			}
			if c.header == "Stream-Expires-At" {
				got, err := time.Parse(time.RFC3339Nano, r.get("Stream-Expires-At"))
				if err != nil || got.Before(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)) {
					t.Errorf("Stream-Expires-At %q", r.get("Stream-Expires-At"))
				}
			}
			want(t, h.do("GET", name+"?offset=-1", nil), http.StatusOK, "read after create")
		})
	}
}

// TestJSONReadAtOffsetInsideMessage: a JSON stream is read only at message
// boundaries: an offset inside a message is a 400 for catch-up, long-poll
// and SSE reads, in a fork's own data and in its source's, and a fork may
// not be made there; at every boundary the body is valid JSON.
func TestJSONReadAtOffsetInsideMessage(t *testing.T) {
	h := newHarness(t)
	msgs := []string{`{"a":"x,y]}"}`, `{"b":[1,2,{"c":"\"q\",}"}]}`, `"str,ing"`, `42`, `[[],{}]`}
	h.create("j", "application/json", []byte("["+strings.Join(msgs, ",")+"]"))
	// Enough more to put index entries (every 4 KiB) between boundaries.
	var more []string
	for i := range 300 {
		more = append(more, fmt.Sprintf(`{"i":%d,"pad":"%s,]}"}`, i, strings.Repeat("p", i%40)))
	}
	r := h.do("POST", "j", "["+strings.Join(more, ",")+"]", "Content-Type", "application/json")
	want(t, r, http.StatusNoContent, "append")
	bounds := map[int]bool{0: true}
	off := 0
	for _, m := range append(msgs, more...) {
		off += len(m) + 1
		bounds[off] = true
	}
	tail := off
	at := func(o int) string { return fmt.Sprintf("%016d_%016d", 0, o) }

	checkCatchUp := func(t *testing.T, stream string, bounds map[int]bool, tail int, step int) {
		t.Helper()
		for o := 0; o <= tail; o += step {
			r := h.do("GET", stream+"?offset="+at(o), nil)
			if !bounds[o] {
				if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "boundary") {
					t.Fatalf("offset %d inside a message: %d %.80q, want 400", o, r.status, r.body)
				}
				continue
			}
			want(t, r, http.StatusOK, "read at boundary "+strconv.Itoa(o))
			if !json.Valid(r.body) {
				t.Fatalf("read at %d: invalid JSON %.80q", o, r.body)
			}
		}
	}
	checkCatchUp(t, "j", bounds, tail, 1)

	// Live reads, at offsets inside messages and at boundaries.
	for _, o := range []int{1, 5, len(msgs[0]), tail - 2} {
		want(t, h.do("GET", "j?live=long-poll&offset="+at(o), nil), http.StatusBadRequest, "long-poll inside a message")
		want(t, h.do("GET", "j?live=sse&offset="+at(o), nil), http.StatusBadRequest, "SSE inside a message")
	}
	r = h.do("GET", "j?live=long-poll&offset="+at(len(msgs[0])+1), nil)
	want(t, r, http.StatusOK, "long-poll at a boundary")
	if !json.Valid(r.body) {
		t.Fatalf("long-poll body %.80q", r.body)
	}
	// A long-poll waiting at the tail gets the next append.
	got := make(chan *result, 1)
	go func() { got <- h.do("GET", "j?live=long-poll&offset="+at(tail), nil) }()
	time.Sleep(100 * time.Millisecond)
	h.appendData("j", "application/json", []byte(`{"late":true}`))
	r = <-got
	if r.status != http.StatusOK || string(r.body) != `[{"late":true}]` {
		t.Fatalf("long-poll at the tail: %d %q", r.status, r.body)
	}
	bounds[tail+len(`{"late":true},`)] = true
	tail += len(`{"late":true},`)

	// Forks: below the fork point, the source's boundaries.
	fork := 0
	for o := range bounds {
		if o > tail/2 && (fork == 0 || o < fork) {
			fork = o
		}
	}
	r = h.do("PUT", "jf", nil, "Stream-Forked-From", prefix+"j", "Stream-Fork-Offset", at(fork))
	want(t, r, http.StatusCreated, "fork at a boundary")
	h.appendData("jf", "application/json", []byte(`[{"own":1},{"own":"2,3"}]`))
	fb := map[int]bool{}
	for o := range bounds {
		if o <= fork {
			fb[o] = true
		}
	}
	fb[fork+len(`{"own":1},`)] = true
	ftail := fork + len(`{"own":1},{"own":"2,3"},`)
	fb[ftail] = true
	checkCatchUp(t, "jf", fb, ftail, 7)
	checkCatchUp(t, "jf", fb, ftail, 1)
	want(t, h.do("GET", "jf?live=sse&offset="+at(fork-1), nil), http.StatusBadRequest, "SSE in a fork, inside a source message")
	want(t, h.do("GET", "jf?live=long-poll&offset="+at(fork+3), nil), http.StatusBadRequest, "long-poll inside the fork's message")

	// No fork inside a message.
	mid := fork - 1
	r = h.do("PUT", "jg", nil, "Stream-Forked-From", prefix+"j", "Stream-Fork-Offset", at(mid))
	want(t, r, http.StatusBadRequest, "fork inside a message")
	want(t, h.do("HEAD", "jg", nil), http.StatusNotFound, "HEAD of the refused fork")
}
