package tier_test

// Benchmarks of the object-storage tier against a real S3 server
// (versitygw on loopback, serving files from the page cache):
//
//	DURASTREAM_TIER_BENCH_MIB=8192 go test -run '^$' -bench BenchmarkTierCatchup -benchtime 3x -timeout 30m ./tier/
//	go test -run '^$' -bench BenchmarkTierAppend -benchtime 5s -count 3 ./tier/
//	go test -run '^$' -bench BenchmarkTierRecache -benchtime 5x -count 3 ./tier/
//
// BenchmarkTierCatchup fills 8 streams with DURASTREAM_TIER_BENCH_MIB of
// data in all (default 1024) behind a 512 MiB local budget, reports the
// upload throughput of that fill, then reads whole evicted streams:
// through durastream's HTTP catch-up read, and, for comparison, the same
// bytes straight from the S3 server with sequential 1 MiB range GETs and
// with one GET per object.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/tier"
	"github.com/durastream/durastream/tier/s3test"
)

func BenchmarkTierCatchup(b *testing.B) {
	total := int64(1024)
	if v := os.Getenv("DURASTREAM_TIER_BENCH_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 64 {
			b.Fatalf("DURASTREAM_TIER_BENCH_MIB=%q: want at least 64", v)
		}
		total = n
	}
	total <<= 20
	const streams = 8
	const budget = 512 << 20
	s3 := s3test.Start(b)
	dir := b.TempDir()
	cfg := tier.Config{Endpoint: s3.Endpoint, Bucket: s3.Bucket, Prefix: "bench/", AccessKey: s3.AccessKey,
		SecretKey: s3.SecretKey, LocalBudget: budget, IDFile: filepath.Join(dir, "tier-id")}
	tr := newTier(b, cfg)
	eng, err := engine.Open(dir, &engine.Options{Remote: tr, OnRemove: tr.Removed})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	tr.Attach(eng)
	ctx := context.Background()

	// Fill: 1 MiB appends, one stream after the other (each closed when
	// full), a tier round every 256 MiB so the disk never holds much more
	// than the budget: the first streams end up wholly in the bucket.
	chunk := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range chunk {
		chunk[i] = byte(rng.Uint32())
	}
	for s := range streams {
		eng.Create(ctx, fmt.Sprintf("bench/%d", s), engine.CreateOptions{ContentType: "application/octet-stream"})
	}
	start := time.Now()
	var inRounds time.Duration
	per := total >> 20 / streams
	for i := int64(0); i < per*streams; i++ {
		chunk[0], chunk[1] = byte(i), byte(i>>8)
		last := i%per == per-1
		if _, err := eng.Append(ctx, fmt.Sprintf("bench/%d", i/per), chunk, engine.AppendOptions{Close: last}); err != nil {
			b.Fatal(err)
		}
		if (i+1)%256 == 0 {
			t0 := time.Now()
			if err := tr.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			inRounds += time.Since(t0)
		}
	}
	t0 := time.Now()
	if err := tr.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	inRounds += time.Since(t0)
	st := tr.Stats()
	b.Logf("filled %d MiB in %v; uploaded %d segments, %d MiB: %.0f MB/s of tier rounds (upload + verify + manifest + evict), %.0f MB/s per upload request; evicted %d; local segment files %d MiB (budget %d MiB)",
		total>>20, time.Since(start).Round(time.Millisecond), st.Uploads, st.UploadBytes>>20,
		float64(st.UploadBytes)/inRounds.Seconds()/1e6, float64(st.UploadBytes)/st.UploadSeconds/1e6,
		st.Evictions, st.LocalBytes>>20, budget>>20)
	if st.LocalBytes > budget {
		b.Fatalf("local segment files %d bytes, over the %d budget", st.LocalBytes, budget)
	}

	// Streams whose history is all in the bucket, and their objects.
	type obj struct {
		key string
		n   int64
	}
	cold := map[string][]obj{}
	size := map[string]int64{}
	eng.Segments(func(in engine.SegmentInfo) bool {
		size[in.Path] += in.Len
		if in.Remote != "" {
			cold[in.Path] = append(cold[in.Path], obj{in.Remote, in.Len})
		} else {
			cold[in.Path] = append(cold[in.Path], obj{"", in.Len})
		}
		return true
	})
	var paths []string
	for p, objs := range cold {
		if !slices.ContainsFunc(objs, func(o obj) bool { return o.key == "" && o.n > 0 }) {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	if len(paths) == 0 {
		b.Fatal("no stream is wholly evicted: raise DURASTREAM_TIER_BENCH_MIB")
	}
	b.Logf("%d of %d streams wholly in the bucket, %d MiB each", len(paths), streams, size[paths[0]]>>20)

	srv, err := server.New(eng, server.Config{})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	cl := s3.Client(b)

	// Identity encoding, as the S3 reads below: the bytes are random, and
	// gzip is the server's choice for a client that asks for it.
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}

	// All of it is readable: every stream, evicted or local, read whole in
	// one catch-up GET and compared with what was appended.
	t0 = time.Now()
	var read int64
	for s := range streams {
		p := fmt.Sprintf("bench/%d", s)
		resp, err := hc.Get(hs.URL + "/v1/stream/" + p + "?offset=-1")
		if err != nil {
			b.Fatal(err)
		}
		got := make([]byte, len(chunk))
		for i := int64(s) * per; i < int64(s+1)*per; i++ {
			chunk[0], chunk[1] = byte(i), byte(i>>8)
			if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, chunk) {
				b.Fatalf("%s: append %d read back wrong (%v)", p, i-int64(s)*per, err)
			}
			read += int64(len(got))
		}
		if n, _ := io.Copy(io.Discard, resp.Body); n != 0 || resp.StatusCode != 200 {
			b.Fatalf("%s: status %d, %d bytes more than appended", p, resp.StatusCode, n)
		}
		resp.Body.Close()
	}
	b.Logf("all %d streams read back exactly: %d MiB in %v (%d wholly in the bucket)", streams, read>>20,
		time.Since(t0).Round(time.Millisecond), len(paths))

	b.Run("durastream-http", func(b *testing.B) {
		b.SetBytes(size[paths[0]])
		for i := range b.N {
			p := paths[i%len(paths)]
			catchUp(b, hc, hs.URL, p, size[p])
		}
	})
	b.Run("s3-range-get-1MiB", func(b *testing.B) {
		b.SetBytes(size[paths[0]])
		buf := make([]byte, 1<<20)
		for i := range b.N {
			for _, o := range cold[paths[i%len(paths)]] {
				for off := int64(0); off < o.n; off += int64(len(buf)) {
					n := min(int64(len(buf)), o.n-off)
					var opts minio.GetObjectOptions
					opts.SetRange(off, off+n-1)
					r, err := cl.GetObject(ctx, s3.Bucket, o.key, opts)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(r, buf[:n]); err != nil {
						b.Fatal(err)
					}
					r.Close()
				}
			}
		}
	})
	b.Run("s3-get-whole-objects", func(b *testing.B) {
		b.SetBytes(size[paths[0]])
		for i := range b.N {
			for _, o := range cold[paths[i%len(paths)]] {
				r, err := cl.GetObject(ctx, s3.Bucket, o.key, minio.GetObjectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, r); err != nil || n != o.n {
					b.Fatalf("get %s: %d of %d, %v", o.key, n, o.n, err)
				}
				r.Close()
			}
		}
	})
}

