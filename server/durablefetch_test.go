package server_test

// Tests of the durablefetch front door (durablefetch.go) against local
// upstreams, over HTTP and HTTPS: replay and follow, fan-out, one upstream
// call per key, non-2xx pass-through, delete, in-progress, TTL, idle
// timeout, the allowlist and address checks, offsets, and what a client
// sees of a fetch that did not complete (including across a restart).

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/fetch"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/testkit"
)

// dfWait bounds every wait in these tests.
const dfWait = 10 * time.Second

// dfUpstream is a local upstream streaming numbered SSE events.
type dfUpstream struct {
	ts     *httptest.Server
	calls  atomic.Int64
	events int
	// gate, if set, releases one event per receive; otherwise events come
	// every `every`.
	gate  chan struct{}
	every time.Duration
	// stall: the handler hangs after its first event until its request ends.
	stall bool
	// headerDelay delays the response headers.
	headerDelay time.Duration
	// status, if set, gives the status of call n (1-based).
	status func(n int64) int
	gone   chan struct{} // a request's context ended before its handler finished

	mu   sync.Mutex
	last *http.Request // the last request, with its body read into lastBody
	body []byte
}

func dfEvent(i int) string { return fmt.Sprintf("id: %d\ndata: token %d\n\n", i, i) }

// dfBody is the first n events.
func dfBody(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		b.WriteString(dfEvent(i))
	}
	return b.Bytes()
}

func newDFUpstream(t *testing.T, tls bool, events int, mod func(*dfUpstream)) *dfUpstream {
	t.Helper()
	u := &dfUpstream{events: events, every: time.Millisecond, gone: make(chan struct{}, 64)}
	if mod != nil {
		mod(u)
	}
	u.ts = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.ts.Config.ErrorLog = log.New(io.Discard, "", 0) // TestDurableFetchForwardedProto's plain HTTP to TLS
	if tls {
		u.ts.EnableHTTP2 = true
		u.ts.StartTLS()
	} else {
		u.ts.Start()
	}
	t.Cleanup(u.ts.Close)
	return u
}

func (u *dfUpstream) serve(w http.ResponseWriter, r *http.Request) {
	n := u.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.last, u.body = r, body
	u.mu.Unlock()
	ctx := r.Context()
	if r.URL.Path == "/redirect" {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
		return
	}
	if u.headerDelay > 0 {
		select {
		case <-time.After(u.headerDelay):
		case <-ctx.Done():
			u.gone <- struct{}{}
			return
		}
	}
	if u.status != nil {
		if st := u.status(n); st != http.StatusOK {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(st)
			fmt.Fprintf(w, "upstream says %d", st)
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Request-Id", "req-"+strconv.FormatInt(n, 10))
	w.Header().Set("Set-Cookie", "session=secret")
	w.Header().Set("X-Internal", "not replayed")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for i := range u.events {
		var next <-chan time.Time
		var gate chan struct{}
		if u.gate != nil {
			gate = u.gate
		} else if i > 0 {
			next = time.After(u.every)
		} else {
			next = time.After(0)
		}
		select {
		case <-gate:
		case <-next:
		case <-ctx.Done():
			u.gone <- struct{}{}
			return
		}
		fmt.Fprint(w, dfEvent(i))
		w.(http.Flusher).Flush()
		if u.stall {
			<-ctx.Done()
			u.gone <- struct{}{}
			return
		}
	}
}

// release lets n more events through the gate.
func (u *dfUpstream) release(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case u.gate <- struct{}{}:
		case <-time.After(dfWait):
			t.Fatal("upstream did not take the next event")
		}
	}
}

// waitGone waits until an upstream request's context has ended.
func (u *dfUpstream) waitGone(t *testing.T) {
	t.Helper()
	select {
	case <-u.gone:
	case <-time.After(dfWait):
		t.Fatal("the upstream request was not cancelled")
	}
}

func (u *dfUpstream) lastRequest() (*http.Request, []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last, u.body
}

// hostPath is the upstream URL without its scheme, for /{host}/{path}.
func (u *dfUpstream) hostPath(path string) string {
	_, hp, _ := strings.Cut(u.ts.URL, "://")
	return hp + path
}

// dfHarness is an engine, a fetch manager and the durablefetch front door
// on an httptest server.
type dfHarness struct {
	t   *testing.T
	eng *engine.Engine
	mgr *fetch.Manager
	df  *server.DurableFetch
	ts  *httptest.Server
	hc  *http.Client
}

type dfOptions struct {
	tls    bool
	allow  []string
	up     *dfUpstream // its certificate is trusted for the upstream calls
	eng    *engine.Engine
	fetch  func(*fetch.Config)
	config func(*server.DurableFetchConfig)
	// smallBuffers: 64 KiB socket buffers each side, so that a
	// response the client does not read soon blocks the server.
	smallBuffers bool
}

var dfDefaultAllow = []string{"http://127.0.0.1:*/**", "https://127.0.0.1:*/**"}

