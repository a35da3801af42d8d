package crashtest

import (
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durastream/durastream/bench"
)

// The server's memory per durable fetch in flight, measured on a real
// `durastream serve` process (its RSS), so the figure holds the engine's
// streams, the pipes and the upstream connections and nothing of the
// client or the upstreams (they run in this process):
//
//	go test ./crashtest -run '^$' -bench FetchServerRSS -benchtime 1x
//
// Every fetch's upstream sends a small SSE event every 100 ms for 10 s;
// the clients leave after the response headers, as durable fetch allows.
// RSS is sampled after a warm-up (20 completed fetches) and again with all
// fetches in flight; the difference over the count is the cost of one.
func BenchmarkFetchServerRSS(b *testing.B) {
	const events, every = 100, 100 * time.Millisecond
	bin, err := buildServer(b.TempDir(), false)
	if err != nil {
		b.Fatal(err)
	}
	up := tokenUpstream(func(path string) (int, time.Duration) {
		if path == "/warm" {
			return 1, 0
		}
		return events, every
	})
	defer up.Close()
	upHost := strings.TrimPrefix(up.URL, "http://")
	for _, inflight := range []int{100, 1000} {
		b.Run(strconv.Itoa(inflight), func(b *testing.B) {
			for range b.N {
				rss, anon := fetchRSS(b, bin, upHost, inflight)
				b.ReportMetric(rss/1024, "RSS-KiB/fetch")
				b.ReportMetric(anon/1024, "anon-KiB/fetch")
			}
		})
	}
}

// fetchRSS starts a server, puts n fetches in flight and returns the RSS
// bytes each adds, all and anonymous (heap and stacks; the rest is mapped
// stream files).
func fetchRSS(b *testing.B, bin, upHost string, n int) (rss, anon float64) {
	flags, door := fetchDoorFlags(b)
	srv, _, err := startServer(bin, filepath.Join(b.TempDir(), "data"), append(flags, "--fetch-max-concurrent", strconv.Itoa(2*n))...)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.kill()
	door += "/" + upHost
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	get := func(url string) {
		resp, err := hc.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close() // the fetch goes on without its client
		if resp.StatusCode != 200 {
			b.Fatalf("%s: %s", url, resp.Status)
		}
	}
	for i := range 20 {
		get(door + "/warm?i=" + strconv.Itoa(i))
	}
	time.Sleep(time.Second)
	pid := srv.cmd.Process.Pid
	base := medianRSS(b, pid)

	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			get(door + "/live?i=" + strconv.Itoa(i))
		})
	}
	wg.Wait()
	time.Sleep(2 * time.Second) // every fetch in flight, several events stored
	during := medianRSS(b, pid)
	b.Logf("%d fetches in flight: RSS %.1f MB -> %.1f MB, anonymous %.1f MB -> %.1f MB", n,
		float64(base.RSSBytes)/1e6, float64(during.RSSBytes)/1e6, float64(base.AnonBytes)/1e6, float64(during.AnonBytes)/1e6)
	return float64(during.RSSBytes-base.RSSBytes) / float64(n), float64(during.AnonBytes-base.AnonBytes) / float64(n)
}

// medianRSS is the sample of median RSS of five taken 200 ms apart.
func medianRSS(b *testing.B, pid int) bench.ProcSample {
	var ss []bench.ProcSample
	for range 5 {
		s, err := bench.ReadProc(pid)
		if err != nil {
			b.Fatal(err)
		}
		ss = append(ss, s)
		time.Sleep(200 * time.Millisecond)
	}
	slices.SortFunc(ss, func(x, y bench.ProcSample) int { return int(x.RSSBytes - y.RSSBytes) })
	return ss[2]
}
