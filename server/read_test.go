package server_test

// Catch-up and long-poll reads: Cache-Control, ETag/If-None-Match,
// response compression, paging and long-poll timing and cursors.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

const publicCache = "public, no-cache"

func TestCacheControl(t *testing.T) {
	h := newHarness(t)
	h.create("open", "text/plain", []byte("some data"))
	openTail := h.tail("open")
	h.create("closed", "text/plain", []byte("final"))
	h.closeStream("closed")
	closedTail := h.tail("closed")

	cases := []struct {
		name   string
		method string
		path   string
		status int
		cc     string
	}{
		{"head", "HEAD", "open", 200, "no-store"},
		{"head closed", "HEAD", "closed", 200, "no-store"},
		{"offset=now", "GET", "open?offset=now", 200, "no-store"},
		{"offset=now closed", "GET", "closed?offset=now", 200, "no-store"},
		{"data read", "GET", "open?offset=-1", 200, publicCache},
		{"data read no offset", "GET", "open", 200, publicCache},
		{"data read of closed stream", "GET", "closed?offset=-1", 200, publicCache},
		{"empty tail read of open stream", "GET", "open?offset=" + openTail, 200, "no-store"},
		{"EOF read of closed stream", "GET", "closed?offset=" + closedTail, 200, publicCache},
		{"long-poll with data", "GET", "open?offset=-1&live=long-poll", 200, publicCache},
		{"long-poll with data and a cursor", "GET", "open?cursor=1&live=long-poll&offset=-1", 200, "public, max-age=1"},
		{"long-poll timeout", "GET", "open?offset=" + openTail + "&live=long-poll", 204, "no-store"},
		{"long-poll now timeout", "GET", "open?offset=now&live=long-poll", 204, "no-store"},
		{"long-poll closed EOF", "GET", "closed?offset=" + closedTail + "&live=long-poll", 204, "no-store"},
		{"sse", "GET", "closed?offset=-1&live=sse", 200, "no-cache"},
		{"sse at now", "GET", "closed?offset=now&live=sse", 200, "no-cache"},
		{"not found", "GET", "missing", 404, "no-store"},
		{"bad request", "GET", "open?offset=zzz", 400, "no-store"},
	}
	for _, c := range cases {
		r := h.do(c.method, c.path, nil)
		if r.status != c.status {
			t.Errorf("%s: status %d, want %d (body %q)", c.name, r.status, c.status, r.body)
			continue
		}
		if got := r.get("Cache-Control"); got != c.cc {
			t.Errorf("%s: Cache-Control %q, want %q", c.name, got, c.cc)
		}
	}
	// Writes are never cached.
	for _, r := range []*result{
		h.do("PUT", "w", nil, "Content-Type", "text/plain"),
		h.do("POST", "w", "x", "Content-Type", "text/plain"),
	} {
		if got := r.get("Cache-Control"); got != "no-store" {
			t.Errorf("write %d: Cache-Control %q, want no-store", r.status, got)
		}
	}
}

func TestPrivateCache(t *testing.T) {
	cfg := testConfig()
	cfg.PrivateCache = true
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("s", "text/plain", []byte("data"))
	r := h.do("GET", "s?offset=-1", nil)
	want(t, r, 200, "read")
	if got := r.get("Cache-Control"); got != "private, no-cache" {
		t.Errorf("Cache-Control %q", got)
	}
	cfg.CatchupMaxAge = time.Minute
	h = newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("s", "text/plain", []byte("data"))
	if got := h.do("GET", "s?offset=-1", nil).get("Cache-Control"); got != "private, max-age=60, stale-while-revalidate=300" {
		t.Errorf("with CatchupMaxAge 60s: Cache-Control %q", got)
	}
}

