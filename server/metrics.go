package server

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
)

// metrics are exported in the Prometheus text format at /metrics.
type metrics struct {
	requests      *xsync.MapOf[reqKey, *atomic.Uint64]
	appendLatency *histogram
}

type reqKey struct {
	op     string
	status int
}

func newMetrics() *metrics {
	return &metrics{
		requests:      xsync.NewMapOf[reqKey, *atomic.Uint64](),
		appendLatency: newHistogram([]float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1}),
	}
}

func (m *metrics) observeRequest(op string, status int) {
	if status == 0 {
		status = http.StatusOK
	}
	c, _ := m.requests.LoadOrCompute(reqKey{op, status}, func() *atomic.Uint64 { return new(atomic.Uint64) })
	c.Add(1)
}

// histogram is a fixed-bucket latency histogram in seconds.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, plus +Inf
	sumNs  atomic.Uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	v := d.Seconds()
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(d))
}

func (h *histogram) write(w io.Writer, name, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, cum, name,
		float64(h.sumNs.Load())/1e9, name, cum)
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	m := s.metrics
	fmt.Fprintf(w, "# HELP durastream_requests_total HTTP requests by operation and status.\n# TYPE durastream_requests_total counter\n")
	type row struct {
		k reqKey
		v uint64
	}
	var rows []row
	m.requests.Range(func(k reqKey, v *atomic.Uint64) bool { rows = append(rows, row{k, v.Load()}); return true })
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].k.op != rows[j].k.op {
			return rows[i].k.op < rows[j].k.op
		}
		return rows[i].k.status < rows[j].k.status
	})
	for _, r := range rows {
		fmt.Fprintf(w, "durastream_requests_total{op=%q,status=\"%d\"} %d\n", r.k.op, r.k.status, r.v)
	}
	m.appendLatency.write(w, "durastream_append_duration_seconds", "Time to acknowledge an append (durable).")
	st := s.eng.Stats()
	gauge := func(name, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %v\n", name, help, name, name, v)
	}
	counter := func(name, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %v\n", name, help, name, name, v)
	}
	gauge("durastream_live_readers", "Long-poll and SSE readers waiting or streaming.", s.readers.Load())
	gauge("durastream_streams", "Streams stored.", st.Streams)
	gauge("durastream_stored_bytes", "Stream bytes stored (own data of all streams).", st.StoredBytes)
	gauge("durastream_mapped_segments", "Stream segments currently memory-mapped.", st.MappedSegments)
	counter("durastream_commit_fsyncs_total", "Commit-log syncs.", st.Fsyncs)
	counter("durastream_commit_records_total", "Commit-log records committed (divide by fsyncs for the mean batch).", st.CommitRecords)
	counter("durastream_commit_sync_seconds_total", "Time spent syncing the commit log.", st.SyncTime.Seconds())
	if s.cfg.ExtraMetrics != nil {
		s.cfg.ExtraMetrics(w)
	}
}
