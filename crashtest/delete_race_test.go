package crashtest

// Delete-vs-read stress: one stream's bytes must never reach another
// stream's reader. Writers loop create → three small appends whose bytes
// name their stream and incarnation → delete, on a few reused paths each,
// so deleted streams' slab slots are handed to new streams all the time.
// Readers read exactly the streams being deleted. Every 200 must carry only
// tokens of the requested path, of one incarnation, in the order written;
// 404 and 410 are fine; anything else is a failure.
//
//	DURASTREAM_DELETE_RACE_DURATION  how long the load runs (default 8s;
//	                                 the acceptance run is 10m)

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	raceWriters      = 12
	raceReaders      = 6
	racePathsPerWork = 3
)

// A token names the path, the incarnation (a per-writer counter) and the
// append's index; padding varies its length, so a mix of streams cannot line
// up by accident.
var raceToken = regexp.MustCompile(`<([a-z0-9/]+)#(\d+):(\d+)\.*>`)

func raceTokenFor(path string, inc, k int, rng *rand.Rand) string {
	return fmt.Sprintf("<%s#%d:%d%s>", path, inc, k, strings.Repeat(".", rng.IntN(40)))
}

type raceStats struct {
	reads, ok, gone, foreign, other atomic.Int64
}

func TestDeleteVsReadNoForeignBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server for seconds; skipped with -short")
	}
	dur := 8 * time.Second
	if v := os.Getenv("DURASTREAM_DELETE_RACE_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("DURASTREAM_DELETE_RACE_DURATION=%q: want a positive duration", v)
		}
		dur = d
	}
	bin, err := buildServer(t.TempDir(), os.Getenv("DURASTREAM_TORTURE_RACE") == "1")
	if err != nil {
		t.Fatal(err)
	}
	srv, _, err := startServer(bin, filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.kill()

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	hc := newClient()
	var st raceStats
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= maxReported {
			t.Errorf(format, args...)
		}
	}
	// current[w] is the path writer w works on now: readers aim there.
	current := make([]atomic.Pointer[string], raceWriters)
	var wg sync.WaitGroup
	for w := range raceWriters {
		wg.Go(func() { raceWriter(ctx, hc, srv.base, w, &current[w], fail) })
	}
	for r := range raceReaders {
		wg.Go(func() { raceReader(ctx, hc, srv.base, r, current, &st, fail) })
	}
	wg.Wait()
	if errs := srv.logs.takeErrors(); len(errs) > 0 {
		fail("server logged errors: %s", strings.Join(errs[:min(len(errs), 10)], "\n"))
	}
	t.Logf("%s: %d reads: %d whole and own, %d 404/410, %d with foreign bytes, %d other failures",
		dur, st.reads.Load(), st.ok.Load(), st.gone.Load(), st.foreign.Load(), st.other.Load())
	if st.ok.Load() == 0 || st.gone.Load() == 0 {
		t.Errorf("the load did not exercise both outcomes (whole reads and reads of deleted streams)")
	}
}

func raceWriter(ctx context.Context, hc *http.Client, base string, w int, current *atomic.Pointer[string], fail func(string, ...any)) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	ct := "text/plain"
	if w%2 == 1 {
		ct = "application/json"
	}
	for inc := 0; ctx.Err() == nil; inc++ {
		path := fmt.Sprintf("race/w%d/p%d", w, inc%racePathsPerWork)
		url := streamURL(base, path)
		// The create carries the first token, so it takes a slab slot at
		// once: a slot freed by a delete is reused within milliseconds.
		for k := range 3 {
			tok := raceTokenFor(path, inc, k, rng)
			body := []byte(tok)
			if w%2 == 1 {
				body, _ = json.Marshal(tok)
			}
			if k == 0 {
				if r := do(ctx, hc, "PUT", url, body, "Content-Type", ct); r.status != http.StatusCreated {
					if ctx.Err() == nil {
						fail("writer %d: create %s: %s", w, path, r)
					}
					return
				}
				current.Store(&path)
				continue
			}
			if r := do(ctx, hc, "POST", url, body, "Content-Type", ct); r.status != http.StatusNoContent && r.status != http.StatusOK {
				if ctx.Err() == nil {
					fail("writer %d: append to %s: %s", w, path, r)
				}
				return
			}
		}
		// Deleted with a background context: a stream left behind at the
		// deadline would make the next run's PUT a 200, not a 201.
		if r := do(context.Background(), hc, "DELETE", url, nil); r.status != http.StatusNoContent {
			fail("writer %d: delete %s: %s", w, path, r)
			return
		}
	}
}

func raceReader(ctx context.Context, hc *http.Client, base string, r int, current []atomic.Pointer[string], st *raceStats, fail func(string, ...any)) {
	rng := rand.New(rand.NewPCG(uint64(r)+100, uint64(time.Now().UnixNano())))
	for ctx.Err() == nil {
		p := current[rng.IntN(len(current))].Load()
		if p == nil {
			time.Sleep(time.Millisecond)
			continue
		}
		res := do(ctx, hc, "GET", streamURL(base, *p)+"?offset=-1", nil)
		if ctx.Err() != nil {
			return
		}
		st.reads.Add(1)
		switch res.status {
		case http.StatusOK:
			if msg := checkOwnTokens(*p, res); msg != "" {
				st.foreign.Add(1)
				fail("reader %d: GET %s: %s", r, *p, msg)
				continue
			}
			st.ok.Add(1)
		case http.StatusNotFound, http.StatusGone:
			st.gone.Add(1)
		default:
			st.other.Add(1)
			fail("reader %d: GET %s: %s", r, *p, res)
		}
	}
}

// checkOwnTokens returns "" if body is a run of path's tokens of one
// incarnation, numbered 0, 1, 2... in order, with nothing else in it.
func checkOwnTokens(path string, res result) string {
	if res.err != nil {
		return fmt.Sprintf("body read failed: %v", res.err)
	}
	text := string(res.body)
	if strings.HasPrefix(res.h.Get("Content-Type"), "application/json") {
		var items []string
		if err := json.Unmarshal(res.body, &items); err != nil {
			return fmt.Sprintf("not a JSON array of strings (%v): %.300q", err, res.body)
		}
		text = strings.Join(items, "")
	}
	matches := raceToken.FindAllStringSubmatchIndex(text, -1)
	pos, inc := 0, ""
	for k, m := range matches {
		if m[0] != pos {
			return fmt.Sprintf("bytes that are no token at %d: %.300q", pos, text)
		}
		pos = m[1]
		gotPath, gotInc, gotK := text[m[2]:m[3]], text[m[4]:m[5]], text[m[6]:m[7]]
		if gotPath != path {
			return fmt.Sprintf("token of %s in a read of %s: %.300q", gotPath, path, text)
		}
		if k == 0 {
			inc = gotInc
		} else if gotInc != inc {
			return fmt.Sprintf("tokens of incarnations %s and %s in one read: %.300q", inc, gotInc, text)
		}
		if gotK != strconv.Itoa(k) {
			return fmt.Sprintf("token %s where %d belongs: %.300q", gotK, k, text)
		}
	}
	if pos != len(text) {
		return fmt.Sprintf("bytes that are no token at %d: %.300q", pos, text)
	}
	return ""
}
