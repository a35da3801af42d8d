package crashtest

// Durable fetch records in the crash torture (TestHTTPCrashTorture and
// TestHTTPPowerLossTorture). Every round, fetch workers drive both front
// doors against an upstream in the test process whose bodies are a
// function of their URL:
//
//   - the durablefetch door (--fetch-addr): new fetches, read whole or
//     dropped part way; replays and resumes (Durable-Fetch-Offset) of
//     earlier ones; deletes of complete ones (POST /delete);
//   - the proxy protocol (/v1/proxy): new streams, followed with long-polls;
//     deletes.
//
// After every restart the verifier checks each fetch whose response headers
// (door) or 201 (proxy) a client got:
//
//   - it is still there, under the same id, and serving it calls the
//     upstream no more;
//   - it is settled: /in-progress says not in progress; the proxy stream is
//     closed with outcome complete or interrupted;
//   - its body holds every byte a reader saw, is a prefix of the upstream's
//     body, and is presented as complete (the door's body ends cleanly,
//     /in-progress says completed, the proxy outcome is complete) exactly
//     when it is the whole upstream body; a fetch a reader saw complete is
//     complete; an interrupted body is cut (an error the client sees), and
//     nothing hangs;
//   - once settled it never changes: later rounds serve the same bytes the
//     same way;
//   - an acknowledged delete holds (/in-progress: not completed; proxy: 404).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	fetchWorkers     = 2
	tortureProxyKey  = "torture-proxy-secret"
	fetchReadTimeout = 15 * time.Second
)

// fetchUpstream serves /t/{name}?n=N&d=D: N SSE tokens named after name,
// one flush each, D microseconds apart. It counts the calls per URL.
type fetchUpstream struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls map[string]int
}