func TestOffsetNow(t *testing.T) {
	h := newHarness(t)
	h.create("b", "application/octet-stream", []byte("abc"))
	h.create("j", "application/json", []byte(`[{"a":1}]`))
	for _, c := range []struct {
		name, body string
	}{{"b", ""}, {"j", "[]"}} {
		r := h.do("GET", c.name+"?offset=now", nil)
		want(t, r, 200, "offset=now "+c.name)
		if string(r.body) != c.body {
			t.Errorf("%s offset=now body %q, want %q", c.name, r.body, c.body)
		}
		if r.get("Stream-Up-To-Date") != "true" || r.get("Stream-Next-Offset") != h.tail(c.name) {
			t.Errorf("%s offset=now: Up-To-Date %q Next-Offset %q", c.name, r.get("Stream-Up-To-Date"), r.get("Stream-Next-Offset"))
		}
		if r.get("ETag") != "" {
			t.Errorf("%s offset=now carries ETag %q", c.name, r.get("ETag"))
		}
		// An empty read at the tail of a JSON stream is [] too.
		r = h.do("GET", c.name+"?offset="+h.tail(c.name), nil)
		if string(r.body) != c.body {
			t.Errorf("%s tail read body %q, want %q", c.name, r.body, c.body)
		}
	}
}

// ---------------------------------------------------------------------------
// ETag

func TestETag(t *testing.T) {
	h := newHarness(t)
	h.create("e", "application/octet-stream", []byte("0123456789"))

	r1 := h.do("GET", "e?offset=-1", nil)
	want(t, r1, 200, "first read")
	tag := r1.get("ETag")
	if tag == "" || !strings.HasPrefix(tag, `"`) || !strings.HasSuffix(tag, `"`) {
		t.Fatalf("ETag %q is not a quoted entity tag", tag)
	}
	if r2 := h.do("GET", "e?offset=-1", nil); r2.get("ETag") != tag {
		t.Errorf("same range, ETag %q then %q", tag, r2.get("ETag"))
	}
	// Implicit start and explicit -1 are the same range.
	if r := h.do("GET", "e", nil); r.get("ETag") != tag {
		t.Errorf("no offset ETag %q, -1 ETag %q", r.get("ETag"), tag)
	}
	tail := r1.get("Stream-Next-Offset")
	tailTag := h.do("GET", "e?offset="+tail, nil).get("ETag")
	if tailTag == "" || tailTag == tag {
		t.Errorf("tail read ETag %q (range ETag %q)", tailTag, tag)
	}

	inm := []struct {
		name   string
		header string
		status int
	}{
		{"current", tag, 304},
		{"list", `"x", ` + tag, 304},
		{"list no spaces", `"x",` + tag + `,"y"`, 304},
		{"weak", "W/" + tag, 304},
		{"star", "*", 304},
		{"other", `"nope"`, 200},
		{"unquoted", strings.Trim(tag, `"`), 200},
	}
	for _, c := range inm {
		r := h.do("GET", "e?offset=-1", nil, "If-None-Match", c.header)
		if r.status != c.status {
			t.Errorf("If-None-Match %s (%q): %d, want %d", c.name, c.header, r.status, c.status)
			continue
		}
		if c.status == 304 {
			if len(r.body) != 0 {
				t.Errorf("304 with body %q", r.body)
			}
			if r.get("ETag") != tag {
				t.Errorf("304 ETag %q, want %q", r.get("ETag"), tag)
			}
		} else if string(r.body) != "0123456789" {
			t.Errorf("200 body %q", r.body)
		}
	}

	// Closing without new data changes the ETag, so the closure is seen.
	h.closeStream("e")
	r3 := h.do("GET", "e?offset=-1", nil, "If-None-Match", tag)
	want(t, r3, 200, "read after close with the old ETag")
	if r3.get("ETag") == tag || r3.get("Stream-Closed") != "true" || string(r3.body) != "0123456789" {
		t.Errorf("after close: ETag %q (was %q), Stream-Closed %q, body %q", r3.get("ETag"), tag, r3.get("Stream-Closed"), r3.body)
	}
	r4 := h.do("GET", "e?offset="+tail, nil, "If-None-Match", tailTag)
	want(t, r4, 200, "tail read after close with the old ETag")
	if r4.get("ETag") == tailTag || r4.get("Stream-Closed") != "true" || len(r4.body) != 0 {
		t.Errorf("tail after close: ETag %q (was %q), Stream-Closed %q, body %q", r4.get("ETag"), tailTag, r4.get("Stream-Closed"), r4.body)
	}
	if r := h.do("GET", "e?offset=-1", nil, "If-None-Match", r3.get("ETag")); r.status != 304 {
		t.Errorf("closed ETag revalidation: %d, want 304", r.status)
	}

	// A new incarnation of the path with the same bytes has another ETag.
	want(t, h.do("DELETE", "e", nil), 204, "delete")
	h.create("e", "application/octet-stream", []byte("0123456789"))
	r5 := h.do("GET", "e?offset=-1", nil, "If-None-Match", tag)
	want(t, r5, 200, "recreated stream with the old ETag")
	if r5.get("ETag") == tag {
		t.Errorf("recreated stream reuses ETag %q", tag)
	}
}

