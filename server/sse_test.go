package server_test

// SSE reads: event framing, base64 for binary streams, control events,
// closure, the maximum connection duration and Server.Shutdown.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
)

type sseEvent struct {
	typ  string
	data []string // the data: lines, in order
}

// joined is the event data as an SSE client sees it.
func (e sseEvent) joined() string { return strings.Join(e.data, "\n") }

// control parses a control event.
func (e sseEvent) control(t *testing.T) map[string]any {
	t.Helper()
	if e.typ != "control" {
		t.Fatalf("event %q, want control (data %q)", e.typ, e.data)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(e.joined()), &m); err != nil {
		t.Fatalf("control event %q: %v", e.joined(), err)
	}
	return m
}

// sseStream is an open SSE response read by a goroutine.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
	err    error // how the body ended; valid after done is closed
	cancel context.CancelFunc
	opened time.Time
}

// openSSE starts an SSE request and checks the response headers.
func (h *harness) openSSE(p string) *sseStream {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req := h.newRequest(ctx, "GET", p, nil)
	s := &sseStream{events: make(chan sseEvent, 64), done: make(chan struct{}), cancel: cancel, opened: time.Now()}
	// No client timeout: SSE responses are long.
	resp, err := (&http.Client{Transport: h.hc.Transport}).Do(req)
	if err != nil {
		cancel()
		h.t.Fatalf("SSE %s: %v", p, err)
	}
	s.resp = resp
	h.t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		h.t.Fatalf("SSE %s: status %d (%q)", p, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		h.t.Errorf("SSE Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" && cc != "private, no-cache" { // private: the read needed a credential
		h.t.Errorf("SSE Cache-Control %q", cc)
	}
	go s.read()
	return s
}

func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.events)
	br := bufio.NewReader(s.resp.Body)
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) || line != "" || ev.typ != "" || len(ev.data) > 0 {
				s.err = fmt.Errorf("SSE body ended inside an event (partial line %q): %w", line, err)
			}
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.typ != "" || len(ev.data) > 0 {
				s.events <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				ev.typ = value
			case "data":
				ev.data = append(ev.data, value)
			}
		}
	}
}

// next returns the next event, or ok=false if the response ended.
func (s *sseStream) next(t *testing.T, timeout time.Duration) (sseEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(timeout):
		t.Fatalf("no SSE event within %v", timeout)
		return sseEvent{}, false
	}
}

// mustNext returns the next event of the given type.
func (s *sseStream) mustNext(t *testing.T, typ string) sseEvent {
	t.Helper()
	ev, ok := s.next(t, 3*time.Second)
	if !ok {
		t.Fatalf("SSE ended (err %v), want a %s event", s.err, typ)
	}
	if ev.typ != typ {
		t.Fatalf("SSE event %q (data %q), want %s", ev.typ, trunc([]byte(ev.joined())), typ)
	}
	return ev
}

// waitEnd expects the response to end (cleanly) within timeout with no
// further events; it returns when it ended.
func (s *sseStream) waitEnd(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if ok {
			t.Fatalf("unexpected SSE event %q %q, want the end", ev.typ, ev.data)
		}
	case <-time.After(timeout):
		t.Fatalf("SSE response still open after %v", timeout)
	}
	<-s.done
	if s.err != nil {
		t.Errorf("SSE body ended with %v", s.err)
	}
	return time.Now()
}

// decodeBase64Event decodes a base64 data event per protocol 5.8.
func decodeBase64Event(t *testing.T, ev sseEvent) []byte {
	t.Helper()
	text := strings.Join(ev.data, "")
	if len(text)%4 != 0 {
		t.Errorf("base64 text length %d is not a multiple of 4", len(text))
	}
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		t.Fatalf("base64 data event: %v", err)
	}
	return b
}