func newFetchUpstream() *fetchUpstream {
	u := &fetchUpstream{calls: map[string]int{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	return u
}

func (u *fetchUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.calls[r.URL.RequestURI()]++
	u.mu.Unlock()
	name, ok := strings.CutPrefix(r.URL.Path, "/t/")
	n, err1 := strconv.Atoi(r.URL.Query().Get("n"))
	d, err2 := strconv.Atoi(r.URL.Query().Get("d"))
	if !ok || err1 != nil || err2 != nil {
		http.Error(w, "bad torture upstream URL", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for i := range n {
		w.Write(fetchToken(name, i))
		w.(http.Flusher).Flush()
		if d > 0 {
			select {
			case <-time.After(time.Duration(d) * time.Microsecond):
			case <-r.Context().Done():
				return
			}
		}
	}
}

func (u *fetchUpstream) callsTo(uri string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[uri]
}

func fetchToken(name string, i int) []byte {
	return fmt.Appendf(nil, "data:  %s token %d\n\n", name, i)
}

func fetchBody(name string, n int) []byte {
	var b []byte
	for i := range n {
		b = append(b, fetchToken(name, i)...)
	}
	return b
}

// fetchRec is the model of one fetch. Guarded by model.mu.
type fetchRec struct {
	name  string
	proxy bool
	uri   string // upstream request URI (/t/...)
	want  []byte // the upstream's whole body
	round int

	acked bool   // door: response headers seen; proxy: 201
	id    string // Durable-Fetch-Id, or the proxy stream id
	loc   string // proxy: path and query of the pre-signed Location
	seen  []byte // the longest body prefix a reader saw
	whole bool   // a reader saw the whole body presented as complete

	settled     bool // verified after a restart: stored and final
	final       []byte
	finalWhole  bool
	reading     int // door requests of this acked fetch in flight
	delTried    bool
	deleted     bool
	delVerified bool
}

type fetchStats struct {
	door, proxy, doorAcked, proxyAcked, readsWhole, replays, resumes int
	verifiedWhole, verifiedCut, deletes, deletesVerified             int
}

// fetchLoad is one round's fetch workers.
type fetchLoad struct {
	*load
	up   *fetchUpstream
	door string // http://127.0.0.1:PORT of --fetch-addr
}

func (l *fetchLoad) worker(w int, seed uint64) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(seed, uint64(w)+100))
	for k := 0; !l.killed.Load(); k++ {
		l.m.mu.Lock()
		var doorRecs, proxyRecs, complete []*fetchRec
		for _, f := range l.m.fetches {
			switch {
			case !f.acked || f.deleted || f.delTried:
			case f.proxy:
				proxyRecs = append(proxyRecs, f)
			default:
				doorRecs = append(doorRecs, f)
				if f.whole {
					complete = append(complete, f)
				}
			}
		}
		l.m.mu.Unlock()
		switch x := rng.IntN(100); {
		case x < 40:
			l.doorFetch(rng, l.newFetch(rng, w, k, false))
		case x < 65:
			l.proxyFetch(rng, l.newFetch(rng, w, k, true))
		case x < 85 && len(doorRecs) > 0:
			l.doorFetch(rng, doorRecs[rng.IntN(len(doorRecs))])
		case x < 93 && len(complete) > 3:
			l.doorDelete(complete[rng.IntN(len(complete))])
		case len(proxyRecs) > 3:
			l.proxyDelete(proxyRecs[rng.IntN(len(proxyRecs))])
		}
	}
}

// newFetch adds a fetch of a new upstream URL: 5-300 tokens, sent at once
// or 0.3-2 ms apart, so that kills catch many fetches mid-body.
func (l *fetchLoad) newFetch(rng *rand.Rand, w, k int, proxy bool) *fetchRec {
	name := fmt.Sprintf("r%dw%dk%d", l.round, w, k)
	n := 5 + rng.IntN(296)
	d := []int{0, 300, 1000, 2000}[rng.IntN(4)]
	f := &fetchRec{name: name, proxy: proxy, uri: fmt.Sprintf("/t/%s?n=%d&d=%d", name, n, d),
		want: fetchBody(name, n), round: l.round}
	l.m.mu.Lock()
	l.m.fetches = append(l.m.fetches, f)
	if proxy {
		l.m.st.fetch.proxy++
	} else {
		l.m.st.fetch.door++
	}
	l.m.mu.Unlock()
	return f
}

// doorURL is the durablefetch door's URL of an upstream request URI.
func (l *fetchLoad) doorURL(uri string) string {
	return l.door + "/" + strings.TrimPrefix(l.up.srv.URL, "http://") + uri
}

// doorFetch requests f through the durablefetch door (starting, joining or
// replaying it; sometimes resuming at the bytes already seen) and reads the
// body whole or drops it part way.
//
// A request for an acked fetch and a delete of it never overlap: a request
// that reaches the server after the delete rightly starts a new fetch under
// the key (a new Durable-Fetch-Id), which this model does not follow.
func (l *fetchLoad) doorFetch(rng *rand.Rand, f *fetchRec) {
	l.m.mu.Lock()
	if f.delTried {
		l.m.mu.Unlock()
		return
	}
	f.reading++
	l.m.mu.Unlock()
	defer func() {
		l.m.mu.Lock()
		f.reading--
		l.m.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), fetchReadTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", l.doorURL(f.uri), nil)
	l.m.mu.Lock()
	var from int
	if f.acked && len(f.seen) > 0 && rng.IntN(3) == 0 {
		from = rng.IntN(len(f.seen) + 1)
		req.Header.Set("Durable-Fetch-Offset", strconv.Itoa(from))
		l.m.st.fetch.resumes++
	} else if f.acked {
		l.m.st.fetch.replays++
	}
	l.m.mu.Unlock()
	resp, err := l.c.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		if !l.killed.Load() {
			l.m.fail("round %d: fetch %s through the door: status %d %q", l.round, f.name, resp.StatusCode, b)
		}
		return
	}
	id := resp.Header.Get("Durable-Fetch-Id")
	l.m.mu.Lock()
	switch {
	case !f.acked:
		f.acked, f.id = true, id
		l.m.st.fetch.doorAcked++
	case f.id != id:
		l.m.fail("round %d: fetch %s through the door: Durable-Fetch-Id %s, earlier %s", l.round, f.name, id, f.id)
	}
	l.m.mu.Unlock()
	limit := len(f.want) + 1
	if rng.IntN(3) == 0 {
		limit = rng.IntN(len(f.want) + 1)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)))
	if err == nil && len(body) < limit {
		// Ended cleanly before the limit: presented as the whole body.
		l.sawDoor(f, from, body, true)
		return
	}
	l.sawDoor(f, from, body, false)
}