// ---------------------------------------------------------------------------
// Response compression

func TestResponseCompression(t *testing.T) {
	h := newHarness(t)
	data := bytes.Repeat([]byte("compressible line of stream text\n"), 320)[:10<<10]
	h.create("big", "text/plain", data)
	h.create("small", "text/plain", data[:1000])
	h.create("json", "application/json", []byte(`[`+strings.Repeat(`{"k":"vvvvvvvvvvvvvvvvvvvv"},`, 80)+`{"k":"end"}]`))

	identity := h.do("GET", "big?offset=-1", nil, "Accept-Encoding", "identity")
	want(t, identity, 200, "identity")
	if identity.get("Content-Encoding") != "" || !bytes.Equal(identity.body, data) {
		t.Fatalf("identity read: Content-Encoding %q, %d bytes", identity.get("Content-Encoding"), len(identity.body))
	}
	idTag := identity.get("ETag")
	if !headerList(identity.get("Vary"))["accept-encoding"] {
		t.Errorf("identity read Vary %q lacks Accept-Encoding", identity.get("Vary"))
	}

	decoders := map[string]func([]byte) ([]byte, error){
		"gzip": func(b []byte) ([]byte, error) {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			return io.ReadAll(zr)
		},
		"zstd": func(b []byte) ([]byte, error) {
			zr, err := zstd.NewReader(nil)
			if err != nil {
				return nil, err
			}
			defer zr.Close()
			return zr.DecodeAll(b, nil)
		},
	}
	cases := []struct {
		name, stream, accept, coding string
	}{
		{"gzip", "big", "gzip", "gzip"},
		{"gzip with q", "big", "gzip;q=1.0, identity;q=0.5", "gzip"},
		{"zstd preferred", "big", "gzip, deflate, br, zstd", "zstd"},
		{"zstd only", "big", "zstd", "zstd"},
		{"gzip refused", "big", "gzip;q=0", ""},
		{"gzip refused spaced", "big", "gzip; q=0", ""},
		{"gzip q=0.5 accepted", "big", "gzip;q=0.5", "gzip"},
		{"unknown only", "big", "br", ""},
		{"small not compressed", "small", "gzip", ""},
		{"small zstd not compressed", "small", "zstd", ""},
		{"json gzip", "json", "gzip", "gzip"},
	}
	for _, c := range cases {
		r := h.do("GET", c.stream+"?offset=-1", nil, "Accept-Encoding", c.accept)
		if r.status != 200 {
			t.Errorf("%s: status %d", c.name, r.status)
			continue
		}
		if got := r.get("Content-Encoding"); got != c.coding {
			t.Errorf("%s: Content-Encoding %q, want %q", c.name, got, c.coding)
			continue
		}
		if !headerList(r.get("Vary"))["accept-encoding"] {
			t.Errorf("%s: Vary %q lacks Accept-Encoding", c.name, r.get("Vary"))
		}
		if cl := r.get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
			t.Errorf("%s: Content-Length %q for %d bytes", c.name, cl, len(r.body))
		}
		plain := h.do("GET", c.stream+"?offset=-1", nil, "Accept-Encoding", "identity")
		body := r.body
		if c.coding != "" {
			if r.get("ETag") == plain.get("ETag") {
				t.Errorf("%s: compressed ETag %q equals the identity ETag", c.name, r.get("ETag"))
			}
			if len(body) >= len(plain.body) {
				t.Errorf("%s: compressed %d bytes >= identity %d", c.name, len(body), len(plain.body))
			}
			var err error
			if body, err = decoders[c.coding](body); err != nil {
				t.Errorf("%s: decoding: %v", c.name, err)
				continue
			}
		} else if r.get("ETag") != plain.get("ETag") {
			t.Errorf("%s: uncompressed ETag %q differs from identity %q", c.name, r.get("ETag"), plain.get("ETag"))
		}
		if !bytes.Equal(body, plain.body) {
			t.Errorf("%s: decoded body differs from identity body", c.name)
		}
		if c.stream == "json" {
			var msgs []json.RawMessage
			if err := json.Unmarshal(body, &msgs); err != nil || len(msgs) != 81 {
				t.Errorf("%s: decoded JSON: %d messages, %v", c.name, len(msgs), err)
			}
		}
	}

	// Revalidation of the gzip representation.
	gz := h.do("GET", "big?offset=-1", nil, "Accept-Encoding", "gzip")
	gzTag := gz.get("ETag")
	if gzTag == idTag {
		t.Fatalf("gzip ETag equals identity ETag %q", gzTag)
	}
	r := h.do("GET", "big?offset=-1", nil, "Accept-Encoding", "gzip", "If-None-Match", gzTag)
	want(t, r, 304, "If-None-Match gzip ETag on a gzip request")
	if len(r.body) != 0 || r.get("ETag") != gzTag {
		t.Errorf("304: body %q ETag %q", r.body, r.get("ETag"))
	}
	r = h.do("GET", "big?offset=-1", nil, "Accept-Encoding", "identity", "If-None-Match", gzTag)
	want(t, r, 200, "gzip ETag on an identity request")
	if !bytes.Equal(r.body, data) {
		t.Errorf("identity body after gzip ETag mismatch differs")
	}
	r = h.do("GET", "big?offset=-1", nil, "Accept-Encoding", "identity", "If-None-Match", idTag)
	want(t, r, 304, "identity ETag on an identity request")
}

