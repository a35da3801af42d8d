package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is one run of one scenario against one server. It is printed as
// one JSON line; zero fields are omitted.
type Result struct {
	Scenario string    `json:"scenario"`
	Label    string    `json:"label,omitempty"` // which server: durastream, reference, null, ...
	Round    int       `json:"round,omitempty"`
	URL      string    `json:"url,omitempty"`
	Start    time.Time `json:"start"`

	Concurrency int     `json:"concurrency,omitempty"`
	DurationS   float64 `json:"duration_s,omitempty"` // the configured timed phase (-duration)
	MsgBytes    int     `json:"msg_bytes,omitempty"`
	ElapsedS    float64 `json:"elapsed_s"` // length of the timed phase

	Ops       int64         `json:"ops"`                 // completed operations (see OpName)
	OpName    string        `json:"op_name,omitempty"`   // what one op is
	OpsPerSec float64       `json:"ops_per_s"`           //
	Requests  int64         `json:"requests,omitempty"`  // HTTP requests made in the timed phase
	ReqPerSec float64       `json:"req_per_s,omitempty"` //
	Messages  int64         `json:"messages,omitempty"`  // messages appended (JSON arrays count each element)
	MsgPerSec float64       `json:"msg_per_s,omitempty"` //
	Bytes     int64         `json:"bytes,omitempty"`     // payload bytes sent or received
	MBPerSec  float64       `json:"mb_per_s,omitempty"`  // Bytes / ElapsedS / 1e6
	Errors    int64         `json:"errors"`              // transport errors and timeouts
	Non2xx    int64         `json:"non_2xx"`             // responses with a status outside 200-299
	Statuses  map[int]int64 `json:"statuses,omitempty"`  // non-2xx status counts

	Latency *Summary `json:"latency_ms,omitempty"` // per op (or per request where stated)
	TTFB    *Summary `json:"ttfb_ms,omitempty"`    // catchup-read: first byte of a full read

	Fanout *FanoutStats `json:"fanout,omitempty"`
	Many   *ManyStats   `json:"many,omitempty"`
	Server *ServerStats `json:"server,omitempty"`

	ClientCPUS   float64 `json:"client_cpu_s"`             // the generator's own CPU time in the timed phase
	ClientCPUPct float64 `json:"client_cpu_pct,omitempty"` // of one core

	Machine *MachineStats `json:"machine,omitempty"`
	Notes   []string      `json:"notes,omitempty"`
	Error   string        `json:"error,omitempty"` // the run failed (the figures may be partial or absent)
}