// sawDoor records a door body (from byte `from`) a reader got.
func (l *fetchLoad) sawDoor(f *fetchRec, from int, body []byte, whole bool) {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if from > len(f.want) || !bytes.HasPrefix(f.want[from:], body) {
		m.fail("round %d: fetch %s through the door from byte %d: %d bytes that are not the upstream's (first difference at %d)",
			l.round, f.name, from, len(body), firstDiff(f.want[min(from, len(f.want)):], body))
		return
	}
	got := f.want[:from+len(body)]
	if whole && from+len(body) != len(f.want) {
		m.fail("round %d: fetch %s through the door: the body ended cleanly after %d of %d bytes: a cut body presented as complete",
			l.round, f.name, from+len(body), len(f.want))
		return
	}
	if whole && f.settled && !f.finalWhole {
		m.fail("round %d: fetch %s: settled as interrupted after a restart, but now presented as complete", l.round, f.name)
	}
	if len(got) > len(f.seen) {
		f.seen = got
	}
	if whole && !f.whole {
		f.whole = true
		m.st.fetch.readsWhole++
	}
}

func (l *fetchLoad) doorDelete(f *fetchRec) {
	l.m.mu.Lock()
	if f.reading > 0 || f.delTried {
		l.m.mu.Unlock()
		return
	}
	f.delTried = true
	l.m.mu.Unlock()
	res := do(context.Background(), l.c, "POST", l.door+"/delete", fetchURLJSON(l.up, f.uri))
	if res.status != http.StatusOK {
		if res.status != 0 && !l.killed.Load() {
			l.m.fail("round %d: delete fetch %s: %s", l.round, f.name, res)
		}
		return
	}
	var out struct{ Success bool }
	if json.Unmarshal(res.body, &out) != nil || !out.Success {
		l.m.fail("round %d: delete fetch %s: %q", l.round, f.name, res.body)
		return
	}
	l.m.mu.Lock()
	f.deleted = true
	l.m.st.fetch.deletes++
	l.m.mu.Unlock()
}

func fetchURLJSON(up *fetchUpstream, uri string) []byte {
	b, _ := json.Marshal(map[string]string{"url": up.srv.URL + uri})
	return b
}

// proxyFetch creates a proxy stream for f and follows it with long-polls,
// sometimes only part way.
func (l *fetchLoad) proxyFetch(rng *rand.Rand, f *fetchRec) {
	res := do(context.Background(), l.c, "POST", l.base+"/v1/proxy?secret="+tortureProxyKey, nil,
		"Upstream-URL", l.up.srv.URL+f.uri, "Upstream-Method", "GET")
	if res.status != http.StatusCreated {
		if res.status != 0 && !l.killed.Load() {
			l.m.fail("round %d: proxy create %s: %s", l.round, f.name, res)
		}
		return
	}
	loc, err := url.Parse(res.h.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.Path, "/v1/proxy/") {
		l.m.fail("round %d: proxy create %s: Location %q", l.round, f.name, res.h.Get("Location"))
		return
	}
	l.m.mu.Lock()
	f.acked, f.id, f.loc = true, strings.TrimPrefix(loc.Path, "/v1/proxy/"), loc.RequestURI()
	l.m.st.fetch.proxyAcked++
	l.m.mu.Unlock()
	stopAt := -1
	if rng.IntN(3) == 0 {
		stopAt = rng.IntN(len(f.want) + 1)
	}
	var body []byte
	offset := "-1"
	for !l.killed.Load() && (stopAt < 0 || len(body) < stopAt) {
		r := do(context.Background(), l.c, "GET", l.base+f.loc+"&offset="+offset+"&live=long-poll", nil)
		if r.status != http.StatusOK && r.status != http.StatusNoContent {
			l.m.mu.Lock()
			deleting := f.delTried // the other worker may delete it under this reader
			l.m.mu.Unlock()
			if r.status != 0 && !l.killed.Load() && !(deleting && r.status == http.StatusNotFound) {
				l.m.fail("round %d: proxy read %s at %s: %s", l.round, f.name, offset, r)
			}
			break
		}
		if r.err != nil {
			break
		}
		body = append(body, r.body...)
		offset = r.h.Get("Stream-Next-Offset")
		if r.closedHdr() {
			l.sawProxy(f, body, r.h.Get("Upstream-Outcome"))
			return
		}
	}
	l.sawProxy(f, body, "")
}

