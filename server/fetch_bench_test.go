package server_test

// Durable fetch benchmarks (figures in BENCHMARKS.md):
//
//	go test ./server -run '^$' -bench 'FetchFirstByte' -benchtime 200x   # time to first byte
//	go test ./server -run '^$' -bench 'FetchFanout|FetchConcurrent' -benchtime 1x
//
// The engine runs in sync mode on a temporary directory; upstreams and the
// durablefetch front door are in-process HTTP servers on 127.0.0.1.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/fetch"
	"github.com/durastream/durastream/server"
)

// benchUpstream streams n SSE events every `every`, each carrying the unix
// nanoseconds it was sent at.
func benchUpstream(b *testing.B, n int, every time.Duration) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fl := w.(http.Flusher)
		for i := range n {
			fmt.Fprintf(w, "data: %d %d\n\n", i, time.Now().UnixNano())
			fl.Flush()
			if every > 0 {
				select {
				case <-time.After(every):
				case <-r.Context().Done():
					return
				}
			}
		}
	}))
	b.Cleanup(ts.Close)
	return ts
}

// benchManager is a fetch manager over a sync engine, allowing loopback
// upstreams; both close when b ends (after the cleanups registered later).
func benchManager(b *testing.B) (*engine.Engine, *fetch.Manager) {
	eng, err := engine.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	allow, _ := fetch.ParseAllowlist([]string{"http://127.0.0.1:*/**"})
	mgr, err := fetch.New(eng, fetch.Config{Allow: allow, MaxConcurrent: 1000})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		mgr.Close()
		eng.Close()
	})
	return eng, mgr
}

// benchDoor is a durablefetch front door over a sync engine.
func benchDoor(b *testing.B) (*httptest.Server, *fetch.Manager) {
	eng, mgr := benchManager(b)
	df := server.NewDurableFetch(mgr, eng, server.DurableFetchConfig{})
	ts := httptest.NewServer(df)
	b.Cleanup(func() {
		ts.Close()
		df.Shutdown()
	})
	return ts, mgr
}

// benchProxy is the proxy protocol's front door (/v1/proxy) over a sync
// engine; it returns the server and its service secret.
func benchProxy(b *testing.B) (*httptest.Server, string) {
	const secret = "bench-proxy-secret-0123456789"
	eng, mgr := benchManager(b)
	srv, err := server.New(eng, server.Config{Proxy: server.ProxyConfig{Manager: mgr, Secret: secret}})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(func() {
		ts.Close()
		srv.Shutdown()
	})
	return ts, secret
}

func benchClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

// firstByte GETs url and returns the time to the first body byte.
func firstByte(b *testing.B, hc *http.Client, url string) time.Duration {
	return firstByteSince(b, hc, url, time.Now())
}

// firstByteSince GETs url and returns the time from start to the first
// body byte.
func firstByteSince(b *testing.B, hc *http.Client, url string, start time.Time) time.Duration {
	resp, err := hc.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("%s: status %d", url, resp.StatusCode)
	}
	var one [1]byte
	if _, err := io.ReadFull(resp.Body, one[:]); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	io.Copy(io.Discard, resp.Body)
	return d
}

func reportPercentiles(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, name+"-p50-ms")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, name+"-p99-ms")
}