func newDFHarness(t *testing.T, o dfOptions) *dfHarness {
	t.Helper()
	h := &dfHarness{t: t, eng: o.eng}
	if h.eng == nil {
		eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory})
		if err != nil {
			t.Fatal(err)
		}
		h.eng = eng
		t.Cleanup(func() {
			if err := eng.Close(); err != nil {
				t.Errorf("engine.Close: %v", err)
			}
		})
	}
	if o.allow == nil {
		o.allow = dfDefaultAllow
	}
	allow, err := fetch.ParseAllowlist(o.allow)
	if err != nil {
		t.Fatal(err)
	}
	fcfg := fetch.Config{Allow: allow}
	if o.up != nil && o.up.ts.Certificate() != nil {
		tr := fetch.NewTransport(allow, 0)
		pool := x509.NewCertPool()
		pool.AddCert(o.up.ts.Certificate())
		tr.TLSClientConfig.RootCAs = pool
		fcfg.Client = fetch.NewClient(tr)
	}
	if o.fetch != nil {
		o.fetch(&fcfg)
	}
	h.mgr, err = fetch.New(h.eng, fcfg)
	if err != nil {
		t.Fatal(err)
	}
	var dcfg server.DurableFetchConfig
	if o.config != nil {
		o.config(&dcfg)
	}
	h.df = server.NewDurableFetch(h.mgr, h.eng, dcfg)
	h.ts = httptest.NewUnstartedServer(h.df)
	if o.smallBuffers {
		h.ts.Listener = smallBufListener{h.ts.Listener}
	}
	if o.tls {
		h.ts.EnableHTTP2 = true
		h.ts.StartTLS()
		h.hc = h.ts.Client()
	} else {
		h.ts.Start()
		tr := &http.Transport{DisableCompression: true}
		if o.smallBuffers {
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetReadBuffer(smallBuffer)
				}
				return c, err
			}
		}
		h.hc = &http.Client{Transport: tr}
	}
	t.Cleanup(h.close)
	return h
}

const smallBuffer = 64 << 10

// smallBufListener shrinks the send buffer of the connections it accepts.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(smallBuffer)
	}
	return c, err
}

// close stops the front door and the manager (not the engine).
func (h *dfHarness) close() {
	if h.ts == nil {
		return
	}
	h.df.Shutdown()
	h.mgr.Close()
	h.hc.CloseIdleConnections()
	h.ts.Close()
	h.ts = nil
}

// url is the front door's URL for the upstream path.
func (h *dfHarness) url(up *dfUpstream, path string) string {
	return h.ts.URL + "/" + up.hostPath(path)
}

// do sends a request; the response body is bounded by ctx (dfWait if nil).
func (h *dfHarness) do(ctx context.Context, method, url string, body []byte, hdr http.Header) *http.Response {
	h.t.Helper()
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), dfWait)
		h.t.Cleanup(cancel)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, url, err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// get GETs the upstream path and checks the status.
func (h *dfHarness) get(ctx context.Context, up *dfUpstream, path string, want int) *http.Response {
	h.t.Helper()
	resp := h.do(ctx, http.MethodGet, h.url(up, path), nil, nil)
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		h.t.Fatalf("GET %s: status %d (%s), want %d", path, resp.StatusCode, bytes.TrimSpace(b), want)
	}
	return resp
}

// post POSTs a JSON body to /in-progress or /delete.
func (h *dfHarness) post(path, body string) (int, map[string]any) {
	h.t.Helper()
	resp := h.do(nil, http.MethodPost, h.ts.URL+path, []byte(body), nil)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	var m map[string]any
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &m); err != nil {
			h.t.Fatalf("POST %s: %v: %q", path, err, b)
		}
	}
	return resp.StatusCode, m
}

// inProgress asks /in-progress about an upstream URL.
func (h *dfHarness) inProgress(upURL string) map[string]any {
	h.t.Helper()
	b, _ := json.Marshal(map[string]string{"url": upURL})
	st, m := h.post("/in-progress", string(b))
	if st != http.StatusOK {
		h.t.Fatalf("in-progress: status %d", st)
	}
	return m
}