// Summary is a latency distribution in milliseconds.
type Summary struct {
	Count int64   `json:"n"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// FanoutStats describes a fan-out run.
type FanoutStats struct {
	Mode        string   `json:"mode"` // sse or long-poll
	Subscribers int      `json:"subscribers"`
	Connected   int      `json:"connected"` // subscribers that got a first response before the writer started
	TargetRate  float64  `json:"target_rate"`
	Sent        int64    `json:"sent"`          // messages written by the pipelined writer
	Acked       int64    `json:"acked"`         // 2xx acknowledgements
	SentRate    float64  `json:"sent_rate"`     // offered messages/s
	AckedRate   float64  `json:"achieved_rate"` // acknowledged messages/s
	Expected    int64    `json:"expected"`      // acked messages x connected subscribers
	Delivered   int64    `json:"delivered"`     // deliveries of acked messages (first copy)
	Missing     int64    `json:"missing"`
	Duplicates  int64    `json:"duplicates"`
	OutOfOrder  int64    `json:"out_of_order"`
	Reconnects  int64    `json:"reconnects"`
	SubErrors   int64    `json:"subscriber_errors"`
	Delivery    *Summary `json:"delivery_ms,omitempty"` // append sent -> message parsed by a subscriber
	Ack         *Summary `json:"ack_ms,omitempty"`      // append sent -> 2xx parsed
}

// ManyStats describes a many-streams run.
type ManyStats struct {
	Target         int     `json:"target_streams"`
	Created        int64   `json:"created"`
	CreatesPerSec  float64 `json:"creates_per_s"`
	RSSBeforeMB    float64 `json:"rss_before_mb,omitempty"`
	RSSAfterMB     float64 `json:"rss_after_mb,omitempty"`
	RSSPerStreamB  float64 `json:"rss_per_stream_bytes,omitempty"`
	AnonAfterMB    float64 `json:"rss_anon_after_mb,omitempty"` // of RSSAfterMB: anonymous (heap)
	FileAfterMB    float64 `json:"rss_file_after_mb,omitempty"` // of RSSAfterMB: mapped file pages
	AnonPerStreamB float64 `json:"anon_per_stream_bytes,omitempty"`
	Complete       bool    `json:"complete"` // all Target streams were created in time
}

// ServerStats is what /proc said about the server during the timed phase.
type ServerStats struct {
	PID          int     `json:"pid"`
	CPUS         float64 `json:"cpu_s"`             // user+system CPU seconds used
	CPUPct       float64 `json:"cpu_pct"`           // of one core
	OpsPerCPUS   float64 `json:"ops_per_cpu_s"`     // Ops / CPUS
	RSSStartMB   float64 `json:"rss_start_mb"`      //
	RSSEndMB     float64 `json:"rss_end_mb"`        //
	RSSPeakMB    float64 `json:"rss_peak_mb"`       // highest sample (every 100 ms)
	RSSAnonEndMB float64 `json:"rss_anon_end_mb"`   // of RSSEndMB: anonymous (heap, stacks)
	RSSFileEndMB float64 `json:"rss_file_end_mb"`   // of RSSEndMB: mapped file pages
	Threads      int     `json:"threads,omitempty"` // at the end
	SampleError  string  `json:"sample_error,omitempty"`
}

// MachineStats are the machine's limits (scenario "machine").
type MachineStats struct {
	Dir              string  `json:"dir"`
	Fsync4KP50Ms     float64 `json:"fsync_4k_p50_ms"` // 4 KiB pwrite + fdatasync
	Fsync4KP99Ms     float64 `json:"fsync_4k_p99_ms"`
	Fsync4KN         int     `json:"fsync_4k_n"`
	SeqWriteMBs      float64 `json:"seq_write_fsync_mb_per_s"` // 1 MiB write + fdatasync, sequential
	SeqWriteMiB      int     `json:"seq_write_mib"`
	SeqWriteNoSyncMB float64 `json:"seq_write_nosync_mb_per_s"` // same writes, one fdatasync at the end
	MemcpyGBs        float64 `json:"memcpy_gb_per_s"`
	MmapSync4KP50Ms  float64 `json:"mmap_msync_4k_p50_ms,omitempty"`      // 4 KiB copied into a fallocated mapping + msync
	MmapWriteMBs     float64 `json:"mmap_write_msync_mb_per_s,omitempty"` // 1 MiB copied into a fallocated mapping + msync
	CPUs             int     `json:"cpus"`
	CPUModel         string  `json:"cpu_model,omitempty"`
	MemGiB           float64 `json:"mem_gib,omitempty"`
	Kernel           string  `json:"kernel,omitempty"`
}

// summarize turns a microsecond histogram into a millisecond Summary.
func summarize(h *hdrhistogram.Histogram) *Summary {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	ms := func(us int64) float64 { return round3(float64(us) / 1000) }
	return &Summary{
		Count: h.TotalCount(),
		Mean:  round3(h.Mean() / 1000),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

func round3(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*1000) / 1000
}

func rate(n int64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return round3(float64(n) / secs)
}

// JSON returns the result as one line of JSON.
func (r *Result) JSON() []byte {
	b, err := json.Marshal(r)
	if err != nil { // cannot happen: plain fields only
		return []byte(fmt.Sprintf(`{"error":%q}`, err))
	}
	return b
}

// WriteTable writes a readable summary of the result.
func (r *Result) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	title := r.Scenario
	if r.Label != "" {
		title += " [" + r.Label + "]"
	}
	if r.Round > 0 {
		title += fmt.Sprintf(" round %d", r.Round)
	}
	fmt.Fprintf(tw, "== %s  %s\n", title, r.URL)
	if r.Error != "" {
		fmt.Fprintf(tw, "  error\t%s\n", r.Error)
	}
	row := func(k string, format string, a ...any) {
		fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, a...)...)
	}
	if r.Machine != nil {
		m := r.Machine
		row("cpus / memory", "%d / %.1f GiB  %s", m.CPUs, m.MemGiB, m.CPUModel)
		row("4 KiB write+fdatasync", "p50 %.3f ms  p99 %.3f ms  (n=%d, %s)", m.Fsync4KP50Ms, m.Fsync4KP99Ms, m.Fsync4KN, m.Dir)
		row("1 MiB write+fdatasync", "%.1f MB/s over %d MiB", m.SeqWriteMBs, m.SeqWriteMiB)
		row("1 MiB write, one sync", "%.1f MB/s", m.SeqWriteNoSyncMB)
		row("memcpy", "%.2f GB/s", m.MemcpyGBs)
		row("4 KiB mmap+msync", "p50 %.3f ms (fallocated, mapped; the commit log now overwrites zero-filled blocks)", m.MmapSync4KP50Ms)
		row("1 MiB mmap+msync", "%.1f MB/s (fallocated, mapped; large appends now use pwrite)", m.MmapWriteMBs)
		tw.Flush()
		return
	}
	row("elapsed", "%.2f s  concurrency %d  msg %d B", r.ElapsedS, r.Concurrency, r.MsgBytes)
	row(orDefault(r.OpName, "ops"), "%d  (%.1f/s)", r.Ops, r.OpsPerSec)
	if r.Requests > 0 && r.Requests != r.Ops {
		row("requests", "%d  (%.1f/s)", r.Requests, r.ReqPerSec)
	}
	if r.Messages > 0 && r.Messages != r.Ops {
		row("messages", "%d  (%.1f/s)", r.Messages, r.MsgPerSec)
	}
	if r.Bytes > 0 {
		row("bytes", "%d  (%.1f MB/s)", r.Bytes, r.MBPerSec)
	}
	row("errors / non-2xx", "%d / %d %s", r.Errors, r.Non2xx, statusString(r.Statuses))
	if s := r.Latency; s != nil {
		row("latency ms", "%s", s)
	}
	if s := r.TTFB; s != nil {
		row("first byte ms", "%s", s)
	}
	if f := r.Fanout; f != nil {
		row("subscribers", "%d connected of %d (%s)", f.Connected, f.Subscribers, f.Mode)
		row("writer", "sent %d (%.1f/s) acked %d (%.1f/s) target %.0f/s", f.Sent, f.SentRate, f.Acked, f.AckedRate, f.TargetRate)
		row("deliveries", "%d of %d expected; missing %d dup %d out-of-order %d", f.Delivered, f.Expected, f.Missing, f.Duplicates, f.OutOfOrder)
		row("reconnects / sub errors", "%d / %d", f.Reconnects, f.SubErrors)
		if f.Delivery != nil {
			row("delivery ms", "%s", f.Delivery)
		}
		if f.Ack != nil {
			row("append ack ms", "%s", f.Ack)
		}
	}
	if m := r.Many; m != nil {
		row("streams", "%d of %d (complete %v), %.1f creates/s", m.Created, m.Target, m.Complete, m.CreatesPerSec)
		if m.RSSAfterMB > 0 {
			row("server RSS", "%.1f -> %.1f MB, %.0f B per stream (anonymous %.1f MB, %.0f B per stream; mapped files %.1f MB)",
				m.RSSBeforeMB, m.RSSAfterMB, m.RSSPerStreamB, m.AnonAfterMB, m.AnonPerStreamB, m.FileAfterMB)
		}
	}
	if s := r.Server; s != nil {
		if s.SampleError != "" {
			row("server", "pid %d: %s", s.PID, s.SampleError)
		} else {
			row("server", "pid %d cpu %.2f s (%.0f%%) %.0f ops/cpu-s  rss %.1f -> %.1f MB (peak %.1f; at the end %.1f anonymous, %.1f mapped files)",
				s.PID, s.CPUS, s.CPUPct, s.OpsPerCPUS, s.RSSStartMB, s.RSSEndMB, s.RSSPeakMB, s.RSSAnonEndMB, s.RSSFileEndMB)
		}
	}
	row("generator cpu", "%.2f s (%.0f%%)", r.ClientCPUS, r.ClientCPUPct)
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	tw.Flush()
}

func (s *Summary) String() string {
	return fmt.Sprintf("p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (n=%d)", s.P50, s.P90, s.P99, s.P999, s.Max, s.Count)
}

func statusString(m map[int]int64) string {
	if len(m) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("(")
	first := true
	for _, code := range sortedKeys(m) {
		if !first {
			b.WriteString(" ")
		}
		first = false
		fmt.Fprintf(&b, "%d:%d", code, m[code])
	}
	b.WriteString(")")
	return b.String()
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
