package fetch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
)

// upstream is a local HTTP server that streams numbered SSE events.
type upstream struct {
	*httptest.Server
	calls   atomic.Int64
	events  int
	every   time.Duration
	status  int
	stalled chan struct{} // closed: the handler hangs after its first event
	gone    chan struct{} // closed when a request's context ends early
}

func newUpstream(t *testing.T, events int, every time.Duration) *upstream {
	u := &upstream{events: events, every: every, status: 200, gone: make(chan struct{}, 16)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		case "/fail":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "try later")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Set-Cookie", "secret=1")
		w.WriteHeader(u.status)
		for i := range u.events {
			fmt.Fprint(w, sseEvent(i))
			w.(http.Flusher).Flush()
			if u.stalled != nil && i == 0 {
				<-r.Context().Done()
				u.gone <- struct{}{}
				return
			}
			select {
			case <-time.After(u.every):
			case <-r.Context().Done():
				u.gone <- struct{}{}
				return
			}
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func sseEvent(i int) string { return fmt.Sprintf("data: token %d\n\n", i) }

func wantBody(events int) []byte {
	var b bytes.Buffer
	for i := range events {
		b.WriteString(sseEvent(i))
	}
	return b.Bytes()
}

func testManager(t *testing.T, eng *engine.Engine, mod func(*Config)) *Manager {
	t.Helper()
	allow, err := ParseAllowlist([]string{"http://127.0.0.1:*/**"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Allow: allow}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func testEngine(t *testing.T, dir string) *engine.Engine {
	t.Helper()
	eng, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// waitEnd waits until the fetch has an outcome and its pipe is done (the
// outcome is recorded before the body is closed, so that a reader that
// sees the body closed finds the outcome).
func waitEnd(t *testing.T, m *Manager, id string) *Fetch {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if f.Outcome != Running && !m.Running(id) {
			return f
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the fetch did not end")
	return nil
}

func readBody(t *testing.T, eng *engine.Engine, f *Fetch) ([]byte, bool) {
	t.Helper()
	c, err := eng.Read(f.Body, engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	return c.Bytes(), c.Closed
}

func TestFetchStoresAndJoins(t *testing.T) {
	eng := testEngine(t, t.TempDir())
	defer eng.Close()
	up := newUpstream(t, 20, 2*time.Millisecond)
	m := testManager(t, eng, nil)
	ctx := context.Background()
	req := Request{Key: up.URL + "/chat?id=1", URL: mustURL(t, up.URL+"/chat?id=1"), Method: "POST",
		Header: http.Header{"Authorization": {"Bearer secret"}, "Connection": {"keep-alive"}}, Body: []byte(`{"q":1}`)}
	f, joined, err := m.Start(ctx, req)
	if err != nil || joined {
		t.Fatalf("start: %v, joined %v", err, joined)
	}
	if f.Status != 200 || f.ContentType() != "text/event-stream" || f.Header.Get("Set-Cookie") != "" {
		t.Fatalf("stored answer: %d %v", f.Status, f.Header)
	}
	g, joined, err := m.Start(ctx, req)
	if err != nil || !joined || g.ID != f.ID {
		t.Fatalf("second start: %v, joined %v, id %s vs %s", err, joined, g.ID, f.ID)
	}
	end := waitEnd(t, m, f.ID)
	if end.Outcome != Complete {
		t.Fatalf("outcome %q (%s)", end.Outcome, end.Error)
	}
	body, closed := readBody(t, eng, f)
	if !bytes.Equal(body, wantBody(20)) || !closed {
		t.Fatalf("stored %q (closed %v)", body, closed)
	}
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("upstream called %d times", n)
	}
	if end.Chunks < 1 || end.Bytes != int64(len(body)) {
		t.Fatalf("bytes %d chunks %d", end.Bytes, end.Chunks)
	}
	// The meta record holds no request credential.
	c, _ := eng.Read(f.Meta, engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{})
	if bytes.Contains(c.Bytes(), []byte("secret")) {
		t.Fatalf("stored record holds a credential: %s", c.Bytes())
	}
	c.Release()
}

func TestFetchConcurrentFirstRequestsCallUpstreamOnce(t *testing.T) {
	eng := testEngine(t, t.TempDir())
	defer eng.Close()
	up := newUpstream(t, 5, 5*time.Millisecond)
	m := testManager(t, eng, nil)
	req := Request{Key: up.URL + "/x", URL: mustURL(t, up.URL+"/x"), Method: "GET"}
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			f, _, err := m.Start(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = f.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("different fetches for one key: %v", ids)
		}
	}
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("upstream called %d times", n)
	}
}

func TestFetchNon2xxRedirectAndNotAllowed(t *testing.T) {
	eng := testEngine(t, t.TempDir())
	defer eng.Close()
	up := newUpstream(t, 1, 0)
	m := testManager(t, eng, nil)
	ctx := context.Background()
	fail := Request{Key: up.URL + "/fail", URL: mustURL(t, up.URL+"/fail"), Method: "GET"}
	for range 2 {
		_, _, err := m.Start(ctx, fail)
		var ue *UpstreamError
		if !errors.As(err, &ue) || ue.Status != 503 || string(ue.Body) != "try later" {
			t.Fatalf("non-2xx: %v", err)
		}
	}
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("a non-2xx answer was kept: upstream called %d times for two requests", n)
	}
	if _, _, err := m.Start(ctx, Request{URL: mustURL(t, up.URL+"/redirect"), Method: "GET"}); !errors.Is(err, ErrRedirect) {
		t.Fatalf("redirect: %v", err)
	}
	if _, _, err := m.Start(ctx, Request{URL: mustURL(t, "http://example.invalid/"), Method: "GET"}); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("unlisted URL: %v", err)
	}
	if _, _, err := m.Start(ctx, Request{URL: mustURL(t, up.URL+"/"), Method: "CONNECT"}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad method: %v", err)
	}
}

func TestFetchAbortKeepsWhatWasStored(t *testing.T) {
	eng := testEngine(t, t.TempDir())
	defer eng.Close()
	up := newUpstream(t, 1000, 10*time.Millisecond)
	m := testManager(t, eng, nil)
	f, _, err := m.Start(context.Background(), Request{URL: mustURL(t, up.URL+"/long"), Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)
	if err := m.Abort(context.Background(), f.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled")
	}
	end, _ := m.Get(f.ID)
	body, closed := readBody(t, eng, f)
	if end.Outcome != Aborted || !closed || len(body) == 0 || !bytes.HasPrefix(wantBody(1000), body) {
		t.Fatalf("after abort: outcome %q closed %v body %q", end.Outcome, closed, body)
	}
	if err := m.Abort(context.Background(), f.ID); err != nil {
		t.Fatalf("second abort: %v", err)
	}
	if err := m.Delete(context.Background(), f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(f.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestFetchIdleTimeoutAndTooLarge(t *testing.T) {
	eng := testEngine(t, t.TempDir())
	defer eng.Close()
	stall := newUpstream(t, 10, time.Millisecond)
	stall.stalled = make(chan struct{})
	m := testManager(t, eng, func(c *Config) { c.IdleTimeout = 100 * time.Millisecond; c.MaxResponseBytes = 40 })
	f, _, err := m.Start(context.Background(), Request{URL: mustURL(t, stall.URL+"/s"), Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if end := waitEnd(t, m, f.ID); end.Outcome != IdleTimeout {
		t.Fatalf("stalled upstream: %q", end.Outcome)
	}
	big := newUpstream(t, 50, 0)
	f, _, err = m.Start(context.Background(), Request{URL: mustURL(t, big.URL+"/b"), Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	end := waitEnd(t, m, f.ID)
	body, _ := readBody(t, eng, f)
	if end.Outcome != TooLarge || len(body) != 40 || !bytes.Equal(body, wantBody(50)[:40]) {
		t.Fatalf("too large: %q, %d bytes", end.Outcome, len(body))
	}
}

// A fetch that a crash interrupted (a start record, no end) is marked
// Interrupted and its body closed when the manager opens again; one that
// completed is replayed byte-exact.
func TestFetchInterruptedByRestart(t *testing.T) {
	dir := t.TempDir()
	eng := testEngine(t, dir)
	up := newUpstream(t, 1000, 10*time.Millisecond)
	done := newUpstream(t, 3, 0)
	allow, _ := ParseAllowlist([]string{"http://127.0.0.1:*/**"})
	m, err := New(eng, Config{Allow: allow})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = m.Start(context.Background(), Request{Key: "k-long", URL: mustURL(t, up.URL+"/l"), Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	short, _, err := m.Start(context.Background(), Request{Key: "k-short", URL: mustURL(t, done.URL+"/s"), Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	waitEnd(t, m, short.ID)
	time.Sleep(50 * time.Millisecond)
	// A crash: the long fetch's record gets no end. (Abandon the manager
	// without Close, and close the engine: what is stored is what a
	// SIGKILL leaves, since every append was acknowledged durable.)
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	eng.Close()
	eng2 := testEngine(t, dir)
	defer eng2.Close()
	m2, err := New(eng2, Config{Allow: allow})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	f, err := m2.ByKey("k-long")
	if err != nil {
		t.Fatal(err)
	}
	body, closed := readBody(t, eng2, f)
	if f.Outcome != Interrupted || !closed || !bytes.HasPrefix(wantBody(1000), body) {
		t.Fatalf("interrupted fetch: outcome %q closed %v %d bytes", f.Outcome, closed, len(body))
	}
	g, err := m2.ByKey("k-short")
	if err != nil {
		t.Fatal(err)
	}
	if body, closed := readBody(t, eng2, g); g.Outcome != Complete || !closed || !bytes.Equal(body, wantBody(3)) {
		t.Fatalf("completed fetch after restart: %q %v %q", g.Outcome, closed, body)
	}
	// The key of the interrupted fetch still names it: a new request joins it
	// (and sees the interruption) until it is deleted.
	if j, joined, err := m2.Start(context.Background(), Request{Key: "k-long", URL: mustURL(t, up.URL+"/l"), Method: "GET"}); err != nil || !joined || j.ID != f.ID {
		t.Fatalf("start after restart: %v %v", err, joined)
	}
}

// A delete cut short by a crash: it removes the record first, so what can
// be left is a body without a record, swept when the manager opens again;
// a record whose body is gone (as an older version's delete could leave)
// is deleted too, never served as a complete response with no bytes.
func TestDeleteCutByCrash(t *testing.T) {
	dir := t.TempDir()
	eng := testEngine(t, dir)
	up := newUpstream(t, 3, 0)
	m := testManager(t, eng, nil)
	var ids []string
	for _, k := range []string{"a", "b"} {
		f, _, err := m.Start(context.Background(), Request{Key: k, URL: mustURL(t, up.URL+"/"+k), Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		waitEnd(t, m, f.ID)
		ids = append(ids, f.ID)
	}
	m.Close()
	ctx := context.Background()
	// a: the delete's first step only (the record); b: the body only.
	if err := eng.Delete(ctx, m.metaPath(ids[0])); err != nil {
		t.Fatal(err)
	}
	if err := eng.Delete(ctx, m.bodyPath(ids[1])); err != nil {
		t.Fatal(err)
	}
	eng.Close()
	eng2 := testEngine(t, dir)
	defer eng2.Close()
	m2 := testManager(t, eng2, nil)
	for i, k := range []string{"a", "b"} {
		if f, err := m2.ByKey(k); err == nil {
			t.Errorf("fetch %s (%s) after a cut delete: %+v, want it gone", k, ids[i], f)
		}
		for _, p := range []string{m2.metaPath(ids[i]), m2.bodyPath(ids[i])} {
			if _, err := eng2.Head(p); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("%s after a cut delete: %v, want not found", p, err)
			}
		}
	}
}

// A request for a key whose fetch is being deleted, parked between the
// delete of the record and of the body: the key is free, so the request
// starts a new fetch under a new id with its own body; the delete then
// removes only the old fetch, and the key names the new one afterwards.
func TestStartRacingDelete(t *testing.T) {
	eng := testEngine(t, t.TempDir())
	defer eng.Close()
	up := newUpstream(t, 3, 0)
	m := testManager(t, eng, nil)
	defer m.Close()
	ctx := context.Background()
	req := Request{Key: "k", URL: mustURL(t, up.URL+"/k"), Method: "GET"}
	old, _, err := m.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	waitEnd(t, m, old.ID)

	parked, release := make(chan struct{}), make(chan struct{})
	m.recordDeleted = func(string) { close(parked); <-release }
	deleted := make(chan error, 1)
	go func() { deleted <- m.Delete(ctx, old.ID) }()
	<-parked
	f, joined, err := m.Start(ctx, req)
	if err != nil || joined || f.ID == old.ID {
		t.Fatalf("start during a delete: %v joined=%v id %s (old %s), want a new fetch", err, joined, f.ID, old.ID)
	}
	waitEnd(t, m, f.ID)
	close(release)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	g, err := m.ByKey("k")
	if err != nil || g.ID != f.ID {
		t.Fatalf("key after the delete: %v %+v, want the new fetch %s", err, g, f.ID)
	}
	if body, closed := readBody(t, eng, g); g.Outcome != Complete || !closed || !bytes.Equal(body, wantBody(3)) {
		t.Fatalf("new fetch: %q closed %v %q", g.Outcome, closed, body)
	}
	if _, err := eng.Head(m.bodyPath(old.ID)); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("old body after the delete: %v, want not found", err)
	}
	if up.calls.Load() != 2 {
		t.Fatalf("upstream calls %d, want 2", up.calls.Load())
	}
}

func TestFetchRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example.com/v1/chat?id=s3cret#frag": "https://api.example.com/v1/chat",
		"http://user:pass@127.0.0.1:8080/a%2Fb?":         "http://127.0.0.1:8080/a%2Fb",
		"https://example.com":                            "https://example.com",
		"http://[::1/x":                                  "",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// No automatic retries: an upstream that closes a kept-alive connection
// after reading the next request on it (without answering) would have
// net/http send that GET again on a new connection, and the upstream would
// run it twice. Each upstream request gets a connection of its own, so
// every request reaches the upstream once.
func TestFetchNeverRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	seen := map[string]int{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					mu.Lock()
					seen[req.URL.RawQuery]++
					mu.Unlock()
					if n > 0 {
						return // a reused connection: closed, unanswered
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	eng := testEngine(t, t.TempDir())
	defer eng.Close()
	m := testManager(t, eng, nil)
	for _, k := range []string{"a", "b", "c"} {
		f, _, err := m.Start(context.Background(), Request{Key: k, URL: mustURL(t, "http://"+ln.Addr().String()+"/x?"+k), Method: "GET"})
		if err != nil {
			t.Fatalf("fetch %s: %v", k, err)
		}
		waitEnd(t, m, f.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range []string{"a", "b", "c"} {
		if seen[k] != 1 {
			t.Errorf("request %s reached the upstream %d times, want once (%v)", k, seen[k], seen)
		}
	}
}