// ---------------------------------------------------------------------------
// Paging

func TestPagingBinary(t *testing.T) {
	h := newHarness(t)
	data := randBytes(200<<10, 11)
	h.create("big", "application/octet-stream", nil)
	for off := 0; off < len(data); off += 50 << 10 {
		h.appendData("big", "application/octet-stream", data[off:off+50<<10])
	}
	var got []byte
	off := "-1"
	pages := 0
	prev := ""
	for {
		r := h.do("GET", "big?offset="+off, nil)
		want(t, r, 200, "page "+strconv.Itoa(pages))
		pages++
		if len(r.body) > 64<<10 {
			t.Errorf("page %d has %d bytes > MaxReadBytes", pages, len(r.body))
		}
		next := r.get("Stream-Next-Offset")
		if next <= prev {
			t.Fatalf("page %d: Stream-Next-Offset %q not after %q", pages, next, prev)
		}
		prev = next
		got = append(got, r.body...)
		last := len(got) == len(data)
		if utd := r.get("Stream-Up-To-Date") == "true"; utd != last {
			t.Errorf("page %d (%d bytes, total %d): Stream-Up-To-Date %v", pages, len(r.body), len(got), utd)
		}
		if r.get("Stream-Closed") != "" {
			t.Errorf("page %d of an open stream has Stream-Closed", pages)
		}
		if last || pages > 10 {
			break
		}
		off = next
	}
	if pages != 4 {
		t.Errorf("read in %d pages, want 4", pages)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("paged read differs from the data")
	}
	// Closed: only the last page says Stream-Closed.
	h.closeStream("big")
	off = "-1"
	for i := 0; i < 4; i++ {
		r := h.do("GET", "big?offset="+off, nil)
		if closed := r.get("Stream-Closed") == "true"; closed != (i == 3) {
			t.Errorf("closed stream page %d: Stream-Closed %v", i, closed)
		}
		off = r.get("Stream-Next-Offset")
	}
}