// sawProxy records a proxy body a reader got, and the outcome when it saw
// the stream closed.
func (l *fetchLoad) sawProxy(f *fetchRec, body []byte, outcome string) {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if !bytes.HasPrefix(f.want, body) {
		m.fail("round %d: proxy stream %s: %d bytes that are not the upstream's (first difference at %d)", l.round, f.name, len(body), firstDiff(f.want, body))
		return
	}
	switch {
	case outcome == "":
	case outcome == "complete" && len(body) != len(f.want):
		m.fail("round %d: proxy stream %s closed with outcome complete after %d of %d bytes", l.round, f.name, len(body), len(f.want))
	case outcome == "complete":
		if !f.whole {
			f.whole = true
			m.st.fetch.readsWhole++
		}
	case outcome == "aborted" && f.delTried:
		// The other worker deletes it: a delete aborts the upstream first,
		// which closes the stream, then removes it.
	case outcome != "interrupted":
		m.fail("round %d: proxy stream %s closed with outcome %q", l.round, f.name, outcome)
	}
	if len(body) > len(f.seen) {
		f.seen = body
	}
}

func (l *fetchLoad) proxyDelete(f *fetchRec) {
	l.m.mu.Lock()
	f.delTried = true
	id := f.id
	l.m.mu.Unlock()
	res := do(context.Background(), l.c, "DELETE", l.base+"/v1/proxy/"+id+"?secret="+tortureProxyKey, nil)
	if res.status != http.StatusNoContent {
		if res.status != 0 && !l.killed.Load() {
			l.m.fail("round %d: proxy delete %s: %s", l.round, f.name, res)
		}
		return
	}
	l.m.mu.Lock()
	f.deleted = true
	l.m.st.fetch.deletes++
	l.m.mu.Unlock()
}

// fetchVerifier checks the fetch records after a restart.
type fetchVerifier struct {
	*verifier
	up   *fetchUpstream
	door string
}

func (v *fetchVerifier) run() {
	m := v.m
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.fetches {
		switch {
		case !f.acked:
			// Nothing acknowledged: the request got no answer before the kill.
		case f.delTried:
			v.deleted(f)
		case f.proxy:
			v.proxy(f)
		default:
			v.doorRec(f)
		}
	}
}

func (v *fetchVerifier) inProgress(f *fetchRec) (inProgress, completed, ok bool) {
	ctx, cancel := v.ctx()
	defer cancel()
	res := do(ctx, v.c, "POST", v.door+"/in-progress", fetchURLJSON(v.up, f.uri))
	var st struct{ InProgress, Completed bool }
	if res.status != http.StatusOK || json.Unmarshal(res.body, &st) != nil {
		v.fail("fetch %s: /in-progress: %s", f.name, res)
		return false, false, false
	}
	return st.InProgress, st.Completed, true
}

func (v *fetchVerifier) deleted(f *fetchRec) {
	if f.proxy {
		ctx, cancel := v.ctx()
		defer cancel()
		res := do(ctx, v.c, "HEAD", v.base+"/v1/proxy/"+f.id+"?secret="+tortureProxyKey, nil)
		switch {
		case res.status == http.StatusNotFound:
			f.deleted = true
		case res.status == http.StatusOK && !f.deleted:
			f.delTried = false // the delete got no answer and did not happen
		default:
			v.fail("proxy stream %s: deleted, HEAD answers %s", f.name, res)
			return
		}
	} else {
		_, completed, ok := v.inProgress(f)
		if !ok {
			return
		}
		switch {
		case !completed:
			f.deleted = true
		case !f.deleted:
			f.delTried = false // only complete fetches are deleted
		default:
			v.fail("fetch %s: deleted, /in-progress says completed", f.name)
			m := v.m
			m.noteLost(f)
			return
		}
	}
	if f.deleted && !f.delVerified {
		f.delVerified = true
		v.m.st.fetch.deletesVerified++
	}
}

// settle checks a body read after a restart against what was seen before
// and what was settled earlier, and settles it.
func (v *fetchVerifier) settle(f *fetchRec, body []byte, whole bool, how string) {
	m := v.m
	switch {
	case !bytes.HasPrefix(f.want, body):
		v.fail("fetch %s (%s): %d bytes that are not the upstream's (first difference at %d)", f.name, how, len(body), firstDiff(f.want, body))
	case !bytes.HasPrefix(body, f.seen):
		v.fail("fetch %s (%s): %d bytes stored, but a reader saw %d before: lost", f.name, how, len(body), len(f.seen))
		m.noteLost(f)
	case whole && len(body) != len(f.want):
		// (The converse is no error: a fetch interrupted after its last
		// byte was stored but before its end was recorded has it all.)
		v.fail("fetch %s (%s): %d of %d bytes presented as complete", f.name, how, len(body), len(f.want))
	case f.whole && !whole:
		v.fail("fetch %s (%s): a reader saw it complete, now interrupted after %d bytes", f.name, how, len(body))
		m.noteLost(f)
	case f.settled && (whole != f.finalWhole || !bytes.Equal(body, f.final)):
		v.fail("fetch %s (%s): settled as %d bytes complete=%v, now %d bytes complete=%v", f.name, how, len(f.final), f.finalWhole, len(body), whole)
	default:
		if !f.settled {
			f.settled, f.final, f.finalWhole = true, body, whole
			if whole {
				m.st.fetch.verifiedWhole++
			} else {
				m.st.fetch.verifiedCut++
			}
		}
		f.seen = body
		f.whole = whole
	}
}