func TestSSEBinaryBase64(t *testing.T) {
	h := newHarness(t)
	var all []byte
	for i := 0; i < 4*256; i++ {
		all = append(all, byte(i))
	}
	cases := []struct {
		name string
		ct   string
		data []byte
	}{
		{"every byte", "application/octet-stream", all},
		{"protobuf", "application/x-protobuf", []byte("\x08\x96\x01\n\r\n")},
		{"one line over 16k base64", "application/octet-stream", randBytes(40<<10, 5)},
		{"ndjson is binary", "application/ndjson", []byte("{\"a\":1}\n{\"b\":2}\n")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "b64/" + strings.ReplaceAll(c.name, " ", "-")
			h.create(name, c.ct, c.data)
			h.closeStream(name)
			s := h.openSSE(name + "?offset=-1&live=sse")
			if enc := s.resp.Header.Get("Stream-Sse-Data-Encoding"); enc != "base64" {
				t.Errorf("stream-sse-data-encoding %q, want base64", enc)
			}
			ev := s.mustNext(t, "data")
			for _, l := range ev.data {
				if len(l) > 16<<10 {
					t.Errorf("data line of %d chars", len(l))
				}
			}
			if len(c.data) > 16<<10 && len(ev.data) < 2 {
				t.Errorf("%d bytes in %d data: line(s); want split lines", len(c.data), len(ev.data))
			}
			if got := decodeBase64Event(t, ev); !bytes.Equal(got, c.data) {
				t.Errorf("decoded %d bytes differ from the %d stored", len(got), len(c.data))
			}
			ctl := s.mustNext(t, "control").control(t)
			if ctl["streamNextOffset"] != engine.Offset(len(c.data)).String() || ctl["streamClosed"] != true {
				t.Errorf("control %v", ctl)
			}
			s.waitEnd(t, time.Second)
		})
	}
}

func TestSSEBinaryPagesEachFollowedByControl(t *testing.T) {
	h := newHarness(t)
	data := randBytes(150<<10, 9) // three events at MaxReadBytes 64 KiB
	h.create("pg", "application/octet-stream", data)
	s := h.openSSE("pg?offset=-1&live=sse")
	var got []byte
	for i := 0; ; i++ {
		got = append(got, decodeBase64Event(t, s.mustNext(t, "data"))...)
		ctl := s.mustNext(t, "control").control(t)
		if ctl["streamNextOffset"] != engine.Offset(len(got)).String() {
			t.Errorf("event %d: streamNextOffset %v after %d bytes", i, ctl["streamNextOffset"], len(got))
		}
		if ctl["streamCursor"] == nil || ctl["streamCursor"] == "" {
			t.Errorf("event %d: open stream control without streamCursor: %v", i, ctl)
		}
		utd := ctl["upToDate"] == true
		if utd != (len(got) == len(data)) {
			t.Errorf("event %d: upToDate %v after %d of %d bytes", i, utd, len(got), len(data))
		}
		if utd || i > 5 {
			break
		}
	}
	if !bytes.Equal(got, data) {
		t.Errorf("SSE delivered %d bytes, differing from the %d stored", len(got), len(data))
	}
}

func TestSSETextLines(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name  string
		ct    string
		data  string
		lines []string
	}{
		{"single line", "text/plain", "hello", []string{"hello"}},
		{"lf", "text/plain", "line1\nline2", []string{"line1", "line2"}},
		{"crlf", "text/plain; charset=utf-8", "a\r\nb\r\nc", []string{"a", "b", "c"}},
		{"mixed", "text/markdown", "line1\nline2\r\nline3", []string{"line1", "line2", "line3"}},
		{"trailing newline", "text/plain", "x\n", []string{"x", ""}},
		{"blank lines", "text/plain", "a\n\nb", []string{"a", "", "b"}},
		{"data-looking text", "text/plain", "event: control\ndata: x", []string{"event: control", "data: x"}},
		// Parsers drop one space after "data:": the server must send it.
		{"leading spaces", "text/plain", " world\n  two spaces\n\t tab", []string{" world", "  two spaces", "\t tab"}},
		{"only spaces", "text/plain", " ", []string{" "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "txt/" + strings.ReplaceAll(c.name, " ", "-")
			h.create(name, c.ct, []byte(c.data))
			s := h.openSSE(name + "?offset=-1&live=sse")
			if enc := s.resp.Header.Get("Stream-Sse-Data-Encoding"); enc != "" {
				t.Errorf("text stream has stream-sse-data-encoding %q", enc)
			}
			ev := s.mustNext(t, "data")
			if strings.Join(ev.data, "|") != strings.Join(c.lines, "|") {
				t.Errorf("data lines %q, want %q", ev.data, c.lines)
			}
			if want := strings.ReplaceAll(c.data, "\r\n", "\n"); ev.joined() != want {
				t.Errorf("client view %q, want %q", ev.joined(), want)
			}
			ctl := s.mustNext(t, "control").control(t)
			if ctl["upToDate"] != true || ctl["streamNextOffset"] != engine.Offset(len(c.data)).String() {
				t.Errorf("control %v", ctl)
			}
		})
	}
}