// catchUp reads a whole stream with one catch-up GET and checks its size.
func catchUp(b *testing.B, hc *http.Client, base, path string, size int64) {
	resp, err := hc.Get(base + "/v1/stream/" + path + "?offset=-1")
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || n != size {
		b.Fatalf("catch-up of %s: %d, %d of %d bytes, %v", path, resp.StatusCode, n, size, err)
	}
}

// BenchmarkTierAppend: 1 KiB appends from 32 goroutines to 64 streams,
// with the tier off and on: a scan every 200 ms uploading segments sealed
// when full (and, in tier-on-seal-200ms, also every 200 ms) and evicting
// past a 64 MiB budget all through the run. Reports appends/s and the p99
// append latency. As fast as the appenders go (saturating the 2 cores),
// and paced at DURASTREAM_TIER_BENCH_RATE appends/s in all (default
// 20,000; latency counted from each append's scheduled start, so an
// append that falls behind counts its wait).
func BenchmarkTierAppend(b *testing.B) {
	rate := 20000
	if v, err := strconv.Atoi(os.Getenv("DURASTREAM_TIER_BENCH_RATE")); err == nil && v > 0 {
		rate = v
	}
	for _, v := range []struct {
		name  string
		on    bool
		seal  time.Duration
		down  bool
		paced bool
	}{
		{name: "tier-off"},
		{name: "tier-on", on: true},
		{name: "tier-on-seal-200ms", on: true, seal: 200 * time.Millisecond},
		// The tier's own cost on the append path, without the CPU of
		// uploads (MD5, HTTP, and the S3 server, on the same 2 cores):
		// the bucket refuses every connection.
		{name: "tier-on-bucket-down", on: true, seal: 200 * time.Millisecond, down: true},
		// An append load the machine carries with CPU to spare.
		{name: "paced/tier-off", paced: true},
		{name: "paced/tier-on", on: true, paced: true},
	} {
		b.Run(v.name, func(b *testing.B) {
			opts := &engine.Options{}
			var tr *tier.Tier
			if v.on {
				s3 := s3test.Start(b)
				cfg := tier.Config{Endpoint: s3.Endpoint, Bucket: s3.Bucket, AccessKey: s3.AccessKey,
					SecretKey: s3.SecretKey, LocalBudget: 64 << 20, ScanInterval: 200 * time.Millisecond,
					IDFile: filepath.Join(b.TempDir(), "tier-id")}
				var px *s3test.Proxy
				if v.down {
					px = s3test.NewProxy(b, s3.Endpoint)
					cfg.Endpoint = px.Endpoint
				}
				tr = newTier(b, cfg) // its Check reaches the bucket
				if v.down {
					px.SetMode(s3test.Refuse)
				}
				opts.Remote, opts.OnRemove, opts.SealAfter = tr, tr.Removed, v.seal
			}
			eng, err := engine.Open(b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close()
			if v.on {
				tr.Start(eng)
				defer tr.Close()
			}
			ctx := context.Background()
			const streams, goroutines = 64, 32
			for s := range streams {
				eng.Create(ctx, fmt.Sprintf("a/%d", s), engine.CreateOptions{ContentType: "application/octet-stream"})
			}
			body := make([]byte, 1024)
			var mu sync.Mutex
			var lat []time.Duration
			var next int64
			every := time.Duration(goroutines) * time.Second / time.Duration(rate) // per goroutine
			b.SetParallelism(goroutines / 2)                                       // 32 goroutines on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				mu.Lock()
				s := next
				next++
				mu.Unlock()
				due := start.Add(time.Duration(s) * every / goroutines) // spread the goroutines' starts
				for pb.Next() {
					t0 := time.Now()
					if v.paced {
						time.Sleep(time.Until(due))
						t0 = due
						due = due.Add(every)
					}
					if _, err := eng.Append(ctx, fmt.Sprintf("a/%d", s%streams), body, engine.AppendOptions{}); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
					s++
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
			if v.on {
				st := tr.Stats()
				b.ReportMetric(float64(st.Uploads), "uploads")
				b.ReportMetric(float64(st.Evictions), "evictions")
			}
		})
	}
}

// BenchmarkTierRecache: a 48 MiB stream wholly evicted (segment files get
// 32 MiB of a 96 MiB budget, the read cache 64 MiB), read whole over HTTP:
// "cold" with an empty read cache (a new Tier and engine each time, which
// is not timed), "cached" again and again once the first read filled it.
func BenchmarkTierRecache(b *testing.B) {
	s3 := s3test.Start(b)
	dir, cacheDir := b.TempDir(), b.TempDir()
	cfg := tier.Config{Endpoint: s3.Endpoint, Bucket: s3.Bucket, Prefix: "bench/", AccessKey: s3.AccessKey,
		SecretKey: s3.SecretKey, LocalBudget: 96 << 20, CacheBytes: 64 << 20, CacheDir: cacheDir,
		IDFile: filepath.Join(dir, "tier-id")}
	var eng *engine.Engine
	var tr *tier.Tier
	open := func() {
		if eng != nil {
			eng.Close()
		}
		tr = newTier(b, cfg)
		var err error
		if eng, err = engine.Open(dir, &engine.Options{Remote: tr, OnRemove: tr.Removed}); err != nil {
			b.Fatal(err)
		}
		tr.Attach(eng)
	}
	open()
	defer func() { eng.Close() }()
	ctx := context.Background()
	chunk := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range chunk {
		chunk[i] = byte(rng.Uint32())
	}
	const size = 48 << 20
	for _, s := range []struct {
		path string
		mib  int
	}{{"hot", size >> 20}, {"filler", 64}} {
		eng.Create(ctx, s.path, engine.CreateOptions{ContentType: "application/octet-stream"})
		for i := range s.mib {
			if _, err := eng.Append(ctx, s.path, chunk, engine.AppendOptions{Close: i == s.mib-1}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tr.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	eng.Segments(func(in engine.SegmentInfo) bool {
		if in.Path == "hot" && in.Remote == "" && in.Len > 0 {
			b.Fatalf("a segment of the hot stream is still local: %+v", in)
		}
		return true
	})
	eng.Checkpoint()
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	serve := func() *httptest.Server {
		srv, err := server.New(eng, server.Config{})
		if err != nil {
			b.Fatal(err)
		}
		return httptest.NewServer(srv)
	}
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			b.StopTimer()
			open() // an empty read cache
			hs := serve()
			b.StartTimer()
			catchUp(b, hc, hs.URL, "hot", size)
			b.StopTimer()
			hs.Close()
			b.StartTimer()
		}
	})
	b.Run("cached", func(b *testing.B) {
		hs := serve()
		defer hs.Close()
		catchUp(b, hc, hs.URL, "hot", size) // fills the cache
		remote := tr.Stats().RemoteReads
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			catchUp(b, hc, hs.URL, "hot", size)
		}
		b.StopTimer()
		if st := tr.Stats(); st.RemoteReads != remote {
			b.Fatalf("cached reads went to the bucket: %d range GETs", st.RemoteReads-remote)
		}
	})
}