// wantStatus waits until /in-progress reports the state for upURL (a
// reader detaches a moment after its client has the last byte).
func (h *dfHarness) wantStatus(upURL string, inProgress bool, conns float64, completed bool) {
	h.t.Helper()
	deadline := time.Now().Add(dfWait)
	for {
		m := h.inProgress(upURL)
		if _, ok := m["chunksStored"].(float64); !ok {
			h.t.Fatalf("in-progress = %v: no chunksStored", m)
		}
		if m["inProgress"] == inProgress && m["activeConnections"] == conns && m["completed"] == completed {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("in-progress = %v, want inProgress %v, activeConnections %v, completed %v", m, inProgress, conns, completed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStored waits until the fetch of key has stored n bytes.
func (h *dfHarness) waitStored(key string, n int) *fetch.Fetch {
	h.t.Helper()
	deadline := time.Now().Add(dfWait)
	for {
		f, err := h.mgr.ByKey(key)
		if err == nil && f.Bytes >= int64(n) {
			return f
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("fetch %s: %d bytes not stored in time (%v, %v)", key, n, f, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitFor polls cond.
func dfWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(dfWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// readExactly reads n bytes of a response body.
func dfReadN(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// readCut reads a body that must end in an error, not a clean end.
func dfReadCut(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err == nil {
		t.Fatalf("body of %d bytes ended normally; want it cut (an error)", len(b))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("body hung until the deadline: %v", err)
	}
	return b
}

func dfReadAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("body: %v after %d bytes", err, len(b))
	}
	return b
}

func dfBothSchemes(t *testing.T, f func(t *testing.T, tls bool)) {
	t.Run("http", func(t *testing.T) { f(t, false) })
	t.Run("https", func(t *testing.T) { f(t, true) })
}

func dfScheme(tls bool) string {
	if tls {
		return "https://"
	}
	return "http://"
}

// A client disconnects mid-stream; the fetch goes on; another request
// replays everything stored and follows the rest, nothing lost or doubled.
func TestDurableFetchReplayAfterDisconnect(t *testing.T) {
	dfBothSchemes(t, func(t *testing.T, tls bool) {
		up := newDFUpstream(t, tls, 8, func(u *dfUpstream) { u.gate = make(chan struct{}) })
		h := newDFHarness(t, dfOptions{tls: tls, up: up})
		key := dfScheme(tls) + up.hostPath("/chat?id=1")

		ctxA, cancelA := context.WithCancel(context.Background())
		defer cancelA()
		a := h.get(ctxA, up, "/chat?id=1", http.StatusOK)
		id := a.Header.Get(server.HeaderDurableFetchID)
		if id == "" || a.Header.Get(server.HeaderDurableFetchOffset) != "0" {
			t.Fatalf("headers %v: want %s and %s: 0", a.Header, server.HeaderDurableFetchID, server.HeaderDurableFetchOffset)
		}
		if ct := a.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		up.release(t, 3)
		if got := dfReadN(t, a.Body, len(dfBody(3))); !bytes.Equal(got, dfBody(3)) {
			t.Fatalf("first reader got %q", got)
		}
		cancelA() // the tab is closed
		up.release(t, 2)
		h.waitStored(key, len(dfBody(5)))
		dfWaitFor(t, "the first reader to detach", func() bool { return h.mgr.Readers(id) == 0 })

		b := h.get(nil, up, "/chat?id=1", http.StatusOK)
		if b.Header.Get(server.HeaderDurableFetchID) != id {
			t.Fatalf("second request joined fetch %q, want %q", b.Header.Get(server.HeaderDurableFetchID), id)
		}
		if got := dfReadN(t, b.Body, len(dfBody(5))); !bytes.Equal(got, dfBody(5)) {
			t.Fatalf("replay = %q, want %q", got, dfBody(5))
		}
		up.release(t, 3)
		if got := dfReadAll(t, b.Body); !bytes.Equal(got, dfBody(8)[len(dfBody(5)):]) {
			t.Fatalf("live tail = %q", got)
		}
		if n := up.calls.Load(); n != 1 {
			t.Fatalf("upstream called %d times", n)
		}
		// Finished: served whole, with its length.
		c := h.get(nil, up, "/chat?id=1", http.StatusOK)
		if c.ContentLength != int64(len(dfBody(8))) {
			t.Fatalf("complete response: Content-Length %d", c.ContentLength)
		}
		if got := dfReadAll(t, c.Body); !bytes.Equal(got, dfBody(8)) {
			t.Fatalf("complete replay = %q", got)
		}
	})
}

// Two clients reading one live fetch get identical bytes.
func TestDurableFetchConcurrentReadersIdentical(t *testing.T) {
	dfBothSchemes(t, func(t *testing.T, tls bool) {
		up := newDFUpstream(t, tls, 60, func(u *dfUpstream) { u.every = 3 * time.Millisecond })
		h := newDFHarness(t, dfOptions{tls: tls, up: up})
		var wg sync.WaitGroup
		bodies := make([][]byte, 2)
		errs := make([]error, 2)
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), dfWait)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url(up, "/sse"), nil)
				resp, err := h.hc.Do(req)
				if err != nil {
					errs[i] = err
					return
				}
				defer resp.Body.Close()
				bodies[i], errs[i] = io.ReadAll(resp.Body)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("reader %d: %v", i, err)
			}
		}
		if !bytes.Equal(bodies[0], bodies[1]) || !bytes.Equal(bodies[0], dfBody(60)) {
			t.Fatalf("readers got %d and %d bytes, want %d identical", len(bodies[0]), len(bodies[1]), len(dfBody(60)))
		}
		if n := up.calls.Load(); n != 1 {
			t.Fatalf("upstream called %d times", n)
		}
	})
}

// Concurrent first requests for one key make one upstream call; so do all
// the later ones.
func TestDurableFetchUpstreamCalledOncePerKey(t *testing.T) {
	up := newDFUpstream(t, false, 5, func(u *dfUpstream) { u.headerDelay = 150 * time.Millisecond })
	h := newDFHarness(t, dfOptions{up: up})
	const n = 12
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), dfWait)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url(up, "/job?k=1"), strings.NewReader(`{"q":1}`))
			resp, err := h.hc.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs[i] = err
			case resp.StatusCode != http.StatusOK || !bytes.Equal(b, dfBody(5)):
				errs[i] = fmt.Errorf("status %d, body %q", resp.StatusCode, b)
			}
			ids[i] = resp.Header.Get(server.HeaderDurableFetchID)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if ids[i] != ids[0] {
			t.Fatalf("request %d joined fetch %s, request 0 %s", i, ids[i], ids[0])
		}
	}
	dfReadAll(t, h.get(nil, up, "/job?k=1", http.StatusOK).Body)
	if c := up.calls.Load(); c != 1 {
		t.Fatalf("upstream called %d times for one key", c)
	}
	// Another key is another fetch.
	dfReadAll(t, h.get(nil, up, "/job?k=2", http.StatusOK).Body)
	if c := up.calls.Load(); c != 2 {
		t.Fatalf("upstream called %d times for two keys", c)
	}
}

