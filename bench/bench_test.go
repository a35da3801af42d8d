package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
)

// startDurastream serves a sync-mode engine in t.TempDir() on loopback.
func startDurastream(t testing.TB) string {
	t.Helper()
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilitySync})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(eng, server.Config{LongPollTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Shutdown()
		ts.Close()
		eng.Close()
	})
	return ts.URL
}

func startNull(t testing.TB) string {
	t.Helper()
	h := NewNullHandler()
	h.LongPollTimeout = 500 * time.Millisecond
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

// small returns a configuration that runs a scenario in about 200 ms.
func small(url, scenario string) Config {
	return Config{
		URL: url, Scenario: scenario, Duration: 200 * time.Millisecond,
		Concurrency: 4, Readers: 2, Prefill: 1 << 20, Subscribers: 10, Rate: 200,
		Drain: 2 * time.Second, Streams: 300, Timeout: 10 * time.Second,
		PID: os.Getpid(), Cleanup: true,
	}
}

func TestScenarios(t *testing.T) {
	targets := map[string]func(testing.TB) string{"durastream": startDurastream, "null": startNull}
	for name, start := range targets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := start(t)
			for _, sc := range []string{"append-small", "append-shared", "append-json", "append-large",
				"create-burst", "catchup-read", "fanout-sse", "fanout-longpoll", "many-streams"} {
				t.Run(sc, func(t *testing.T) {
					cfg := small(url, sc)
					switch sc {
					case "append-large":
						cfg.Size = 256 << 10
					case "many-streams":
						cfg.Duration = 20 * time.Second // an upper bound: it stops after Streams
					}
					res, err := Run(context.Background(), cfg)
					if err != nil {
						t.Fatal(err)
					}
					checkResult(t, res)
					var b strings.Builder
					res.WriteTable(&b)
					if !strings.Contains(b.String(), sc) {
						t.Errorf("table lacks the scenario name:\n%s", b.String())
					}
				})
			}
		})
	}
}

func checkResult(t *testing.T, res *Result) {
	t.Helper()
	if res.Errors != 0 || res.Non2xx != 0 {
		t.Errorf("%d errors, %d non-2xx %v; notes %v", res.Errors, res.Non2xx, res.Statuses, res.Notes)
	}
	if res.Ops == 0 || res.ElapsedS <= 0 {
		t.Errorf("ops %d in %.3f s", res.Ops, res.ElapsedS)
	}
	if res.Server == nil || res.Server.SampleError != "" || res.Server.RSSEndMB <= 0 {
		t.Errorf("server sampling: %+v", res.Server)
	}
	switch res.Scenario {
	case "catchup-read":
		if res.Bytes < 1<<20 || res.TTFB == nil {
			t.Errorf("catch-up read %d bytes, ttfb %v", res.Bytes, res.TTFB)
		}
	case "fanout-sse", "fanout-longpoll":
		f := res.Fanout
		if f.Connected != f.Subscribers || f.Acked == 0 || f.Missing+f.Duplicates+f.OutOfOrder != 0 ||
			f.Delivered != f.Expected || f.Delivery == nil || f.SubErrors != 0 {
			t.Errorf("fan-out: %+v (notes %v)", f, res.Notes)
		}
	case "many-streams":
		if m := res.Many; m == nil || !m.Complete || m.Created != 300 {
			t.Errorf("many-streams: %+v", m)
		}
	case "append-json":
		if res.Messages != 10*res.Ops {
			t.Errorf("append-json: %d messages for %d appends", res.Messages, res.Ops)
		}
	}
}

func TestUnknownScenario(t *testing.T) {
	if _, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1", Scenario: "nope"}); err == nil {
		t.Fatal("want an error")
	}
}

func TestServerDown(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	cfg := small(url, "append-small")
	cfg.PID = 0
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Fatal("want an error from a server that is not there")
	}
}

func TestMachine(t *testing.T) {
	t.Parallel()
	res, err := Run(context.Background(), Config{Scenario: "machine", Dir: t.TempDir(), MachineMiB: 4, MachineSyncs: 20})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Machine
	if m == nil || m.Fsync4KN != 20 || m.Fsync4KP50Ms <= 0 || m.SeqWriteMBs <= 0 || m.MemcpyGBs <= 0 || m.CPUs <= 0 {
		t.Fatalf("machine: %+v", m)
	}
}

func TestReadProc(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes <= 0 || s.Threads <= 0 || s.CPUSeconds < 0 || s.HWMBytes < s.RSSBytes {
		t.Fatalf("%+v", s)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("want an error for a missing pid")
	}
}

