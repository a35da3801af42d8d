package bench

// Subscriptions' cost on the append path and their delivery speed.
//
//	go test ./bench -run '^$' -bench 'HandlerAppendSubs' -benchtime 20000x -count 5
//	go test ./bench -run '^$' -bench 'WebhookWake|PullWakeRoundTrip' -benchtime 2000x
//
// BenchmarkHandlerAppendSubs: the BenchmarkHandlerAppend g=64 load with 0,
// 1,000 and 10,000 subscriptions whose patterns match other streams
// (subs-N/*: the appended streams under b/ are linked to none).
// BenchmarkHandlerAppendSubsLinked: the same with 1,000 subscriptions that
// all match the appended streams, webhooks to a local receiver.
// BenchmarkWebhookWake: append -> signed webhook received by a local
// receiver that answers {"done": true}; reports p50/p99.
// BenchmarkPullWakeRoundTrip: claim + ack(done) round trips per second.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/subs"
)

func newSubsBenchSrv(b *testing.B) (*benchSrv, *subs.Manager) {
	b.Helper()
	eng, err := engine.Open(b.TempDir(), &engine.Options{Durability: engine.DurabilitySync})
	if err != nil {
		b.Fatal(err)
	}
	m, err := subs.New(eng, subs.Options{DevWebhooks: true})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(eng, server.Config{LongPollTimeout: time.Second, Subscriptions: m})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		srv.Shutdown()
		m.Close()
		eng.Close()
	})
	return &benchSrv{eng: eng, srv: srv}, m
}

func BenchmarkHandlerAppendSubs(b *testing.B) {
	for _, n := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			s, m := newSubsBenchSrv(b)
			for i := range n {
				body := fmt.Sprintf(`{"type":"webhook","pattern":"subs-%d/*","webhook":{"url":"https://hooks.example.com/%d"}}`, i, i)
				if _, _, err := m.Put("s"+strconv.Itoa(i), []byte(body), "http://bench/v1/stream/", nil); err != nil {
					b.Fatal(err)
				}
			}
			// The subscriptions' state streams are written now, not during
			// the measurement.
			if err := s.eng.Checkpoint(); err != nil {
				b.Fatal(err)
			}
			appendLoad(b, s)
		})
	}
}

func appendLoad(b *testing.B, s *benchSrv) {
	const g = 64
	body := payload(100)
	tmpls := make([]*http.Request, g)
	for w := range tmpls {
		p := "/v1/stream/b/" + strconv.Itoa(w)
		s.create(b, p, octet)
		tmpls[w] = req(http.MethodPost, p, octet)
	}
	b.SetBytes(int64(len(body)))
	cpu0 := cpuTime()
	parallelOps(b, g, func(w int, dw *discardWriter) int { return s.serve(dw, tmpls[w], body) })
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func BenchmarkWebhookWake(b *testing.B) {
	got := make(chan time.Time, 1024)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- time.Now()
		io.WriteString(w, `{"done":true}`)
	}))
	defer rc.Close()
	s, m := newSubsBenchSrv(b)
	if _, _, err := m.Put("wh", []byte(`{"type":"webhook","pattern":"w/*","webhook":{"url":"`+rc.URL+`"}}`), "http://bench/v1/stream/", nil); err != nil {
		b.Fatal(err)
	}
	s.create(b, "/v1/stream/w/1", octet)
	tmpl := req(http.MethodPost, "/v1/stream/w/1", octet)
	dw := &discardWriter{}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if code := s.serve(dw, tmpl, payload(100)); code != 204 {
			b.Fatalf("append: %d", code)
		}
		select {
		case t1 := <-got:
			lat = append(lat, t1.Sub(t0))
		case <-time.After(10 * time.Second):
			b.Fatal("no webhook within 10 s")
		}
		// The done answer is applied after the receiver answers: wait for
		// the subscription to be idle so the next append wakes at once.
		waitIdle(b, m, "wh", "w/1", dw.Header().Get("Stream-Next-Offset"))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// waitIdle waits until subscription id has acked stream p up to tail.
func waitIdle(b *testing.B, m *subs.Manager, id, p, tail string) {
	for deadline := time.Now().Add(5 * time.Second); ; {
		v, _ := m.Get(id)
		var st struct {
			Streams []struct {
				Path  string `json:"path"`
				Acked string `json:"acked_offset"`
			} `json:"streams"`
		}
		json.Unmarshal(v, &st)
		for _, l := range st.Streams {
			if l.Path == p && l.Acked == tail {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("subscription %s did not ack %s to %s: %s", id, p, tail, v)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func BenchmarkPullWakeRoundTrip(b *testing.B) {
	s, m := newSubsBenchSrv(b)
	s.create(b, "/v1/stream/wake/pool", "application/json")
	if _, _, err := m.Put("pw", []byte(`{"type":"pull-wake","pattern":"p/*","wake_stream":"wake/pool"}`), "http://bench/v1/stream/", nil); err != nil {
		b.Fatal(err)
	}
	s.create(b, "/v1/stream/p/1", octet)
	tmpl := req(http.MethodPost, "/v1/stream/p/1", octet)
	dw := &discardWriter{}
	b.ResetTimer()
	for range b.N {
		if code := s.serve(dw, tmpl, payload(100)); code != 204 {
			b.Fatalf("append: %d", code)
		}
		out, err := m.Claim("pw", []byte(`{"worker":"bench"}`))
		if err != nil {
			b.Fatal(err)
		}
		var cl struct {
			WakeID     string `json:"wake_id"`
			Generation uint64 `json:"generation"`
			Token      string `json:"token"`
			Streams    []struct {
				Path string `json:"path"`
				Tail string `json:"tail_offset"`
			} `json:"streams"`
		}
		json.Unmarshal(out, &cl)
		acks := make([]map[string]string, 0, len(cl.Streams))
		for _, st := range cl.Streams {
			acks = append(acks, map[string]string{"stream": st.Path, "offset": st.Tail})
		}
		body, _ := json.Marshal(map[string]any{"wake_id": cl.WakeID, "generation": cl.Generation, "acks": acks, "done": true})
		if _, err := m.Ack("pw", cl.Token, body); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "round-trips/s")
}