// A non-2xx answer goes to its caller and is not kept: the next request
// calls the upstream again.
func TestDurableFetchNon2xxNotKept(t *testing.T) {
	up := newDFUpstream(t, false, 3, func(u *dfUpstream) {
		u.status = func(n int64) int {
			if n == 1 {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		}
	})
	h := newDFHarness(t, dfOptions{up: up})
	resp := h.get(nil, up, "/x", http.StatusServiceUnavailable)
	if b := dfReadAll(t, resp.Body); string(b) != "upstream says 503" {
		t.Fatalf("error body %q", b)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get(server.HeaderDurableFetchID) != "" {
		t.Fatalf("error headers %v", resp.Header)
	}
	if got := dfReadAll(t, h.get(nil, up, "/x", http.StatusOK).Body); !bytes.Equal(got, dfBody(3)) {
		t.Fatalf("second request: %q", got)
	}
	dfReadAll(t, h.get(nil, up, "/x", http.StatusOK).Body)
	if c := up.calls.Load(); c != 2 {
		t.Fatalf("upstream called %d times, want 2", c)
	}
}

// POST /delete stops the running upstream request, cuts its readers and
// forgets the URL.
func TestDurableFetchDeleteStopsUpstream(t *testing.T) {
	up := newDFUpstream(t, false, 5, func(u *dfUpstream) { u.gate = make(chan struct{}) })
	h := newDFHarness(t, dfOptions{up: up})
	upURL := "http://" + up.hostPath("/chat?id=del")
	a := h.get(nil, up, "/chat?id=del", http.StatusOK)
	up.release(t, 1)
	dfReadN(t, a.Body, len(dfBody(1)))

	b, _ := json.Marshal(map[string]string{"url": upURL})
	st, m := h.post("/delete", string(b))
	if st != http.StatusOK || m["success"] != true || m["message"] == "" {
		t.Fatalf("delete: %d %v", st, m)
	}
	up.waitGone(t)
	dfReadCut(t, a.Body)
	h.wantStatus(upURL, false, 0, false)
	if _, err := h.mgr.ByKey(upURL); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	// Deleting again succeeds; the next request is a new upstream call.
	if st, m := h.post("/delete", string(b)); st != http.StatusOK || m["success"] != true {
		t.Fatalf("second delete: %d %v", st, m)
	}
	c := h.get(nil, up, "/chat?id=del", http.StatusOK)
	up.release(t, 5)
	if got := dfReadAll(t, c.Body); !bytes.Equal(got, dfBody(5)) {
		t.Fatalf("after delete: %q", got)
	}
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("upstream called %d times", n)
	}
}

// POST /in-progress reports a fetch's state, and refuses bad input.
func TestDurableFetchInProgress(t *testing.T) {
	up := newDFUpstream(t, false, 3, func(u *dfUpstream) { u.gate = make(chan struct{}) })
	h := newDFHarness(t, dfOptions{up: up})
	upURL := "http://" + up.hostPath("/sse?n=3")
	h.wantStatus(upURL, false, 0, false)

	a := h.get(nil, up, "/sse?n=3", http.StatusOK)
	up.release(t, 1)
	dfReadN(t, a.Body, len(dfBody(1)))
	// (the reader may see the bytes a moment before the append returns)
	dfWaitFor(t, "chunksStored 1", func() bool { return h.inProgress(upURL)["chunksStored"].(float64) == 1 })
	h.wantStatus(upURL, true, 1, false)
	up.release(t, 2)
	dfReadAll(t, a.Body)
	dfWaitFor(t, "the fetch to end", func() bool { return !h.inProgress(upURL)["inProgress"].(bool) })
	dfWaitFor(t, "the reader to detach", func() bool { return h.inProgress(upURL)["activeConnections"].(float64) == 0 })
	h.wantStatus(upURL, false, 0, true)
	// The same URL however the client spells the scheme and fragment.
	h.wantStatus("HTTP://"+up.hostPath("/sse?n=3#frag"), false, 0, true)

	for _, body := range []string{``, `not json`, `{}`, `{"url": 5}`, `{"url": ""}`, `{"url":"ftp://example.com/x"}`, `{"url":"https:///x"}`, `[1]`} {
		for _, path := range []string{"/in-progress", "/delete"} {
			resp := h.do(nil, http.MethodPost, h.ts.URL+path, []byte(body), nil)
			msg := dfReadAll(t, resp.Body)
			if resp.StatusCode != http.StatusBadRequest || len(bytes.TrimSpace(msg)) == 0 {
				t.Errorf("POST %s %q: %d %q, want 400 with a message", path, body, resp.StatusCode, msg)
			}
		}
	}
}

// A stored response lives for a sliding TTL since its last use.
func TestDurableFetchTTL(t *testing.T) {
	eng, clock := testkit.ClockEngine(t)
	advance := clock.Advance
	up := newDFUpstream(t, false, 3, nil)
	h := newDFHarness(t, dfOptions{up: up, eng: eng, fetch: func(c *fetch.Config) { c.TTL = time.Hour }})
	upURL := "http://" + up.hostPath("/ttl")
	dfReadAll(t, h.get(nil, up, "/ttl", http.StatusOK).Body)
	dfWaitFor(t, "completion", func() bool { return h.inProgress(upURL)["completed"] == true })

	advance(40 * time.Minute)
	dfReadAll(t, h.get(nil, up, "/ttl", http.StatusOK).Body) // renews
	advance(40 * time.Minute)                                // 80 min since creation, 40 since use
	if got := dfReadAll(t, h.get(nil, up, "/ttl", http.StatusOK).Body); !bytes.Equal(got, dfBody(3)) {
		t.Fatalf("within the TTL: %q", got)
	}
	if c := up.calls.Load(); c != 1 {
		t.Fatalf("upstream called %d times within the TTL", c)
	}
	advance(61 * time.Minute)
	h.wantStatus(upURL, false, 0, false)
	dfReadAll(t, h.get(nil, up, "/ttl", http.StatusOK).Body)
	if c := up.calls.Load(); c != 2 {
		t.Fatalf("upstream called %d times after expiry, want 2", c)
	}
}

// Polling /in-progress for longer than the TTL (the durablefetch worker
// renews on it too) keeps the body as well as the record: a later GET
// replays it whole. A record whose body is gone is nothing stored: it is
// deleted and the next request calls the upstream again.
func TestDurableFetchTTLInProgressKeepsBody(t *testing.T) {
	eng, clock := testkit.ClockEngine(t)
	advance := clock.Advance
	up := newDFUpstream(t, false, 3, nil)
	h := newDFHarness(t, dfOptions{up: up, eng: eng, fetch: func(c *fetch.Config) { c.TTL = time.Hour }})
	upURL := "http://" + up.hostPath("/poll")
	dfReadAll(t, h.get(nil, up, "/poll", http.StatusOK).Body)
	h.wantStatus(upURL, false, 0, true)
	for range 5 {
		advance(40 * time.Minute)
		h.wantStatus(upURL, false, 0, true)
	}
	if got := dfReadAll(t, h.get(nil, up, "/poll", http.StatusOK).Body); !bytes.Equal(got, dfBody(3)) {
		t.Fatalf("after 200 minutes of polling: %q", got)
	}
	if c := up.calls.Load(); c != 1 {
		t.Fatalf("upstream called %d times while polled, want 1", c)
	}

	f, err := h.mgr.ByKey(upURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Delete(context.Background(), f.Body); err != nil {
		t.Fatal(err)
	}
	h.wantStatus(upURL, false, 0, false)
	if _, err := eng.Head(f.Meta); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("the record of a fetch without a body: %v, want it deleted", err)
	}
	if got := dfReadAll(t, h.get(nil, up, "/poll", http.StatusOK).Body); !bytes.Equal(got, dfBody(3)) {
		t.Fatalf("refetched: %q", got)
	}
	if c := up.calls.Load(); c != 2 {
		t.Fatalf("upstream called %d times, want 2", c)
	}
}

// An upstream that runs for longer than the TTL, followed by a live reader
// and looked up by nobody, keeps its record: the reader's body ends
// normally, and the next request replays it without calling the upstream.
func TestDurableFetchTTLLongUpstream(t *testing.T) {
	eng, clock := testkit.ClockEngine(t)
	advance := clock.Advance
	const events = 6
	up := newDFUpstream(t, false, events, func(u *dfUpstream) { u.gate = make(chan struct{}) })
	h := newDFHarness(t, dfOptions{up: up, eng: eng, fetch: func(c *fetch.Config) { c.TTL = time.Hour }})
	upURL := "http://" + up.hostPath("/long")
	resp := h.get(nil, up, "/long", http.StatusOK)
	var got []byte
	for i := range events { // 120 minutes, an event every 20
		advance(20 * time.Minute)
		up.release(t, 1)
		got = append(got, dfReadN(t, resp.Body, len(dfEvent(i)))...)
	}
	if got = append(got, dfReadAll(t, resp.Body)...); !bytes.Equal(got, dfBody(events)) {
		t.Fatalf("live reader: %q", got)
	}
	h.wantStatus(upURL, false, 0, true)
	if got := dfReadAll(t, h.get(nil, up, "/long", http.StatusOK).Body); !bytes.Equal(got, dfBody(events)) {
		t.Fatalf("replay: %q", got)
	}
	if c := up.calls.Load(); c != 1 {
		t.Fatalf("upstream called %d times, want 1", c)
	}
}

// A response that takes longer than the TTL to send (its client reads
// slowly) keeps the fetch's record as well as its body: the next request
// replays the stored body and does not call the upstream again.
func TestDurableFetchTTLSlowReader(t *testing.T) {
	eng, clock := testkit.ClockEngine(t)
	advance := clock.Advance
	const size = 2 << 20
	big := &dfUpstream{}
	big.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		big.calls.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(bytes.Repeat([]byte("x"), size))
	}))
	t.Cleanup(big.ts.Close)
	h := newDFHarness(t, dfOptions{up: big, eng: eng, smallBuffers: true,
		fetch:  func(c *fetch.Config) { c.TTL = time.Hour },
		config: func(c *server.DurableFetchConfig) { c.ReadChunkBytes = 16 << 10 }})
	upURL := "http://" + big.hostPath("/big")
	dfReadAll(t, h.get(nil, big, "/big", http.StatusOK).Body)
	h.wantStatus(upURL, false, 0, true)

	// The server sends a few hundred KiB ahead of the client (small socket
	// buffers): it reads the body as the client reads.
	resp := h.get(nil, big, "/big", http.StatusOK)
	dfReadN(t, resp.Body, 1)
	advance(40 * time.Minute)
	dfReadN(t, resp.Body, size/2)
	advance(40 * time.Minute) // 80 minutes since the request
	if n := len(dfReadAll(t, resp.Body)); n != size/2-1 {
		t.Fatalf("slow reader: the last %d bytes, want %d", n, size/2-1)
	}
	if n := len(dfReadAll(t, h.get(nil, big, "/big", http.StatusOK).Body)); n != size {
		t.Fatalf("replay: %d bytes, want %d", n, size)
	}
	if c := big.calls.Load(); c != 1 {
		t.Fatalf("upstream called %d times, want 1", c)
	}
}