func TestMessageFormat(t *testing.T) {
	msg := payload(100)
	msg[10], msg[27] = ' ', ' '
	putDigits(msg[0:10], 1234567)
	putDigits(msg[11:27], uint64(3*time.Second))
	seq, sent, ok := parseMsg(msg[:len(msg)-1])
	if !ok || seq != 1234567 || sent != 3*time.Second {
		t.Fatalf("parseMsg(%q) = %d, %v, %v", msg, seq, sent, ok)
	}
	for _, bad := range []string{"", "abc", "0000000001x0000000000000001", "00000000a1 0000000000000001"} {
		if _, _, ok := parseMsg([]byte(bad)); ok {
			t.Errorf("parseMsg(%q) accepted", bad)
		}
	}
}

func TestNullHandlerReads(t *testing.T) {
	h := NewNullHandler()
	ts := httptest.NewServer(h)
	defer ts.Close()
	u := ts.URL + "/v1/stream/x"
	do := func(method, url, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, _ := do("PUT", u, ""); resp.StatusCode != 201 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	do("POST", u, "hello ")
	big := strings.Repeat("z", 2000) // not kept: reads as zeros
	do("POST", u, big)
	resp, _ := do("POST", u, "world")
	if resp.StatusCode != 204 || resp.Header.Get("Stream-Next-Offset") != formatOffset(2011) {
		t.Fatalf("POST: %d %q", resp.StatusCode, resp.Header.Get("Stream-Next-Offset"))
	}
	resp, body := do("GET", u+"?offset=-1", "")
	if want := "hello " + strings.Repeat("\x00", 2000) + "world"; body != want || resp.Header.Get("Stream-Up-To-Date") != "true" {
		t.Fatalf("catch-up: %d bytes %q...", len(body), body[:min(len(body), 10)])
	}
	_, body = do("GET", u+"?offset="+formatOffset(2006), "")
	if body != "world" {
		t.Fatalf("read from 2006: %q", body)
	}
	// Long-poll at the tail times out with 204.
	h.LongPollTimeout = 50 * time.Millisecond
	resp, _ = do("GET", u+"?offset=now&live=long-poll", "")
	if resp.StatusCode != 204 || resp.Header.Get("Stream-Next-Offset") != formatOffset(2011) {
		t.Fatalf("long-poll: %d %q", resp.StatusCode, resp.Header.Get("Stream-Next-Offset"))
	}
	// Paths are separate streams.
	resp, body = do("GET", ts.URL+"/v1/stream/other?offset=-1", "")
	if body != "" || resp.Header.Get("Stream-Next-Offset") != formatOffset(0) {
		t.Fatalf("other stream: %q %q", body, resp.Header.Get("Stream-Next-Offset"))
	}
}

func TestReport(t *testing.T) {
	now := time.Now()
	var rs []*Result
	mk := func(label, sc string, round int, ops float64, p99 float64) *Result {
		return &Result{Scenario: sc, Label: label, Round: round, Start: now, ElapsedS: 5, DurationS: 5, OpsPerSec: ops, MBPerSec: ops / 10,
			Latency: &Summary{Count: 10, P50: p99 / 2, P99: p99, Max: p99 * 2}, Concurrency: 32, MsgBytes: 100}
	}
	for round := 1; round <= 3; round++ {
		rs = append(rs, mk("durastream", "append-small", round, 20000+float64(round), 3), mk("reference", "append-small", round, 1000, 30))
	}
	rs = append(rs, mk("null", "append-small", 1, 22000, 2))
	rs = append(rs, &Result{Scenario: "append-small", Label: "reference", Round: 4, Start: now, Error: "boom"})
	rs = append(rs, &Result{Scenario: "machine", Start: now, ElapsedS: 1, Machine: &MachineStats{CPUs: 2, SeqWriteMBs: 700, Fsync4KP50Ms: 0.3, MemcpyGBs: 6}})
	many := mk("durastream", "many-streams", 1, 9000, 5)
	many.Many = &ManyStats{Target: 1_000_000, Created: 1_000_000, CreatesPerSec: 9000, RSSAfterMB: 800, RSSPerStreamB: 780, Complete: true}
	rs = append(rs, many)
	hundredK := mk("durastream", "many-streams", 1, 4000, 5)
	hundredK.Many = &ManyStats{Target: 100_000, Created: 100_000, CreatesPerSec: 4000, RSSAfterMB: 150, RSSPerStreamB: 1500, Complete: true}
	rs = append(rs, hundredK)
	md, err := Report(rs, ReportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := string(md)
	for _, want := range []string{"## Machine limits", "## Targets", "| append-small | ≥ 10× reference appends/s | 20,002 vs 1,000/s = 20.0× | **met** |",
		"| append-small | ≥ 80% of the null server | 20,002 vs 22,000/s = 91% | **met** |", "20,002 (20,001–20,003)",
		"reference round 4: **boom**", "1,000,000 streams with ≤ 1 GiB server RSS", "### many-streams at 1,000,000",
		"| streams created | 100,000 |"} { // the million run stays out of the A/B table
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
