package fetch

// A fetch's record and body share one sliding TTL and are renewed
// together: a lookup renews the body as well as the record, a running
// upstream renews the record as well as the body, and a record whose
// body is gone is no fetch. The engine's clock is moved by hand.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/testkit"
)

// Looking a fetch up for longer than its TTL (as /in-progress polling
// does) keeps its body, not just its record; a record whose body is gone
// is deleted, and its key starts a new upstream call.
func TestFetchTTLLookupRenewsBody(t *testing.T) {
	eng, clock := testkit.ClockEngine(t)
	advance := clock.Advance
	up := newUpstream(t, 3, 0)
	m := testManager(t, eng, func(c *Config) { c.TTL = time.Hour })
	ctx := context.Background()
	req := Request{Key: "k", URL: mustURL(t, up.URL+"/k"), Method: "GET"}
	f, _, err := m.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	waitEnd(t, m, f.ID)
	for range 5 {
		advance(40 * time.Minute)
		if g, err := m.ByKey("k"); err != nil || g.Outcome != Complete {
			t.Fatalf("lookup within the TTL: %+v, %v", g, err)
		}
	}
	// 200 minutes since the body was last read, 40 since the last lookup.
	if body, closed := readBody(t, eng, f); !closed || !bytes.Equal(body, wantBody(3)) {
		t.Fatalf("body after lookups: %q (closed %v)", body, closed)
	}

	if err := eng.Delete(ctx, f.Body); err != nil {
		t.Fatal(err)
	}
	if g, err := m.ByKey("k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a record without its body: %+v, %v, want ErrNotFound", g, err)
	}
	if _, err := eng.Head(f.Meta); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("the record of a fetch without a body: %v, want it deleted", err)
	}
	g, joined, err := m.Start(ctx, req)
	if err != nil || joined || g.ID == f.ID {
		t.Fatalf("start after the body went: %v, joined %v, id %s (old %s), want a new fetch", err, joined, g.ID, f.ID)
	}
	waitEnd(t, m, g.ID)
	if body, _ := readBody(t, eng, g); !bytes.Equal(body, wantBody(3)) || up.calls.Load() != 2 {
		t.Fatalf("new fetch: %q, upstream calls %d, want 2", body, up.calls.Load())
	}
}

// An upstream that runs for longer than the TTL, with nobody looking the
// fetch up meanwhile, keeps its record: its end is recorded and it is
// found, complete.
func TestFetchTTLLongUpstreamKeepsRecord(t *testing.T) {
	eng, clock := testkit.ClockEngine(t)
	advance := clock.Advance
	const events = 6
	gate := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for i := range events {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, sseEvent(i))
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(up.Close)
	m := testManager(t, eng, func(c *Config) { c.TTL = time.Hour })
	f, _, err := m.Start(context.Background(), Request{Key: "k", URL: mustURL(t, up.URL+"/k"), Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	// Watched with Head, which renews nothing.
	waitBody := func(what string, done func(engine.StreamInfo) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			info, err := eng.Head(f.Body)
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
		advance(20 * time.Minute)
		select {
		case gate <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream did not take the next event")
		}
		n := len(wantBody(i + 1))
		waitBody(fmt.Sprintf("%d bytes stored", n), func(in engine.StreamInfo) bool { return int(in.Tail) >= n })
	}
	waitBody("the body closed", func(in engine.StreamInfo) bool { return in.Closed })
	g, err := m.ByKey("k")
	if err != nil || g.ID != f.ID || g.Outcome != Complete || g.Bytes != int64(len(wantBody(events))) {
		t.Fatalf("fetch after a long upstream: %+v, %v, want %s complete", g, err, f.ID)
	}
	if body, _ := readBody(t, eng, g); !bytes.Equal(body, wantBody(events)) {
		t.Fatalf("body %q", body)
	}
}

// A TTL shorter than twice the idle timeout is refused: a fetch whose
// upstream is silent (up to the idle timeout) renews nothing, and must not
// expire before it ends.
func TestFetchTTLAtLeastTwiceIdle(t *testing.T) {
	eng := testEngine(t, t.TempDir())
	defer eng.Close()
	for _, c := range []struct {
		ttl, idle time.Duration
		ok        bool
	}{
		{time.Hour, 0, true},         // idle default 10 min
		{20 * time.Minute, 0, true},  // exactly twice
		{19 * time.Minute, 0, false}, // less
		{time.Minute, 30 * time.Second, true},
		{time.Minute, 31 * time.Second, false},
	} {
		m, err := New(eng, Config{TTL: c.ttl, IdleTimeout: c.idle})
		if (err == nil) != c.ok {
			t.Errorf("TTL %v, idle %v: %v, want ok %v", c.ttl, c.idle, err, c.ok)
		}
		if m != nil {
			m.Close()
		}
	}
}
