package bench

// Benchmarks of the server's handlers in process: ServeHTTP with a
// sync-mode engine in b.TempDir(), no sockets (a discarding ResponseWriter),
// so they show what the HTTP layer and the engine cost per request without
// the network and the client. BenchmarkLoopback* add a real loopback
// listener, the net/http server and the generator's client.
//
// Profiles:
//
//	go test ./bench -run '^$' -bench 'Handler' -benchtime 20000x -cpuprofile cpu.prof -memprofile mem.prof
//	go tool pprof -top bench.test cpu.prof
//	go tool pprof -top -sample_index=alloc_space bench.test mem.prof
//
// (make bench-go runs them all, BENCHTIME=1x by default; BENCH=Handler
// BENCHTIME=2s for numbers). Engine benchmarks: engine/bench_test.go.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
)

// discardWriter is a ResponseWriter that counts and drops the body.
type discardWriter struct {
	h    http.Header
	code int
	n    int64
}

func (w *discardWriter) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header, 16)
	}
	return w.h
}

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += int64(len(p))
	return len(p), nil
}

func (w *discardWriter) Flush() {}

func (w *discardWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

type benchSrv struct {
	eng *engine.Engine
	srv *server.Server
}

func newBenchSrv(b *testing.B) *benchSrv {
	b.Helper()
	eng, err := engine.Open(b.TempDir(), &engine.Options{Durability: engine.DurabilitySync})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(eng, server.Config{LongPollTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		srv.Shutdown()
		eng.Close()
	})
	return &benchSrv{eng: eng, srv: srv}
}

// req builds a request template (copied per use by serve).
func req(method, target, ct string) *http.Request {
	r, err := http.NewRequest(method, "http://bench"+target, nil)
	if err != nil {
		panic(err)
	}
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

// serve runs one request through the handler and returns the status.
func (s *benchSrv) serve(w *discardWriter, tmpl *http.Request, body []byte) int {
	r := new(http.Request)
	*r = *tmpl
	if body != nil {
		br := &bodyReader{}
		br.Reset(body)
		r.Body = br
		r.ContentLength = int64(len(body))
	} else {
		r.Body = http.NoBody
	}
	w.reset()
	s.srv.ServeHTTP(w, r)
	return w.code
}

func (s *benchSrv) create(b *testing.B, path, ct string) {
	b.Helper()
	if code := s.serve(&discardWriter{}, req(http.MethodPut, path, ct), nil); code != http.StatusCreated {
		b.Fatalf("PUT %s: %d", path, code)
	}
}

// parallelOps runs b.N operations over g goroutines; op gets the goroutine
// number and returns the response status.
func parallelOps(b *testing.B, g int, op func(w int, dw *discardWriter) int) {
	var next atomic.Int64
	var bad atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dw := &discardWriter{}
			for next.Add(1) <= int64(b.N) {
				if code := op(w, dw); code < 200 || code > 299 {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d non-2xx responses", n)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkHandlerAppend: durable 100-byte POSTs from g goroutines, each
// on its own stream (g=1: one commit per append; g=64: group commit).
func BenchmarkHandlerAppend(b *testing.B) {
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("g=%d", g), func(b *testing.B) {
			s := newBenchSrv(b)
			body := payload(100)
			tmpls := make([]*http.Request, g)
			for w := range tmpls {
				p := "/v1/stream/b/" + strconv.Itoa(w)
				s.create(b, p, octet)
				tmpls[w] = req(http.MethodPost, p, octet)
			}
			b.SetBytes(int64(len(body)))
			parallelOps(b, g, func(w int, dw *discardWriter) int { return s.serve(dw, tmpls[w], body) })
		})
	}
}

// BenchmarkHandlerAppendJSON: POSTs of a 10-element JSON array (~1 KB)
// from 64 goroutines on their own streams: validation and flattening.
func BenchmarkHandlerAppendJSON(b *testing.B) {
	s := newBenchSrv(b)
	body := jsonBatch(10, 100)
	const g = 64
	tmpls := make([]*http.Request, g)
	for w := range tmpls {
		p := "/v1/stream/j/" + strconv.Itoa(w)
		s.create(b, p, "application/json")
		tmpls[w] = req(http.MethodPost, p, "application/json")
	}
	b.SetBytes(int64(len(body)))
	parallelOps(b, g, func(w int, dw *discardWriter) int { return s.serve(dw, tmpls[w], body) })
}

// BenchmarkHandlerAppendLarge: 1 MiB POSTs from 4 goroutines.
func BenchmarkHandlerAppendLarge(b *testing.B) {
	s := newBenchSrv(b)
	body := payload(1 << 20)
	const g = 4
	tmpls := make([]*http.Request, g)
	for w := range tmpls {
		p := "/v1/stream/l/" + strconv.Itoa(w)
		s.create(b, p, octet)
		tmpls[w] = req(http.MethodPost, p, octet)
	}
	b.SetBytes(int64(len(body)))
	parallelOps(b, g, func(w int, dw *discardWriter) int { return s.serve(dw, tmpls[w], body) })
}

// BenchmarkHandlerCreate: PUT of a new stream (plus nothing else) from 64
// goroutines: creation rides the group commit.
func BenchmarkHandlerCreate(b *testing.B) {
	s := newBenchSrv(b)
	tmpl := req(http.MethodPut, "/v1/stream/c/0", octet)
	var n atomic.Int64
	parallelOps(b, 64, func(w int, dw *discardWriter) int {
		r := new(http.Request)
		*r = *tmpl
		u := *tmpl.URL
		u.Path = "/v1/stream/c/" + strconv.FormatInt(n.Add(1), 10)
		r.URL = &u
		return s.serve(dw, r, nil)
	})
}

// BenchmarkHandlerRead: catch-up reads from a prefilled 64 MiB stream:
// page=1MiB reads a full page at a rotating offset (b.SetBytes: MB/s);
// tail reads the last 100-byte message.
func BenchmarkHandlerRead(b *testing.B) {
	s := newBenchSrv(b)
	const p = "/v1/stream/r/0"
	s.create(b, p, octet)
	chunk := payload(256 << 10)
	post := req(http.MethodPost, p, octet)
	dw := &discardWriter{}
	var offsets []string
	for i := 0; i < 256; i++ {
		if code := s.serve(dw, post, chunk); code != http.StatusNoContent {
			b.Fatalf("prefill: %d", code)
		}
		if i%4 == 3 {
			offsets = append(offsets, dw.Header().Get("Stream-Next-Offset"))
		}
	}
	offsets = append([]string{"-1"}, offsets[:len(offsets)-1]...)
	s.serve(dw, post, payload(100))
	tail := offsets[len(offsets)-1]
	_ = tail
	b.Run("page=1MiB", func(b *testing.B) {
		tmpls := make([]*http.Request, len(offsets))
		for i, o := range offsets {
			tmpls[i] = req(http.MethodGet, p+"?offset="+o, "")
		}
		b.SetBytes(1 << 20)
		var i atomic.Int64
		parallelOps(b, 4, func(w int, dw *discardWriter) int {
			code := s.serve(dw, tmpls[int(i.Add(1))%len(tmpls)], nil)
			if dw.n != 1<<20 {
				return 500
			}
			return code
		})
	})
	b.Run("tail", func(b *testing.B) {
		dw := &discardWriter{}
		s.serve(dw, req(http.MethodHead, p, ""), nil)
		end := dw.Header().Get("Stream-Next-Offset")
		// The last message starts 100 bytes before the end.
		n, err := strconv.ParseInt(end[len(end)-16:], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		from := end[:len(end)-16] + fmt.Sprintf("%016d", n-100)
		tmpl := req(http.MethodGet, p+"?offset="+from, "")
		parallelOps(b, 4, func(w int, dw *discardWriter) int {
			code := s.serve(dw, tmpl, nil)
			if dw.n != 100 {
				return 500
			}
			return code
		})
	})
}

// BenchmarkHandlerHead: HEAD (metadata) of one stream.
func BenchmarkHandlerHead(b *testing.B) {
	s := newBenchSrv(b)
	s.create(b, "/v1/stream/h/0", octet)
	tmpl := req(http.MethodHead, "/v1/stream/h/0", "")
	parallelOps(b, 4, func(w int, dw *discardWriter) int { return s.serve(dw, tmpl, nil) })
}

// BenchmarkHandlerLongPollWake: one append wakes 64 long-poll readers
// waiting at the tail; an op is one append and all 64 responses.
func BenchmarkHandlerLongPollWake(b *testing.B) {
	s := newBenchSrv(b)
	const p, waiters = "/v1/stream/w/0", 64
	s.create(b, p, octet)
	post := req(http.MethodPost, p, octet)
	body := payload(100)
	dw := &discardWriter{}
	s.serve(dw, req(http.MethodHead, p, ""), nil)
	off := dw.Header().Get("Stream-Next-Offset")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		var bad atomic.Int64
		tmpl := req(http.MethodGet, p+"?offset="+off+"&live=long-poll", "")
		var waiting sync.WaitGroup
		waiting.Add(waiters)
		for j := 0; j < waiters; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &discardWriter{}
				waiting.Done()
				if code := s.serve(w, tmpl, nil); code != http.StatusOK || w.n != 100 {
					bad.Add(1)
				}
			}()
		}
		waiting.Wait()
		time.Sleep(time.Millisecond) // let the readers reach Wait (not timed precisely)
		if code := s.serve(dw, post, body); code != http.StatusNoContent {
			b.Fatalf("append: %d", code)
		}
		off = dw.Header().Get("Stream-Next-Offset")
		wg.Wait()
		if n := bad.Load(); n > 0 {
			b.Fatalf("%d readers did not get the message", n)
		}
	}
}

// BenchmarkLoopbackAppend: the append-small scenario in miniature over a
// real loopback listener: g clients, each on its own stream, one
// connection each, 100-byte POSTs.
func BenchmarkLoopbackAppend(b *testing.B) {
	for _, target := range []string{"durastream", "null"} {
		b.Run(target, func(b *testing.B) {
			var url string
			if target == "durastream" {
				url = startDurastream(b)
			} else {
				url = startNull(b)
			}
			const g = 32
			c := newClient(g, 10*time.Second, 16<<10)
			defer c.close()
			body := payload(100)
			tmpls := make([]*http.Request, g)
			for w := range tmpls {
				u := fmt.Sprintf("%s/v1/stream/lb/%d", url, w)
				if _, err := c.simple(context.Background(), http.MethodPut, u, ctHeader(octet), nil); err != nil {
					b.Fatal(err)
				}
				tmpls[w], _ = template(context.Background(), http.MethodPost, u, ctHeader(octet))
			}
			b.SetBytes(int64(len(body)))
			bufs := make([][]byte, g)
			for i := range bufs {
				bufs[i] = make([]byte, 4<<10)
			}
			ts := make([]*tally, g)
			for i := range ts {
				ts[i] = newTally()
			}
			parallelOps(b, g, func(w int, _ *discardWriter) int {
				if ok, _ := c.exchange(ts[w], tmpls[w], body, bufs[w]); !ok {
					return 500
				}
				return 200
			})
		})
	}
}