// Logged upstream URLs carry no query (a durablefetch key's query is often
// the secret that names the fetch) and no userinfo.
func TestDurableFetchLogsNoQuery(t *testing.T) {
	logs := &testkit.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	h := newDFHarness(t, dfOptions{fetch: func(c *fetch.Config) { c.Logger = logger },
		config: func(c *server.DurableFetchConfig) { c.Logger = logger }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // an allowed upstream that refuses connections
	resp := h.do(nil, http.MethodGet, h.ts.URL+"/"+addr+"/chat?key=s3cret-key", nil, nil)
	dfReadAll(t, resp.Body)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	out := logs.String()
	if !strings.Contains(out, "upstream failed") || !strings.Contains(out, "http://"+addr+"/chat") {
		t.Fatalf("logs name no upstream URL:\n%s", out)
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "key=") {
		t.Fatalf("logs carry the URL's query:\n%s", out)
	}
}

// An upstream that goes quiet for the idle timeout ends the fetch: readers
// get what was stored, then a cut body.
func TestDurableFetchIdleTimeout(t *testing.T) {
	up := newDFUpstream(t, false, 5, func(u *dfUpstream) { u.stall = true })
	h := newDFHarness(t, dfOptions{up: up, fetch: func(c *fetch.Config) { c.IdleTimeout = 300 * time.Millisecond }})
	upURL := "http://" + up.hostPath("/quiet")
	start := time.Now()
	got := dfReadCut(t, h.get(nil, up, "/quiet", http.StatusOK).Body)
	if !bytes.Equal(got, dfBody(1)) {
		t.Fatalf("before the cut: %q", got)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("cut after %v, before the idle timeout", el)
	}
	up.waitGone(t)
	h.wantStatus(upURL, false, 0, false)
	if m := h.inProgress(upURL); m["outcome"] != "idle-timeout" || m["bytesStored"] != float64(len(dfBody(1))) {
		t.Fatalf("in-progress %v: want outcome idle-timeout and the bytes stored", m)
	}
	f, err := h.mgr.ByKey(upURL)
	if err != nil || f.Outcome != fetch.IdleTimeout {
		t.Fatalf("fetch %v, %v: want outcome %s", f, err, fetch.IdleTimeout)
	}
	// A later reader gets the same, at once.
	if got := dfReadCut(t, h.get(nil, up, "/quiet", http.StatusOK).Body); !bytes.Equal(got, dfBody(1)) {
		t.Fatalf("replay before the cut: %q", got)
	}
}

// The allowlist refuses unlisted URLs, and loopback is refused unless a
// pattern names its address, even when a name that resolves to it is
// listed.
func TestDurableFetchAllowlist(t *testing.T) {
	up := newDFUpstream(t, false, 2, nil)
	_, port, _ := strings.Cut(up.hostPath(""), ":")
	h := newDFHarness(t, dfOptions{up: up, allow: []string{
		"http://127.0.0.1:" + port + "/allowed/**",
		"http://localhost:*/**",
	}})
	dfReadAll(t, h.get(nil, up, "/allowed/x", http.StatusOK).Body)
	for _, target := range []string{
		"/127.0.0.1:" + port + "/other",
		"/localhost:" + port + "/allowed/x", // listed by name, but resolves to loopback
		"/127.0.0.2:" + port + "/allowed/x",
		"/169.254.169.254/latest/meta-data",
	} {
		resp := h.do(nil, http.MethodGet, h.ts.URL+target, nil, nil)
		msg := dfReadAll(t, resp.Body)
		if resp.StatusCode != http.StatusForbidden || !bytes.Contains(msg, []byte("not allowed")) {
			t.Errorf("GET %s: %d %q, want 403 not allowed", target, resp.StatusCode, msg)
		}
	}
	if c := up.calls.Load(); c != 1 {
		t.Fatalf("upstream called %d times", c)
	}
	// With no patterns nothing is allowed.
	h2 := newDFHarness(t, dfOptions{up: up, allow: []string{}})
	resp := h2.get(nil, up, "/allowed/x", http.StatusForbidden)
	dfReadAll(t, resp.Body)
}

// Durable-Fetch-Offset resumes a body at a byte offset, on a finished
// fetch and on a running one.
func TestDurableFetchOffsetResume(t *testing.T) {
	dfBothSchemes(t, func(t *testing.T, tls bool) {
		up := newDFUpstream(t, tls, 6, func(u *dfUpstream) { u.gate = make(chan struct{}) })
		h := newDFHarness(t, dfOptions{tls: tls, up: up})
		full := dfBody(6)
		n := len(dfBody(2))

		ctxA, cancelA := context.WithCancel(context.Background())
		defer cancelA()
		a := h.get(ctxA, up, "/r", http.StatusOK)
		up.release(t, 2)
		dfReadN(t, a.Body, n)
		cancelA()

		at := func(off string) *http.Response {
			return h.do(nil, http.MethodGet, h.url(up, "/r"), nil, http.Header{server.HeaderDurableFetchOffset: {off}})
		}
		b := at(strconv.Itoa(n))
		if b.StatusCode != http.StatusOK || b.Header.Get(server.HeaderDurableFetchOffset) != strconv.Itoa(n) {
			t.Fatalf("resume: %d %v", b.StatusCode, b.Header)
		}
		up.release(t, 4)
		if got := dfReadAll(t, b.Body); !bytes.Equal(got, full[n:]) {
			t.Fatalf("resumed live = %q, want %q", got, full[n:])
		}
		c := at("7")
		if got := dfReadAll(t, c.Body); c.StatusCode != http.StatusOK || !bytes.Equal(got, full[7:]) || c.ContentLength != int64(len(full)-7) {
			t.Fatalf("resumed complete: %d, %d bytes, Content-Length %d", c.StatusCode, len(got), c.ContentLength)
		}
		if c := at(strconv.Itoa(len(full))); c.StatusCode != http.StatusOK || len(dfReadAll(t, c.Body)) != 0 {
			t.Fatalf("at the end: %d", c.StatusCode)
		}
		for off, want := range map[string]int{strconv.Itoa(len(full) + 1): http.StatusRequestedRangeNotSatisfiable, "x": 400, "-1": 400, "1.5": 400} {
			resp := at(off)
			if msg := dfReadAll(t, resp.Body); resp.StatusCode != want || len(msg) == 0 {
				t.Errorf("offset %q: %d %q, want %d", off, resp.StatusCode, msg, want)
			}
		}
		if c := up.calls.Load(); c != 1 {
			t.Fatalf("upstream called %d times", c)
		}
	})
}

// A fetch the server stopped in the middle of (Manager.Close, as at
// shutdown) is interrupted: a new manager over the same engine serves what
// was stored and then cuts the body; in-progress says neither in progress
// nor completed. Nothing refetches it.
func TestDurableFetchInterrupted(t *testing.T) {
	up := newDFUpstream(t, false, 5, func(u *dfUpstream) { u.gate = make(chan struct{}) })
	h := newDFHarness(t, dfOptions{up: up})
	upURL := "http://" + up.hostPath("/long")
	a := h.get(nil, up, "/long", http.StatusOK)
	up.release(t, 2)
	dfReadN(t, a.Body, len(dfBody(2)))
	h.waitStored(upURL, len(dfBody(2)))
	h.close() // the server stops
	up.waitGone(t)
	if got := dfReadCut(t, a.Body); len(got) != 0 {
		t.Fatalf("after shutdown the reader got %q more", got)
	}

	h2 := newDFHarness(t, dfOptions{up: up, eng: h.eng})
	got := dfReadCut(t, h2.get(nil, up, "/long", http.StatusOK).Body)
	if !bytes.Equal(got, dfBody(2)) {
		t.Fatalf("interrupted replay %q", got)
	}
	h2.wantStatus(upURL, false, 0, false)
	if m := h2.inProgress(upURL); m["outcome"] != "interrupted" || m["bytesStored"] != float64(len(dfBody(2))) {
		t.Fatalf("in-progress %v: want outcome interrupted and the bytes stored", m)
	}
	if c := up.calls.Load(); c != 1 {
		t.Fatalf("upstream called %d times", c)
	}
}

// Across a real restart of a durable engine: a completed response is
// replayed byte for byte; one interrupted by the restart is served cut.
func TestDurableFetchRestart(t *testing.T) {
	dir := t.TempDir()
	eng, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	up := newDFUpstream(t, false, 4, func(u *dfUpstream) { u.gate = make(chan struct{}) })
	h := newDFHarness(t, dfOptions{up: up, eng: eng})
	done := h.get(nil, up, "/done", http.StatusOK)
	up.release(t, 4)
	dfReadAll(t, done.Body)
	dfWaitFor(t, "completion", func() bool { return h.inProgress("http://" + up.hostPath("/done"))["completed"] == true })
	cut := h.get(nil, up, "/cut", http.StatusOK)
	up.release(t, 1)
	dfReadN(t, cut.Body, len(dfBody(1)))
	h.close()
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}

	eng2, err := engine.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng2.Close() })
	h2 := newDFHarness(t, dfOptions{up: up, eng: eng2})
	resp := h2.get(nil, up, "/done", http.StatusOK)
	if got := dfReadAll(t, resp.Body); !bytes.Equal(got, dfBody(4)) || resp.ContentLength != int64(len(got)) {
		t.Fatalf("completed after restart: %q (Content-Length %d)", got, resp.ContentLength)
	}
	if got := dfReadCut(t, h2.get(nil, up, "/cut", http.StatusOK).Body); !bytes.Equal(got, dfBody(1)) {
		t.Fatalf("interrupted after restart: %q", got)
	}
	h2.wantStatus("http://"+up.hostPath("/cut"), false, 0, false)
	h2.wantStatus("http://"+up.hostPath("/done"), false, 0, true)
	if c := up.calls.Load(); c != 2 {
		t.Fatalf("upstream called %d times", c)
	}
}

