package bench

import (
	"sort"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 120 s, to 3
// significant digits.
const histMaxUS = 120_000_000

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxUS, 3) }

func recordUS(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < 1 {
		us = 1
	}
	if us > histMaxUS {
		us = histMaxUS
	}
	_ = h.RecordValue(us) // in range by construction
}

// shardedHist is a histogram many goroutines record into (fan-out
// subscribers): each records into one of a few mutex-protected shards.
type shardedHist struct {
	shards [16]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
		_  [40]byte // keep shards on separate cache lines
	}
}

func newShardedHist() *shardedHist {
	s := &shardedHist{}
	for i := range s.shards {
		s.shards[i].h = newHist()
	}
	return s
}

// recordMany records each of ds into shard k (the caller's number).
func (s *shardedHist) recordMany(k int, ds []time.Duration) {
	sh := &s.shards[k%len(s.shards)]
	sh.mu.Lock()
	for _, d := range ds {
		recordUS(sh.h, d)
	}
	sh.mu.Unlock()
}

func (s *shardedHist) merged() *hdrhistogram.Histogram {
	out := newHist()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		out.Merge(sh.h)
		sh.mu.Unlock()
	}
	return out
}

// tally is one worker's counters; workers merge theirs at the end, so the
// hot loop takes no lock.
type tally struct {
	lat      *hdrhistogram.Histogram
	ops      int64
	reqs     int64
	msgs     int64
	bytes    int64
	errs     int64
	non2xx   int64
	statuses map[int]int64
	lastErr  error
}

func newTally() *tally { return &tally{lat: newHist()} }

// status counts one response status.
func (t *tally) status(code int) bool {
	t.reqs++
	if code >= 200 && code < 300 {
		return true
	}
	t.non2xx++
	if t.statuses == nil {
		t.statuses = map[int]int64{}
	}
	t.statuses[code]++
	return false
}

func (t *tally) fail(err error) {
	t.reqs++
	t.errs++
	t.lastErr = err
}

func (t *tally) merge(o *tally) {
	t.lat.Merge(o.lat)
	t.ops += o.ops
	t.reqs += o.reqs
	t.msgs += o.msgs
	t.bytes += o.bytes
	t.errs += o.errs
	t.non2xx += o.non2xx
	for k, v := range o.statuses {
		if t.statuses == nil {
			t.statuses = map[int]int64{}
		}
		t.statuses[k] += v
	}
	if o.lastErr != nil {
		t.lastErr = o.lastErr
	}
}

func mergeTallies(ts []*tally) *tally {
	out := newTally()
	for _, t := range ts {
		out.merge(t)
	}
	return out
}

func sortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}
