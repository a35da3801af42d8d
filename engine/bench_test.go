package engine

// Benchmarks for the engine's hot paths. Profiles:
//
//	go test ./engine -run '^$' -bench 'Append/g=64' -benchtime 20000x -cpuprofile cpu.prof -memprofile mem.prof
//	go tool pprof -top engine.test cpu.prof
//
// BenchmarkAppend and BenchmarkAppendFsyncPerAppend run the same workload:
// durable 100-byte appends from G goroutines over S streams. The second does
// what the reference servers do (write the stream's file, fdatasync, ack), so
// the ratio of their appends/s is what group commit buys.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var benchShapes = []struct{ g, streams int }{
	{1, 1}, {64, 1}, {64, 100}, {64, 10000}, {512, 100}, {512, 10000},
}

func benchEngine(b *testing.B, o *Options) *Engine {
	b.Helper()
	e, err := Open(b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

func createStreams(b *testing.B, e *Engine, n int, ct string) []string {
	b.Helper()
	paths := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	sem := make(chan struct{}, 256)
	for i := range paths {
		paths[i] = fmt.Sprintf("bench/%d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func(p string) {
			defer wg.Done()
			defer func() { <-sem }()
			if _, _, err := e.Create(context.Background(), p, CreateOptions{ContentType: ct}); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}(paths[i])
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return paths
}

// runParallel splits b.N operations over g goroutines; op gets the goroutine
// and operation numbers.
func runParallel(b *testing.B, g int, op func(w, i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := op(w, i); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
}

func reportCommit(b *testing.B, e *Engine, before Stats, took time.Duration) {
	after := e.Stats()
	fsyncs := float64(after.Fsyncs - before.Fsyncs)
	recs := float64(after.CommitRecords - before.CommitRecords)
	b.ReportMetric(float64(b.N)/took.Seconds(), "appends/s")
	b.ReportMetric(fsyncs/took.Seconds(), "fsyncs/s")
	if fsyncs > 0 {
		b.ReportMetric(recs/fsyncs, "batch")
	}
}

func BenchmarkAppend(b *testing.B) {
	body := make([]byte, 100)
	for _, sh := range benchShapes {
		b.Run(fmt.Sprintf("g=%d/streams=%d", sh.g, sh.streams), func(b *testing.B) {
			e := benchEngine(b, nil)
			paths := createStreams(b, e, sh.streams, "application/octet-stream")
			// Steady state: every stream already has its file, as every
			// baseline stream does (stream creation: BenchmarkManyStreams).
			for _, p := range paths {
				if _, err := e.Append(context.Background(), p, body, AppendOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			before := e.Stats()
			start := time.Now()
			runParallel(b, sh.g, func(w, i int) error {
				_, err := e.Append(context.Background(), paths[(w+i*sh.g)%len(paths)], body, AppendOptions{})
				return err
			})
			reportCommit(b, e, before, time.Since(start))
		})
	}
}

// BenchmarkAppendFsyncPerAppend is the reference servers' approach: each
// append writes its stream's file and fdatasyncs it before acknowledging.
func BenchmarkAppendFsyncPerAppend(b *testing.B) {
	body := make([]byte, 100)
	for _, sh := range benchShapes {
		b.Run(fmt.Sprintf("g=%d/streams=%d", sh.g, sh.streams), func(b *testing.B) {
			dir := b.TempDir()
			files := make([]*os.File, sh.streams)
			locks := make([]sync.Mutex, sh.streams)
			for i := range files {
				f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
				if err != nil {
					b.Fatal(err)
				}
				files[i] = f
				defer f.Close()
			}
			start := time.Now()
			runParallel(b, sh.g, func(w, i int) error {
				k := (w + i*sh.g) % len(files)
				locks[k].Lock()
				defer locks[k].Unlock()
				if _, err := files[k].Write(body); err != nil {
					return err
				}
				return fdatasync(files[k])
			})
			took := time.Since(start)
			b.ReportMetric(float64(b.N)/took.Seconds(), "appends/s")
			b.ReportMetric(float64(b.N)/took.Seconds(), "fsyncs/s")
		})
	}
}

func BenchmarkAppendSize(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%d/g=4", size), func(b *testing.B) {
			e := benchEngine(b, nil)
			paths := createStreams(b, e, 4, "application/octet-stream")
			body := make([]byte, size)
			b.SetBytes(int64(size))
			before := e.Stats()
			start := time.Now()
			runParallel(b, 4, func(w, i int) error {
				_, err := e.Append(context.Background(), paths[w], body, AppendOptions{})
				return err
			})
			reportCommit(b, e, before, time.Since(start))
		})
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	body := []byte(`[{"id":1,"user":"alice","text":"hello there, this is a message","ts":1700000000}` +
		`,{"id":2,"user":"bob","text":"and this is another message ok","ts":1700000001}]`)
	e := benchEngine(b, nil)
	paths := createStreams(b, e, 64, "application/json")
	b.SetBytes(int64(len(body)))
	before := e.Stats()
	start := time.Now()
	runParallel(b, 64, func(w, i int) error {
		_, err := e.Append(context.Background(), paths[w], body, AppendOptions{})
		return err
	})
	reportCommit(b, e, before, time.Since(start))
}

// BenchmarkCatchupRead reads a 256 MiB stream from the start in 1 MiB
// chunks and copies every byte out, as the kernel does when the views are
// written to a socket.
func BenchmarkCatchupRead(b *testing.B) {
	const total = 256 << 20
	e := benchEngine(b, nil)
	createStreams(b, e, 1, "application/octet-stream")
	chunk := make([]byte, 1<<20)
	for i := 0; i < total/len(chunk); i++ {
		if _, err := e.Append(context.Background(), "bench/0", chunk, AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(total)
	out := make([]byte, 1<<20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from := ReadFrom{Kind: FromStart}
		for {
			c, err := e.Read("bench/0", from, ReadOptions{MaxBytes: 1 << 20})
			if err != nil {
				b.Fatal(err)
			}
			for _, buf := range c.Data() {
				copy(out, buf)
			}
			c.Release()
			if c.UpToDate {
				break
			}
			from = At(c.Next)
		}
	}
}

// BenchmarkWake measures one append waking N waiters on one stream, until
// every waiter has returned.
func BenchmarkWake(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("waiters=%d", n), func(b *testing.B) {
			e := benchEngine(b, &Options{Durability: DurabilityMemory})
			createStreams(b, e, 1, "application/octet-stream")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				tail := Offset(i)
				var ready, done sync.WaitGroup
				ready.Add(n)
				done.Add(n)
				for j := 0; j < n; j++ {
					go func() {
						ready.Done()
						e.Wait(context.Background(), "bench/0", tail)
						done.Done()
					}()
				}
				ready.Wait()
				time.Sleep(time.Millisecond) // let them park
				b.StartTimer()
				if _, err := e.Append(context.Background(), "bench/0", []byte{1}, AppendOptions{}); err != nil {
					b.Fatal(err)
				}
				done.Wait()
			}
		})
	}
}

// BenchmarkAppendWhileTailed is one durable appender on a stream that 1,000
// tailers follow (Wait, then Read to the tail: what a live SSE or long-poll
// reader does). Every append wakes all of them at once; what is measured is
// how long the appender's own commit waits behind them (latency p50/p99).
func BenchmarkAppendWhileTailed(b *testing.B) {
	const tailers = 1000
	e := benchEngine(b, nil)
	createStreams(b, e, 1, "application/octet-stream")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range tailers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := Offset(0)
			for e.Wait(ctx, "bench/0", next) == nil {
				c, err := e.Read("bench/0", At(next), ReadOptions{})
				if err != nil {
					return
				}
				next = c.Next
				c.Release()
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(10 * time.Millisecond) // let them park
	msg := make([]byte, 100)
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range lat {
		t := time.Now()
		if _, err := e.Append(context.Background(), "bench/0", msg, AppendOptions{}); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkCreate creates streams from 64 goroutines (one op = one stream);
// run with -benchtime 100000x for the 100k figure.
func BenchmarkCreate(b *testing.B) {
	e := benchEngine(b, nil)
	before := e.Stats()
	start := time.Now()
	runParallel(b, 64, func(w, i int) error {
		_, _, err := e.Create(context.Background(), fmt.Sprintf("c/%d", i), CreateOptions{ContentType: "text/plain"})
		return err
	})
	reportCommit(b, e, before, time.Since(start))
}

// BenchmarkManyStreams creates b.N streams with one 100-byte append each,
// from 64 goroutines, and reports the memory each stream costs. For the
// million-stream figure:
//
//	go test ./engine -run '^$' -bench ManyStreams -benchtime 1000000x -timeout 30m
func BenchmarkManyStreams(b *testing.B) {
	for _, mode := range []Durability{DurabilitySync, DurabilityMemory} {
		b.Run(string(mode), func(b *testing.B) {
			e := benchEngine(b, &Options{Durability: mode})
			body := make([]byte, 100)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			rssBefore := rssBytes()
			start := time.Now()
			runParallel(b, 64, func(w, i int) error {
				p := fmt.Sprintf("many/%d", i)
				if _, _, err := e.Create(context.Background(), p, CreateOptions{ContentType: "application/octet-stream"}); err != nil {
					return err
				}
				_, err := e.Append(context.Background(), p, body, AppendOptions{})
				return err
			})
			took := time.Since(start)
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(b.N)/took.Seconds(), "streams/s")
			b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(b.N), "heapB/stream")
			b.ReportMetric(float64(rssBytes()-rssBefore)/float64(b.N), "rssB/stream")
		})
	}
}

// rssBytes reads this process's resident set size from /proc.
func rssBytes() int64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, rss int64
	fmt.Sscan(string(raw), &size, &rss)
	return rss * int64(os.Getpagesize())
}