func TestSSEJSONDataIsArray(t *testing.T) {
	h := newHarness(t)
	h.create("j", "application/json", []byte(`{"first":true}`))
	h.appendData("j", "application/json", []byte(`[{"k":"v"}, {"k":"w","nested":[1,2,{"x":"a\nb"}]}]`))
	s := h.openSSE("j?offset=-1&live=sse")
	if enc := s.resp.Header.Get("Stream-Sse-Data-Encoding"); enc != "" {
		t.Errorf("JSON stream has stream-sse-data-encoding %q", enc)
	}
	ev := s.mustNext(t, "data")
	var msgs []map[string]any
	if err := json.Unmarshal([]byte(ev.joined()), &msgs); err != nil {
		t.Fatalf("data event %q is not a JSON array: %v", ev.joined(), err)
	}
	if len(msgs) != 3 || msgs[0]["first"] != true || msgs[2]["k"] != "w" {
		t.Errorf("messages %v", msgs)
	}
	s.mustNext(t, "control")
	h.appendData("j", "application/json", []byte(`{"later":1}`))
	ev = s.mustNext(t, "data")
	var later []map[string]any
	if err := json.Unmarshal([]byte(ev.joined()), &later); err != nil || len(later) != 1 || later[0]["later"] != 1.0 {
		t.Errorf("live JSON data event %q: %v %v", ev.joined(), later, err)
	}
	s.mustNext(t, "control")
}

func TestSSEEventsFollowAppends(t *testing.T) {
	h := newHarness(t)
	h.create("live", "text/plain", []byte("start"))
	s := h.openSSE("live?offset=-1&live=sse")
	if ev := s.mustNext(t, "data"); ev.joined() != "start" {
		t.Errorf("first data %q", ev.joined())
	}
	ctl := s.mustNext(t, "control").control(t)
	if ctl["upToDate"] != true || ctl["streamCursor"] == nil || ctl["streamClosed"] != nil {
		t.Errorf("first control %v", ctl)
	}
	total := len("start")
	for _, part := range []string{"-one", "-two", "-three"} {
		h.appendData("live", "text/plain", []byte(part))
		total += len(part)
		if ev := s.mustNext(t, "data"); ev.joined() != part {
			t.Errorf("data %q, want %q", ev.joined(), part)
		}
		ctl := s.mustNext(t, "control").control(t)
		if ctl["streamNextOffset"] != engine.Offset(total).String() || ctl["upToDate"] != true || ctl["streamCursor"] == nil {
			t.Errorf("control after %q: %v", part, ctl)
		}
	}
	// Append-and-close: the last data, a closing control event, the end.
	r := h.do("POST", "live", "-end", "Content-Type", "text/plain", "Stream-Closed", "true")
	want(t, r, http.StatusNoContent, "append-and-close")
	total += len("-end")
	if ev := s.mustNext(t, "data"); ev.joined() != "-end" {
		t.Errorf("final data %q", ev.joined())
	}
	ctl = s.mustNext(t, "control").control(t)
	if ctl["streamClosed"] != true || ctl["streamNextOffset"] != engine.Offset(total).String() {
		t.Errorf("closing control %v", ctl)
	}
	if _, has := ctl["streamCursor"]; has {
		t.Logf("note: closing control carries streamCursor (allowed)")
	}
	s.waitEnd(t, time.Second)
}

// A close without data while an SSE reader waits at the tail must still be
// announced with a final control event carrying streamClosed:true (protocol
// 5.8, "Stream Closure Behavior in SSE Mode").
func TestSSECloseWithoutDataSendsClosingControl(t *testing.T) {
	h := newHarness(t)
	h.create("cl", "text/plain", []byte("body"))
	s := h.openSSE("cl?offset=-1&live=sse")
	s.mustNext(t, "data")
	s.mustNext(t, "control")
	h.closeStream("cl")
	ev, ok := s.next(t, 3*time.Second)
	if !ok {
		t.Fatalf("BUG: SSE response ended without a control event with streamClosed:true after a close-only POST")
	}
	ctl := ev.control(t)
	if ctl["streamClosed"] != true || ctl["streamNextOffset"] != engine.Offset(4).String() {
		t.Errorf("closing control %v", ctl)
	}
	s.waitEnd(t, time.Second)
}

func TestSSEAtClosedTailEndsImmediately(t *testing.T) {
	h := newHarness(t)
	h.create("ct", "application/octet-stream", []byte("abc"))
	h.closeStream("ct")
	tail := h.tail("ct")
	for _, off := range []string{tail, "now"} {
		s := h.openSSE("ct?offset=" + off + "&live=sse")
		ctl := s.mustNext(t, "control").control(t)
		if ctl["streamClosed"] != true || ctl["upToDate"] != true || ctl["streamNextOffset"] != tail {
			t.Errorf("offset %s: control %v", off, ctl)
		}
		end := s.waitEnd(t, time.Second)
		if d := end.Sub(s.opened); d > time.Second {
			t.Errorf("offset %s: SSE at the closed tail stayed open %v", off, d)
		}
	}
}