func TestPagingJSON(t *testing.T) {
	h := newHarness(t)
	h.create("j", "application/json", nil)
	const n = 300
	pad := strings.Repeat("p", 500)
	for i := 0; i < n; i += 30 {
		var b strings.Builder
		b.WriteByte('[')
		for k := i; k < i+30; k++ {
			if k > i {
				b.WriteByte(',')
			}
			b.WriteString(`{"i":` + strconv.Itoa(k) + `,"pad":"` + pad + `"}`)
		}
		b.WriteByte(']')
		h.appendData("j", "application/json", []byte(b.String()))
	}
	off := "-1"
	seen := 0
	pages := 0
	for {
		r := h.do("GET", "j?offset="+off, nil)
		want(t, r, 200, "json page")
		pages++
		if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("page %d Content-Type %q", pages, ct)
		}
		var msgs []struct {
			I   int    `json:"i"`
			Pad string `json:"pad"`
		}
		if err := json.Unmarshal(r.body, &msgs); err != nil {
			t.Fatalf("page %d is not a JSON array: %v (%q)", pages, err, trunc(r.body))
		}
		if len(r.body) > 64<<10+2 {
			t.Errorf("page %d has %d bytes", pages, len(r.body))
		}
		for _, m := range msgs {
			if m.I != seen || m.Pad != pad {
				t.Fatalf("page %d: message %d, want %d", pages, m.I, seen)
			}
			seen++
		}
		utd := r.get("Stream-Up-To-Date") == "true"
		if utd != (seen == n) {
			t.Errorf("page %d: Up-To-Date %v after %d messages", pages, utd, seen)
		}
		if utd || pages > 20 {
			break
		}
		off = r.get("Stream-Next-Offset")
	}
	if seen != n || pages < 3 {
		t.Errorf("read %d messages in %d pages, want %d in >= 3", seen, pages, n)
	}

	// One message larger than MaxReadBytes comes whole.
	h.create("huge", "application/json", nil)
	big := `{"big":"` + strings.Repeat("x", 100<<10) + `"}`
	h.appendData("huge", "application/json", []byte(big))
	h.appendData("huge", "application/json", []byte(`{"small":1}`))
	r := h.do("GET", "huge?offset=-1", nil)
	var msgs []json.RawMessage
	if err := json.Unmarshal(r.body, &msgs); err != nil || len(msgs) != 1 || string(msgs[0]) != big {
		t.Fatalf("oversized message page: %d messages, err %v", len(msgs), err)
	}
	if r.get("Stream-Up-To-Date") != "" {
		t.Errorf("oversized message page claims Up-To-Date")
	}
	r = h.do("GET", "huge?offset="+r.get("Stream-Next-Offset"), nil)
	if string(r.body) != `[{"small":1}]` || r.get("Stream-Up-To-Date") != "true" {
		t.Errorf("page after the oversized message: %q up-to-date %q", r.body, r.get("Stream-Up-To-Date"))
	}
}

// ---------------------------------------------------------------------------
// Long-poll

// timedGet issues a GET and reports the result and how long it took.
func (h *harness) timedGet(p string, kv ...string) (*result, time.Duration) {
	h.t.Helper()
	start := time.Now()
	r := h.do("GET", p, nil, kv...)
	return r, time.Since(start)
}

func TestLongPollReceivesDataAppendedDuringWait(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.LongPollTimeout = 5 * time.Second // the wait must end by data, not timeout
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("lp", "text/plain", []byte("old"))
	tail := h.tail("lp")
	for _, off := range []string{tail, "now"} {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(100 * time.Millisecond)
			if _, err := h.eng.Append(context.Background(), "lp", []byte("new-"+off[:1]), engine.AppendOptions{}); err != nil {
				t.Errorf("append: %v", err)
			}
		}()
		r, took := h.timedGet("lp?offset=" + off + "&live=long-poll")
		wg.Wait()
		want(t, r, 200, "long-poll at "+off)
		if string(r.body) != "new-"+off[:1] {
			t.Errorf("long-poll at %s body %q", off, r.body)
		}
		if took < 80*time.Millisecond || took > 3*time.Second {
			t.Errorf("long-poll at %s took %v; want it to wait for the append (~100ms)", off, took)
		}
		if r.get("Stream-Cursor") == "" {
			t.Errorf("long-poll 200 without Stream-Cursor")
		}
		if r.get("Stream-Up-To-Date") != "true" || r.get("Stream-Next-Offset") != h.tail("lp") {
			t.Errorf("long-poll 200: Up-To-Date %q Next %q tail %q", r.get("Stream-Up-To-Date"), r.get("Stream-Next-Offset"), h.tail("lp"))
		}
		if r.get("ETag") == "" {
			t.Errorf("long-poll 200 without ETag")
		}
		tail = r.get("Stream-Next-Offset")
	}
	// Data already there: no wait.
	r, took := h.timedGet("lp?offset=-1&live=long-poll")
	want(t, r, 200, "long-poll with data")
	if string(r.body) != "oldnew-0new-n" || took > time.Second {
		t.Errorf("long-poll with data: %q in %v", r.body, took)
	}
}

func TestLongPollTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("lp", "application/json", []byte(`[1]`))
	tail := h.tail("lp")
	for _, off := range []string{tail, "now"} {
		r, took := h.timedGet("lp?offset=" + off + "&live=long-poll")
		want(t, r, 204, "long-poll timeout at "+off)
		if took < 250*time.Millisecond || took > 2*time.Second {
			t.Errorf("timeout after %v, want ~300ms", took)
		}
		if len(r.body) != 0 {
			t.Errorf("204 body %q", r.body)
		}
		if r.get("Stream-Up-To-Date") != "true" || r.get("Stream-Cursor") == "" || r.get("Stream-Next-Offset") != tail {
			t.Errorf("204 headers: Up-To-Date %q Cursor %q Next-Offset %q (tail %s)",
				r.get("Stream-Up-To-Date"), r.get("Stream-Cursor"), r.get("Stream-Next-Offset"), tail)
		}
		if r.get("Stream-Closed") != "" {
			t.Errorf("204 of an open stream has Stream-Closed")
		}
		if cc := r.get("Cache-Control"); cc != "no-store" {
			t.Errorf("204 without a cursor: Cache-Control %q, want no-store (its URL is reused)", cc)
		}
		// With the cursor echoed, the timeout may be shared briefly by a cache.
		r2, _ := h.timedGet("lp?cursor=" + r.get("Stream-Cursor") + "&live=long-poll&offset=" + r.get("Stream-Next-Offset"))
		want(t, r2, 204, "long-poll timeout with a cursor")
		if cc := r2.get("Cache-Control"); cc != "public, max-age=1" {
			t.Errorf("204 with a cursor: Cache-Control %q", cc)
		}
	}
}

func TestLongPollClosedStream(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.LongPollTimeout = 5 * time.Second
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("c", "text/plain", []byte("done"))
	h.closeStream("c")
	tail := h.tail("c")
	for _, off := range []string{tail, "now"} {
		r, took := h.timedGet("c?offset=" + off + "&live=long-poll")
		want(t, r, 204, "long-poll at closed tail "+off)
		if took > time.Second {
			t.Errorf("long-poll at the closed tail waited %v", took)
		}
		if r.get("Stream-Closed") != "true" || r.get("Stream-Up-To-Date") != "true" || r.get("Stream-Next-Offset") != tail {
			t.Errorf("closed 204: Closed %q Up-To-Date %q Next %q", r.get("Stream-Closed"), r.get("Stream-Up-To-Date"), r.get("Stream-Next-Offset"))
		}
	}
	// Before the tail of a closed stream: the rest of the data, with Stream-Closed.
	r := h.do("GET", "c?offset=-1&live=long-poll", nil)
	want(t, r, 200, "long-poll before the closed tail")
	if string(r.body) != "done" || r.get("Stream-Closed") != "true" {
		t.Errorf("body %q Stream-Closed %q", r.body, r.get("Stream-Closed"))
	}

	// Closed while a long-poll waits: it ends at once with EOF.
	h.create("c2", "text/plain", []byte("x"))
	tail2 := h.tail("c2")
	go func() {
		time.Sleep(100 * time.Millisecond)
		h.eng.Append(context.Background(), "c2", nil, engine.AppendOptions{Close: true})
	}()
	r, took := h.timedGet("c2?offset=" + tail2 + "&live=long-poll")
	want(t, r, 204, "long-poll when the stream closes")
	if took > 2*time.Second || r.get("Stream-Closed") != "true" || r.get("Stream-Next-Offset") != tail2 {
		t.Errorf("closed during wait: took %v, Closed %q, Next %q", took, r.get("Stream-Closed"), r.get("Stream-Next-Offset"))
	}
}

func TestLongPollStreamDeletedDuringWait(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.LongPollTimeout = 5 * time.Second
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("d", "text/plain", []byte("x"))
	go func() {
		time.Sleep(100 * time.Millisecond)
		h.eng.Delete(context.Background(), "d")
	}()
	r, took := h.timedGet("d?offset=now&live=long-poll")
	want(t, r, 404, "long-poll on a deleted stream")
	if took > 2*time.Second {
		t.Errorf("deleted during wait: answered after %v", took)
	}
}