// The request that starts a fetch gives the upstream call its method,
// body, end-to-end headers and exact query; credentials are used and not
// stored; only the stored header set is replayed.
func TestDurableFetchRequestMapping(t *testing.T) {
	up := newDFUpstream(t, false, 2, nil)
	h := newDFHarness(t, dfOptions{up: up})
	const q = "/v1/chat?b=2&a=1&sp=%20x&e=&u=%C3%A9"
	resp := h.do(nil, http.MethodPost, h.url(up, q), []byte(`{"prompt":"hi"}`), http.Header{
		"Authorization":                 {"Bearer s3cret"},
		"Cookie":                        {"c=1"},
		"X-Custom":                      {"yes"},
		"Upstream-Authorization":        {"Bearer smuggled"},
		server.HeaderDurableFetchOffset: {"0"},
		"Content-Type":                  {"application/json"},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	dfReadAll(t, resp.Body)
	r, body := up.lastRequest()
	switch {
	case r.Method != http.MethodPost || string(body) != `{"prompt":"hi"}`:
		t.Fatalf("upstream got %s %q", r.Method, body)
	case r.URL.RawQuery != "b=2&a=1&sp=%20x&e=&u=%C3%A9" || r.URL.Path != "/v1/chat":
		t.Fatalf("upstream got %s?%s", r.URL.Path, r.URL.RawQuery)
	case r.Header.Get("Authorization") != "Bearer s3cret" || r.Header.Get("Cookie") != "c=1" || r.Header.Get("X-Custom") != "yes":
		t.Fatalf("upstream headers %v", r.Header)
	case r.Header.Get(server.HeaderDurableFetchOffset) != "" || r.Header.Get("Upstream-Authorization") != "":
		t.Fatalf("front-door headers forwarded: %v", r.Header)
	}
	for _, resp := range []*http.Response{resp, h.get(nil, up, q, http.StatusOK)} {
		if resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("X-Internal") != "" || resp.Header.Get("X-Request-Id") != "req-1" ||
			resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("response headers %v", resp.Header)
		}
	}
	f, err := h.mgr.ByKey("http://" + up.hostPath(q))
	if err != nil {
		t.Fatalf("key by the exact URL: %v", err)
	}
	if strings.Contains(fmt.Sprint(f.Header), "s3cret") {
		t.Fatalf("stored headers %v", f.Header)
	}
	// The same fetch by the URL in /in-progress, however the port and host are spelt.
	h.wantStatus("http://"+strings.ToUpper(up.hostPath(""))+q, false, 0, true)
}

// X-Forwarded-Proto names the upstream scheme only when trusted.
func TestDurableFetchForwardedProto(t *testing.T) {
	up := newDFUpstream(t, true, 2, nil)
	trusted := newDFHarness(t, dfOptions{up: up, config: func(c *server.DurableFetchConfig) { c.TrustForwardedProto = true }})
	resp := trusted.do(nil, http.MethodGet, trusted.url(up, "/p"), nil, http.Header{"X-Forwarded-Proto": {"https"}})
	if got := dfReadAll(t, resp.Body); resp.StatusCode != http.StatusOK || !bytes.Equal(got, dfBody(2)) {
		t.Fatalf("trusted X-Forwarded-Proto: %d %q", resp.StatusCode, got)
	}
	if _, err := trusted.mgr.ByKey("https://" + up.hostPath("/p")); err != nil {
		t.Fatalf("key: %v", err)
	}
	untrusted := newDFHarness(t, dfOptions{up: up})
	resp = untrusted.do(nil, http.MethodGet, untrusted.url(up, "/p"), nil, http.Header{"X-Forwarded-Proto": {"https"}})
	dfReadAll(t, resp.Body)
	if resp.StatusCode == http.StatusOK {
		t.Fatal("untrusted X-Forwarded-Proto was honoured")
	}
	if _, err := untrusted.mgr.ByKey("https://" + up.hostPath("/p")); err == nil {
		t.Fatal("untrusted X-Forwarded-Proto made an https key")
	}
}

// Each failure is a status with a short message; CORS everywhere.
func TestDurableFetchErrors(t *testing.T) {
	up := newDFUpstream(t, false, 3, func(u *dfUpstream) { u.gate = make(chan struct{}) })
	slow := newDFUpstream(t, false, 1, func(u *dfUpstream) { u.headerDelay = 5 * time.Second })
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	h := newDFHarness(t, dfOptions{up: up,
		fetch: func(c *fetch.Config) {
			c.HeaderTimeout = 200 * time.Millisecond
			c.MaxConcurrent = 1
		},
		config: func(c *server.DurableFetchConfig) { c.MaxRequestBodyBytes = 16 }})

	check := func(method, target string, body []byte, want int, msg string) *http.Response {
		t.Helper()
		resp := h.do(nil, method, h.ts.URL+target, body, nil)
		got := dfReadAll(t, resp.Body)
		if resp.StatusCode != want || !bytes.Contains(got, []byte(msg)) {
			t.Errorf("%s %s: %d %q, want %d %q", method, target, resp.StatusCode, got, want, msg)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s %s: no CORS headers: %v", method, target, resp.Header)
		}
		return resp
	}
	check(http.MethodGet, "/", nil, 400, "missing upstream host")
	check(http.MethodGet, "/"+up.hostPath("/a//b"), nil, 400, "empty segment")
	check(http.MethodGet, "/user@"+up.hostPath("/a"), nil, 400, "malformed upstream host")
	check(http.MethodGet, "/"+up.hostPath("/redirect"), nil, 502, "redirect")
	check(http.MethodPut, "/"+up.hostPath("/big"), bytes.Repeat([]byte("x"), 17), 413, "larger than 16 bytes")
	check(http.MethodGet, "/"+slow.hostPath("/slow"), nil, 504, "in time")
	check(http.MethodGet, "/"+strings.TrimPrefix(downURL, "http://")+"/x", nil, 502, "upstream request failed")
	check(http.MethodHead, "/"+up.hostPath("/never"), nil, 404, "")
	check(http.MethodConnect, "/"+up.hostPath("/x"), nil, 400, "")
	if c := up.calls.Load(); c != 1 { // the redirect
		t.Fatalf("upstream called %d times", c)
	}

	// Busy: one fetch at a time.
	running := h.get(nil, up, "/running", http.StatusOK)
	resp := check(http.MethodGet, "/"+up.hostPath("/second"), nil, 503, "too many")
	if resp.Header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", resp.Header)
	}
	up.release(t, 3)
	dfReadAll(t, running.Body)

	// Preflight.
	resp = h.do(nil, http.MethodOptions, h.ts.URL+"/"+up.hostPath("/x"), nil, http.Header{
		"Origin": {"https://app.example"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization"}})
	dfReadAll(t, resp.Body)
	want := map[string]string{
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Allow-Methods":  "GET, POST, PUT, DELETE, OPTIONS, HEAD, PATCH",
		"Access-Control-Allow-Headers":  "*",
		"Access-Control-Expose-Headers": "*",
		"Access-Control-Max-Age":        "86400",
	}
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight: %d", resp.StatusCode)
	}
	for k, v := range want {
		if resp.Header.Get(k) != v {
			t.Errorf("preflight %s = %q, want %q", k, resp.Header.Get(k), v)
		}
	}
}

// A response cut at the largest stored response is served cut; HEAD
// answers with the headers; Shutdown cuts the responses following a live
// fetch instead of leaving them hanging.
func TestDurableFetchTooLargeHeadAndShutdown(t *testing.T) {
	up := newDFUpstream(t, false, 20, nil)
	// (before the harness: cleanups run last-first, and the manager must
	// stop the gated request before its server can close)
	gated := newDFUpstream(t, false, 3, func(u *dfUpstream) { u.gate = make(chan struct{}) })
	h := newDFHarness(t, dfOptions{up: up, fetch: func(c *fetch.Config) { c.MaxResponseBytes = 50 }})
	if got := dfReadCut(t, h.get(nil, up, "/big", http.StatusOK).Body); !bytes.Equal(got, dfBody(20)[:50]) {
		t.Fatalf("too large: %q", got)
	}
	f, err := h.mgr.ByKey("http://" + up.hostPath("/big"))
	if err != nil || f.Outcome != fetch.TooLarge {
		t.Fatalf("fetch %v, %v", f, err)
	}
	head := h.do(nil, http.MethodHead, h.url(up, "/big"), nil, nil)
	if head.StatusCode != http.StatusOK || head.Header.Get(server.HeaderDurableFetchID) != f.ID || head.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("HEAD: %d %v", head.StatusCode, head.Header)
	}

	live := h.get(nil, gated, "/live", http.StatusOK)
	gated.release(t, 1)
	dfReadN(t, live.Body, len(dfBody(1)))
	h.df.Shutdown()
	if got := dfReadCut(t, live.Body); len(got) != 0 {
		t.Fatalf("after Shutdown: %q", got)
	}
}