func TestSSEOffsetNowSkipsHistory(t *testing.T) {
	h := newHarness(t)
	h.create("n", "text/plain", []byte("history"))
	s := h.openSSE("n?offset=now&live=sse")
	ctl := s.mustNext(t, "control").control(t)
	if ctl["streamNextOffset"] != h.tail("n") || ctl["upToDate"] != true {
		t.Errorf("first control %v", ctl)
	}
	h.appendData("n", "text/plain", []byte("future"))
	if ev := s.mustNext(t, "data"); ev.joined() != "future" {
		t.Errorf("data %q, want only the new data", ev.joined())
	}
	s.mustNext(t, "control")
}

func TestSSEErrorsAreNotEventStreams(t *testing.T) {
	h := newHarness(t)
	h.create("e", "text/plain", []byte("x"))
	for _, c := range []struct {
		path   string
		status int
	}{
		{"missing?offset=-1&live=sse", 404},
		{"e?offset=0000000000000000_0000000000000099&live=sse", 400},
	} {
		r := h.do("GET", c.path, nil)
		if r.status != c.status || strings.HasPrefix(r.get("Content-Type"), "text/event-stream") || len(r.body) == 0 {
			t.Errorf("%s: %d %q %q", c.path, r.status, r.get("Content-Type"), r.body)
		}
	}
}

func TestSSEEndsWhenStreamDeleted(t *testing.T) {
	h := newHarness(t)
	h.create("del", "text/plain", []byte("x"))
	s := h.openSSE("del?offset=-1&live=sse")
	s.mustNext(t, "data")
	s.mustNext(t, "control")
	want(t, h.do("DELETE", "del", nil), 204, "delete")
	s.waitEnd(t, time.Second)
}

func TestSSEMaxDuration(t *testing.T) {
	t.Parallel()
	h := newHarness(t) // SSEMaxDuration 2 s
	h.create("md", "text/plain", nil)
	s := h.openSSE("md?offset=-1&live=sse")
	ctl := s.mustNext(t, "control").control(t)
	if ctl["upToDate"] != true {
		t.Errorf("first control %v", ctl)
	}
	end := s.waitEnd(t, 5*time.Second)
	if d := end.Sub(s.opened); d < 1800*time.Millisecond || d > 3500*time.Millisecond {
		t.Errorf("SSE closed after %v, want ~2s", d)
	}
	waitLiveReaders(t, h, 0)
}

func TestShutdownEndsLiveReads(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.LongPollTimeout = 20 * time.Second
	cfg.SSEMaxDuration = 20 * time.Second
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	h.create("sd", "text/plain", []byte("x"))
	tail := h.tail("sd")

	s := h.openSSE("sd?offset=-1&live=sse")
	s.mustNext(t, "data")
	s.mustNext(t, "control")

	type lpResult struct {
		r    *result
		took time.Duration
	}
	lps := make(chan lpResult, 2)
	var wg sync.WaitGroup
	for _, off := range []string{tail, "now"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := h.hc.Get(h.url("sd?offset=" + off + "&live=long-poll"))
			if err != nil {
				t.Errorf("long-poll: %v", err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			lps <- lpResult{&result{status: resp.StatusCode, hdr: resp.Header, body: b}, time.Since(start)}
		}()
	}
	waitLiveReaders(t, h, 3)

	start := time.Now()
	h.srv.Shutdown()
	end := s.waitEnd(t, 2*time.Second)
	if d := end.Sub(start); d > time.Second {
		t.Errorf("SSE ended %v after Shutdown, want < 1s", d)
	}
	wg.Wait()
	close(lps)
	n := 0
	for lp := range lps {
		n++
		if lp.r.status != http.StatusNoContent || lp.r.get("Stream-Up-To-Date") != "true" || lp.r.get("Stream-Next-Offset") != tail {
			t.Errorf("long-poll at shutdown: %d, Up-To-Date %q, Next %q", lp.r.status, lp.r.get("Stream-Up-To-Date"), lp.r.get("Stream-Next-Offset"))
		}
	}
	if n != 2 {
		t.Fatalf("%d long-polls answered", n)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("long-polls ended %v after Shutdown, want < 1s", d)
	}
	waitLiveReaders(t, h, 0)

	// Live reads that arrive after Shutdown do not wait either.
	r, took := h.timedGet("sd?offset=now&live=long-poll")
	if r.status != http.StatusNoContent || took > time.Second {
		t.Errorf("long-poll after Shutdown: %d after %v", r.status, took)
	}
}