func TestLongPollCursorMonotonic(t *testing.T) {
	h := newHarness(t)
	h.create("cur", "text/plain", []byte("data"))
	parse := func(r *result) uint64 {
		t.Helper()
		v, err := strconv.ParseUint(r.get("Stream-Cursor"), 10, 64)
		if err != nil {
			t.Fatalf("Stream-Cursor %q: %v", r.get("Stream-Cursor"), err)
		}
		return v
	}
	// Immediate 200s (data before the tail) carry cursors like 204s do.
	first := h.do("GET", "cur?offset=-1&live=long-poll", nil)
	want(t, first, 200, "first long-poll")
	c := parse(first)
	// The cursor is the current 20 s interval since 2024-10-09.
	epoch := time.Date(2024, 10, 9, 0, 0, 0, 0, time.UTC)
	now := uint64(time.Since(epoch) / (20 * time.Second))
	if c+1 < now || c > now+1 {
		t.Errorf("cursor %d, current interval %d", c, now)
	}
	for i := 0; i < 5; i++ {
		r := h.do("GET", "cur?offset=-1&live=long-poll&cursor="+strconv.FormatUint(c, 10), nil)
		next := parse(r)
		if next <= c {
			t.Fatalf("round %d: cursor=%d answered with %d, want greater", i, c, next)
		}
		if next > c+3600/20 {
			t.Errorf("round %d: jitter too large: %d -> %d", i, c, next)
		}
		c = next
	}
	// Readers holding the same cursor get the same next one, at any offset
	// (their requests may not have been collapsed): they keep asking for
	// the same URLs once at the same offset.
	same := h.do("GET", "cur?offset=-1&live=long-poll&cursor="+strconv.FormatUint(c, 10), nil)
	other := h.do("GET", "cur?offset="+h.tail("cur")+"&live=long-poll&cursor="+strconv.FormatUint(c, 10), nil)
	if a, b := parse(same), parse(other); a != b {
		t.Errorf("cursor=%d answered %d and %d: readers with one cursor split", c, a, b)
	}
	// On timeout too.
	tail := h.tail("cur")
	r := h.do("GET", "cur?offset="+tail+"&live=long-poll&cursor="+strconv.FormatUint(c, 10), nil)
	want(t, r, 204, "timeout with cursor")
	if next := parse(r); next <= c {
		t.Errorf("204 cursor %d not after %d", next, c)
	}
	// A stale or garbage cursor gets the current interval.
	for _, q := range []string{"0", "garbage", "-5"} {
		r := h.do("GET", "cur?offset=-1&live=long-poll&cursor="+q, nil)
		if v := parse(r); v+1 < now || v > now+1 {
			t.Errorf("cursor=%s answered %d, want current interval %d", q, v, now)
		}
	}
}

func TestLongPollClientGoneReleasesReader(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.LongPollTimeout = 10 * time.Second
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("g", "text/plain", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req := h.newRequest(ctx, "GET", "g?offset=now&live=long-poll", nil)
	start := time.Now()
	_, err := h.hc.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client-side cancel: err %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("cancel took %v", time.Since(start))
	}
	waitLiveReaders(t, h, 0)
}

// waitLiveReaders polls /metrics until durastream_live_readers is n.
func waitLiveReaders(t *testing.T, h *harness, n float64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		r := h.do("GET", "/metrics", nil)
		v := metricValue(t, string(r.body), "durastream_live_readers")
		if v == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("durastream_live_readers %v, want %v", v, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RFC 9110 12.5.3: a qvalue of 0 ("0", "0.0", "0.00", "0.000") means "not
// acceptable"; the server must not pick that coding.
func TestAcceptEncodingZeroQValueWithDecimals(t *testing.T) {
	h := newHarness(t)
	h.create("q", "text/plain", bytes.Repeat([]byte("qvalue "), 1000))
	cases := []struct{ accept, coding string }{
		{"gzip;q=0", ""},
		{"gzip;q=0.0", ""},
		{"gzip;q=0.000", ""},
		{"zstd;q=0.0, gzip", "gzip"},
		{"zstd;q=0.00, gzip;q=0.0", ""},
		{"gzip;q=0.001", "gzip"},
	}
	for _, c := range cases {
		r := h.do("GET", "q?offset=-1", nil, "Accept-Encoding", c.accept)
		if got := r.get("Content-Encoding"); got != c.coding {
			t.Errorf("BUG: Accept-Encoding %q: Content-Encoding %q, want %q", c.accept, got, c.coding)
		}
	}
}