func (v *fetchVerifier) doorRec(f *fetchRec) {
	before := v.up.callsTo(f.uri)
	defer func() {
		if n := v.up.callsTo(f.uri) - before; n != 0 {
			v.fail("fetch %s: serving it after a restart called the upstream %d times", f.name, n)
		}
	}()
	inProg, completed, ok := v.inProgress(f)
	if !ok {
		return
	}
	if inProg {
		v.fail("fetch %s: /in-progress says in progress after a restart", f.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchReadTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", v.door+"/"+strings.TrimPrefix(v.up.srv.URL, "http://")+f.uri, nil)
	resp, err := v.c.Do(req)
	if err != nil {
		v.fail("fetch %s: GET after a restart: %v", f.name, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Durable-Fetch-Id") != f.id {
		v.fail("fetch %s: GET after a restart: status %d, Durable-Fetch-Id %q (was %s): the stored fetch is gone",
			f.name, resp.StatusCode, resp.Header.Get("Durable-Fetch-Id"), f.id)
		v.m.noteLost(f)
		return
	}
	body, err := io.ReadAll(resp.Body)
	if ctx.Err() != nil {
		v.fail("fetch %s: the body hangs after a restart (%d bytes in %v)", f.name, len(body), fetchReadTimeout)
		return
	}
	whole := err == nil
	if whole != completed {
		v.fail("fetch %s (id %s): the body ended cleanly=%v after %d bytes (%v; Content-Length %d), /in-progress says completed=%v",
			f.name, f.id, whole, len(body), err, resp.ContentLength, completed)
	}
	if !whole && !errors.Is(err, io.ErrUnexpectedEOF) {
		v.fail("fetch %s: the interrupted body ends with %v, not a cut chunked body", f.name, err)
	}
	v.settle(f, body, whole, "door")
}

func (v *fetchVerifier) proxy(f *fetchRec) {
	ctx, cancel := v.ctx()
	defer cancel()
	res := do(ctx, v.c, "GET", v.base+f.loc+"&offset=-1", nil)
	if res.status != http.StatusOK || res.err != nil {
		v.fail("proxy stream %s: catch-up read after a restart: %s", f.name, res)
		if res.status == http.StatusNotFound {
			v.m.noteLost(f)
		}
		return
	}
	outcome := res.h.Get("Upstream-Outcome")
	if !res.closedHdr() || (outcome != "complete" && outcome != "interrupted") {
		v.fail("proxy stream %s after a restart: Stream-Closed %q, Upstream-Outcome %q", f.name, res.h.Get("Stream-Closed"), outcome)
		return
	}
	v.settle(f, res.body, outcome == "complete", "proxy")
}

// fetchSetup is the upstream and the door address of a torture run.
type fetchSetup struct {
	up       *fetchUpstream
	doorPort int // of the current start (flags)
}

func newFetchSetup() *fetchSetup { return &fetchSetup{up: newFetchUpstream()} }

func (fs *fetchSetup) door() string { return "http://127.0.0.1:" + strconv.Itoa(fs.doorPort) }

// flags are the serve flags that turn both front doors on, with a fresh
// door port for each start (fetch keys name the upstream, not the door).
func (fs *fetchSetup) flags() []string {
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		fs.doorPort = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	return []string{"--fetch-addr", "127.0.0.1:" + strconv.Itoa(fs.doorPort),
		"--proxy-allow", fs.up.srv.URL + "/t/**", "--proxy-secret", tortureProxyKey}
}

func (st fetchStats) String() string {
	return fmt.Sprintf("door fetches %d (%d answered, %d replays, %d resumes), proxy streams %d (%d created); seen whole during load %d; verified after a restart: %d complete, %d interrupted (cut); deletes %d acknowledged, %d verified",
		st.door, st.doorAcked, st.replays, st.resumes, st.proxy, st.proxyAcked, st.readsWhole, st.verifiedWhole, st.verifiedCut, st.deletes, st.deletesVerified)
}
