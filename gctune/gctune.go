// Package gctune keeps the Go garbage collector from collecting a small heap
// over and over. A server with a million streams wants a low GC percent (its
// heap is mostly per-stream state that lives as long as the stream), but the
// same percent on a small heap means a collection every few megabytes of
// request garbage, each scanning every live goroutine's stack. After every
// collection the tuner sets the percent so the next one waits until the heap
// holds at least a floor of bytes, and never lower than the configured
// percent.
//
// It also finds the memory the process may use (cgroup limit or MemTotal)
// for a default soft memory limit (memlimit.go).
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// maxPercent bounds the raised percent for a nearly empty heap.
const maxPercent = 10000

// Tuner adjusts the GC percent after each collection until Stop.
type Tuner struct {
	percent int
	floor   uint64
	mu      sync.Mutex
	stopped bool
	current int
	sample  []metrics.Sample
}

// Start sets the GC percent to percent and, when floor > 0, raises it after
// every collection so that the next one comes no earlier than at floor
// bytes of heap.
func Start(percent int, floor int64) *Tuner {
	t := &Tuner{percent: percent, current: percent,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}}
	debug.SetGCPercent(percent)
	if floor > 0 {
		t.floor = uint64(floor)
		t.arm()
	}
	return t
}

// Stop ends the tuning and puts the configured percent back.
func (t *Tuner) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	debug.SetGCPercent(t.percent)
}

// sentinel is garbage from the moment it is made: its finalizer runs after
// the next collection and re-arms the tuner with a new one.
type sentinel struct{ t *Tuner }

func (t *Tuner) arm() {
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) { s.t.afterGC() })
}

func (t *Tuner) afterGC() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.sample)
	live := t.sample[0].Value.Uint64()
	roots := t.sample[1].Value.Uint64() + t.sample[2].Value.Uint64()
	if p := Percent(t.percent, t.floor, live, roots); p*10 < t.current*9 || p*10 > t.current*11 {
		debug.SetGCPercent(p) // only on a change of more than 10%: it recomputes the pacer
		t.current = p
	}
	t.arm()
}

// Percent is the GC percent for a live heap of live bytes with roots bytes
// of stacks and globals to scan: percent, or more if that is what it takes
// for the heap to reach floor bytes first. The runtime's heap goal is
// live + (live + roots) * percent / 100.
func Percent(percent int, floor, live, roots uint64) int {
	if live >= floor {
		return percent
	}
	base := live + roots
	if base == 0 {
		return maxPercent
	}
	if live*100+base*uint64(percent) >= floor*100 {
		return percent
	}
	return int(min((floor-live)*100/base, maxPercent))
}