// Time to the first body byte of a new fetch: the upstream directly, and
// through the durablefetch front door (upstream call, two stream creates
// and the first append, each durable, then the read).
func BenchmarkFetchFirstByte(b *testing.B) {
	up := benchUpstream(b, 3, 0)
	host := strings.TrimPrefix(up.URL, "http://")
	b.Run("direct", func(b *testing.B) {
		hc := benchClient(4)
		ds := make([]time.Duration, 0, b.N)
		for i := range b.N {
			ds = append(ds, firstByte(b, hc, up.URL+"/x?id="+strconv.Itoa(i)))
		}
		reportPercentiles(b, "ttfb", ds)
	})
	b.Run("durablefetch", func(b *testing.B) {
		door, _ := benchDoor(b)
		hc := benchClient(4)
		ds := make([]time.Duration, 0, b.N)
		for i := range b.N {
			ds = append(ds, firstByte(b, hc, door.URL+"/"+host+"/x?id="+strconv.Itoa(i)))
		}
		reportPercentiles(b, "ttfb", ds)
	})
	// The proxy protocol: POST /v1/proxy (upstream call, two stream
	// creates, each durable), 201 with the pre-signed Location, then a
	// long-poll read of it from the start, answered by the first durable
	// append. Timed from the POST to the first body byte.
	b.Run("proxy", func(b *testing.B) {
		px, secret := benchProxy(b)
		hc := benchClient(4)
		ds := make([]time.Duration, 0, b.N)
		for i := range b.N {
			start := time.Now()
			req, _ := http.NewRequest("POST", px.URL+"/v1/proxy", nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			req.Header.Set("Upstream-URL", up.URL+"/x?id="+strconv.Itoa(i))
			req.Header.Set("Upstream-Method", "GET")
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if resp.StatusCode != 201 || loc == "" {
				b.Fatalf("proxy create: %d, Location %q", resp.StatusCode, loc)
			}
			if !strings.HasPrefix(loc, "http") {
				loc = px.URL + loc
			}
			ds = append(ds, firstByteSince(b, hc, loc+"&offset=-1&live=long-poll", start))
		}
		reportPercentiles(b, "ttfb", ds)
	})
}

// 1,000 readers follow one live fetch (100 events at 100/s): delivery
// latency from the upstream's send to each reader's receipt, and nothing
// missing or out of order.
func BenchmarkFetchFanout1000(b *testing.B) {
	const readers, events = 1000, 100
	for range b.N {
		up := benchUpstream(b, events, 10*time.Millisecond)
		door, _ := benchDoor(b)
		host := strings.TrimPrefix(up.URL, "http://")
		url := door.URL + "/" + host + "/live?id=fanout"
		hc := benchClient(readers)
		// Start the fetch, then attach everyone while it runs.
		first, err := hc.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		first.Body.Close()
		var (
			mu      sync.Mutex
			lat     []time.Duration
			missing atomic.Int64
			wg      sync.WaitGroup
		)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		b.ResetTimer()
		for range readers {
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := hc.Do(req)
				if err != nil {
					missing.Add(events)
					return
				}
				defer resp.Body.Close()
				attached := time.Now()
				sc := bufio.NewScanner(resp.Body)
				next := 0
				var mine []time.Duration
				for sc.Scan() {
					line, ok := strings.CutPrefix(sc.Text(), "data: ")
					if !ok {
						continue
					}
					now := time.Now()
					f := strings.Fields(line)
					i, _ := strconv.Atoi(f[0])
					sent, _ := strconv.ParseInt(f[1], 10, 64)
					if i != next {
						missing.Add(1)
					}
					next = i + 1
					if at := time.Unix(0, sent); at.After(attached) { // live, not replayed
						mine = append(mine, now.Sub(at))
					}
				}
				missing.Add(int64(events - next))
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		cancel()
		b.StopTimer()
		// Latency of live events only: those the upstream sent after the
		// reader had its response headers (earlier ones were replayed).
		reportPercentiles(b, "delivery", lat)
		b.ReportMetric(float64(missing.Load()), "missing")
	}
}

// 100 upstream fetches at once (50 events at 50/s each): all complete, and
// the Go heap each costs while in flight.
func BenchmarkFetchConcurrent100(b *testing.B) {
	const fetches, events = 100, 50
	for range b.N {
		up := benchUpstream(b, events, 20*time.Millisecond)
		door, mgr := benchDoor(b)
		host := strings.TrimPrefix(up.URL, "http://")
		hc := benchClient(fetches)
		var before, during runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		var bad atomic.Int64
		start := time.Now()
		for i := range fetches {
			wg.Go(func() {
				resp, err := hc.Get(door.URL + "/" + host + "/c?id=" + strconv.Itoa(i))
				if err != nil {
					bad.Add(1)
					return
				}
				resp.Body.Close() // the fetch goes on without its client
			})
		}
		wg.Wait()
		time.Sleep(300 * time.Millisecond) // all in flight, mid-answer
		runtime.GC()
		runtime.ReadMemStats(&during)
		// Wait for all to complete.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			n := 0
			for i := range fetches {
				if f, err := mgr.ByKey("http://" + host + "/c?id=" + strconv.Itoa(i)); err == nil && f.Outcome == fetch.Complete {
					n++
				}
			}
			if n == fetches {
				break
			}
		}
		elapsed := time.Since(start)
		done := 0
		for i := range fetches {
			if f, err := mgr.ByKey("http://" + host + "/c?id=" + strconv.Itoa(i)); err == nil && f.Outcome == fetch.Complete {
				done++
			}
		}
		b.ReportMetric(float64(done), "completed")
		b.ReportMetric(float64(bad.Load()), "failed-starts")
		b.ReportMetric(elapsed.Seconds(), "s-all-complete")
		b.ReportMetric(float64(int64(during.HeapInuse)-int64(before.HeapInuse))/fetches/1024, "heap-KiB/fetch")
	}
}
