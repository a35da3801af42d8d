package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// AnalysisMarker starts the hand-written part of BENCHMARKS.md: `durastream
// bench report` keeps everything from this line on when it rewrites the file.
const AnalysisMarker = "<!-- analysis: written by hand, kept when the report is regenerated -->"

// ReportOptions configures Report.
type ReportOptions struct {
	CommandsFile string // quoted verbatim under "Commands"
	Note         string // paragraph under the title
	Baseline     string // label of the server under test (durastream)
	Reference    string // label of the server compared with (reference)
	Null         string // label of the null-server ceiling (null)
}

func (o ReportOptions) withDefaults() ReportOptions {
	if o.Baseline == "" {
		o.Baseline = "durastream"
	}
	if o.Reference == "" {
		o.Reference = "reference"
	}
	if o.Null == "" {
		o.Null = "null"
	}
	return o
}

// ReadResults reads JSON result lines (lines not starting with '{' are
// skipped).
func ReadResults(path string) ([]*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		r := new(Result)
		if err := json.Unmarshal(line, r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// metric is one row of a scenario table.
type metric struct {
	name  string
	get   func(*Result) (float64, bool)
	ratio bool // show durastream/reference and durastream/null
	prec  int
}

func m(name string, prec int, ratio bool, get func(*Result) (float64, bool)) metric {
	return metric{name: name, get: get, ratio: ratio, prec: prec}
}

func always(f func(*Result) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) { return f(r), true }
}

func lat(pick func(*Summary) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Latency == nil {
			return 0, false
		}
		return pick(r.Latency), true
	}
}

func srv(pick func(*ServerStats) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Server == nil || r.Server.SampleError != "" {
			return 0, false
		}
		return pick(r.Server), true
	}
}

func fan(pick func(*FanoutStats) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Fanout == nil {
			return 0, false
		}
		return pick(r.Fanout), true
	}
}

func fanLat(pick func(*Summary) float64) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		if r.Fanout == nil || r.Fanout.Delivery == nil {
			return 0, false
		}
		return pick(r.Fanout.Delivery), true
	}
}

var (
	mErrors   = m("errors + non-2xx", 0, false, always(func(r *Result) float64 { return float64(r.Errors + r.Non2xx) }))
	mP50      = m("latency p50 ms", 2, false, lat(func(s *Summary) float64 { return s.P50 }))
	mP99      = m("latency p99 ms", 2, false, lat(func(s *Summary) float64 { return s.P99 }))
	mMax      = m("latency max ms", 1, false, lat(func(s *Summary) float64 { return s.Max }))
	mSrvCPU   = m("server CPU % of a core", 0, false, srv(func(s *ServerStats) float64 { return s.CPUPct }))
	mOpsCPU   = m("ops per server CPU-second", 0, true, srv(func(s *ServerStats) float64 { return s.OpsPerCPUS }))
	mPeakRSS  = m("server peak RSS MB", 0, false, srv(func(s *ServerStats) float64 { return s.RSSPeakMB }))
	mGenCPU   = m("generator CPU % of a core", 0, false, always(func(r *Result) float64 { return r.ClientCPUPct }))
	mOps      = m("appends/s", 0, true, always(func(r *Result) float64 { return r.OpsPerSec }))
	mMB       = m("MB/s", 1, true, always(func(r *Result) float64 { return r.MBPerSec }))
	appendSet = []metric{mOps, mP50, mP99, mMax, mErrors, mSrvCPU, mOpsCPU, mGenCPU}
)

var scenarioMetrics = map[string][]metric{
	"append-small":  appendSet,
	"append-shared": appendSet,
	"append-json": append([]metric{mOps,
		m("messages/s", 0, true, always(func(r *Result) float64 { return r.MsgPerSec }))}, appendSet[1:]...),
	"append-large": {mMB, mOps, mP50, mP99, mMax, mErrors, mSrvCPU, mPeakRSS, mGenCPU},
	"create-burst": {
		m("streams/s (PUT+POST)", 0, true, always(func(r *Result) float64 { return r.OpsPerSec })),
		m("requests/s", 0, true, always(func(r *Result) float64 { return r.ReqPerSec })),
		mP50, mP99, mMax, mErrors, mSrvCPU, mGenCPU},
	"catchup-read": {mMB,
		m("complete reads/s", 2, true, always(func(r *Result) float64 { return r.OpsPerSec })),
		m("first byte p50 ms", 1, false, func(r *Result) (float64, bool) {
			if r.TTFB == nil {
				return 0, false
			}
			return r.TTFB.P50, true
		}),
		m("first byte p99 ms", 1, false, func(r *Result) (float64, bool) {
			if r.TTFB == nil {
				return 0, false
			}
			return r.TTFB.P99, true
		}),
		m("page (request) p99 ms", 1, false, lat(func(s *Summary) float64 { return s.P99 })),
		m("requests", 0, false, always(func(r *Result) float64 { return float64(r.Requests) })),
		mErrors, mSrvCPU, mPeakRSS, mGenCPU},
	"fanout-sse":      fanoutSet,
	"fanout-longpoll": fanoutSet,
	"many-streams": {
		m("streams created", 0, false, func(r *Result) (float64, bool) {
			if r.Many == nil {
				return 0, false
			}
			return float64(r.Many.Created), true
		}),
		m("creates/s (PUT+POST)", 0, true, always(func(r *Result) float64 { return r.OpsPerSec })),
		m("server RSS per stream, bytes", 0, false, func(r *Result) (float64, bool) {
			if r.Many == nil || r.Many.RSSAfterMB == 0 {
				return 0, false
			}
			return r.Many.RSSPerStreamB, true
		}),
		m("of which anonymous (heap) per stream, bytes", 0, false, func(r *Result) (float64, bool) {
			if r.Many == nil || r.Many.AnonAfterMB == 0 {
				return 0, false
			}
			return r.Many.AnonPerStreamB, true
		}),
		m("server RSS after, MB", 0, false, func(r *Result) (float64, bool) {
			if r.Many == nil || r.Many.RSSAfterMB == 0 {
				return 0, false
			}
			return r.Many.RSSAfterMB, true
		}),
		mP99, mErrors, mSrvCPU, mGenCPU},
}

var fanoutSet = []metric{
	m("subscribers connected", 0, false, fan(func(f *FanoutStats) float64 { return float64(f.Connected) })),
	m("writer achieved msg/s", 1, false, fan(func(f *FanoutStats) float64 { return f.AckedRate })),
	m("delivery p50 ms", 2, false, fanLat(func(s *Summary) float64 { return s.P50 })),
	m("delivery p99 ms", 2, false, fanLat(func(s *Summary) float64 { return s.P99 })),
	m("delivery max ms", 1, false, fanLat(func(s *Summary) float64 { return s.Max })),
	m("deliveries/s", 0, true, always(func(r *Result) float64 { return r.OpsPerSec })),
	m("missing", 0, false, fan(func(f *FanoutStats) float64 { return float64(f.Missing) })),
	m("duplicates", 0, false, fan(func(f *FanoutStats) float64 { return float64(f.Duplicates) })),
	m("out of order", 0, false, fan(func(f *FanoutStats) float64 { return float64(f.OutOfOrder) })),
	m("append ack p99 ms", 2, false, fan(func(f *FanoutStats) float64 {
		if f.Ack == nil {
			return 0
		}
		return f.Ack.P99
	})),
	m("reconnects + subscriber errors", 0, false, fan(func(f *FanoutStats) float64 { return float64(f.Reconnects + f.SubErrors) })),
	mErrors, mSrvCPU, mPeakRSS, mGenCPU,
}

// primaryMetric is the index of the metric listed round by round.
var primaryMetric = map[string]int{"fanout-sse": 3, "fanout-longpoll": 3, "many-streams": 1}

var reportOrder = []string{"append-small", "append-shared", "append-json", "append-large", "create-burst",
	"catchup-read", "fanout-sse", "fanout-longpoll", "many-streams"}

type stat struct {
	n             int
	med, min, max float64
	vals          []float64
}

func collect(rs []*Result, f func(*Result) (float64, bool)) stat {
	var s stat
	for _, r := range rs {
		if v, ok := f(r); ok {
			s.vals = append(s.vals, v)
		}
	}
	s.n = len(s.vals)
	if s.n == 0 {
		return s
	}
	sorted := slices.Clone(s.vals)
	slices.Sort(sorted)
	s.min, s.max = sorted[0], sorted[s.n-1]
	if s.n%2 == 1 {
		s.med = sorted[s.n/2]
	} else {
		s.med = (sorted[s.n/2-1] + sorted[s.n/2]) / 2
	}
	return s
}

func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	if math.Abs(v) >= 10000 && prec > 0 {
		prec = 0
	}
	s := fmt.Sprintf("%.*f", prec, v)
	// thousands separators for readability
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if hasFrac {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

func (s stat) cell(prec int) string {
	switch s.n {
	case 0:
		return "–"
	case 1:
		return fmtNum(s.med, prec)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(s.med, prec), fmtNum(s.min, prec), fmtNum(s.max, prec))
}

func ratio(a, b stat) (float64, bool) {
	if a.n == 0 || b.n == 0 || b.med == 0 {
		return 0, false
	}
	return a.med / b.med, true
}

func ratioCell(a, b stat) string {
	r, ok := ratio(a, b)
	if !ok {
		return "–"
	}
	if r >= 100 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

// byLabel returns the results of one scenario and label that have figures,
// leaving out million-stream runs (they have a table of their own).
func byLabel(rs []*Result, scenario, label string) (ok, failed []*Result) {
	for _, r := range rs {
		if r.Scenario != scenario || r.Label != label || isMillion(r) {
			continue
		}
		if r.ElapsedS > 0 {
			ok = append(ok, r)
		} else {
			failed = append(failed, r)
		}
	}
	return ok, failed
}

// Report renders BENCHMARKS.md from the results of a comparison.
func Report(rs []*Result, o ReportOptions) ([]byte, error) {
	o = o.withDefaults()
	if len(rs) == 0 {
		return nil, fmt.Errorf("no results")
	}
	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	first, last := rs[0].Start, rs[0].Start
	for _, r := range rs {
		if r.Start.Before(first) {
			first = r.Start
		}
		if r.Start.After(last) {
			last = r.Start
		}
	}
	var mach *MachineStats
	for _, r := range rs {
		if r.Machine != nil {
			mach = r.Machine
		}
	}
	w("# Benchmarks\n\n")
	w("durastream (`serve --durability sync`: every acknowledged write is fsynced) against the Node reference server ")
	w("(`@durable-streams/server` 0.3.7, file-backed) and a null server (the same Go net/http stack acknowledging ")
	w("without storing: the ceiling of HTTP plus this load generator on this machine). ")
	w("Generated by `scripts/bench-compare.sh` (`make bench-compare`) from the runs of %s to %s UTC.\n\n",
		first.UTC().Format("2006-01-02 15:04"), last.UTC().Format("15:04"))
	if mach != nil {
		w("Machine: %d CPUs (%s), %.0f GiB memory, Linux %s; data directories on the disk measured below. ", mach.CPUs, orDefault(mach.CPUModel, "unknown CPU"), mach.MemGiB, mach.Kernel)
	}
	w("**The machine is shared and noisy**: other work ran at the same time, and the load generator shares the ")
	w("same cores with the server. Runs alternate between the servers (A B A B) and each cell is the median ")
	w("of the rounds with the range (min–max) beside it; compare ratios within this one report rather than ")
	w("absolute numbers across reports.\n\n")
	if o.Note != "" {
		w("%s\n\n", o.Note)
	}

	if mach != nil {
		w("## Machine limits\n\n| measure | value |\n| --- | --- |\n")
		w("| 4 KiB append + fdatasync, latency p50 / p99 | %.3f ms / %.3f ms (n=%d) |\n", mach.Fsync4KP50Ms, mach.Fsync4KP99Ms, mach.Fsync4KN)
		w("| 1 MiB append + fdatasync, sequential over %d MiB | %.0f MB/s |\n", mach.SeqWriteMiB, mach.SeqWriteMBs)
		w("| 1 MiB appends, one fdatasync at the end | %.0f MB/s |\n", mach.SeqWriteNoSyncMB)
		w("| memory copy (64 MiB buffers) | %.2f GB/s |\n", mach.MemcpyGBs)
		if mach.MmapSync4KP50Ms > 0 {
			w("| 4 KiB copied into a fallocated mmap + msync, p50 (the commit log's former path) | %.3f ms |\n", mach.MmapSync4KP50Ms)
			w("| 1 MiB copied into a fallocated mmap + msync, sequential (small appends' path; large ones use O_DIRECT) | %.0f MB/s |\n", mach.MmapWriteMBs)
		}
		w("\n")
		for _, r := range rs {
			if r.Machine != nil {
				for _, n := range r.Notes {
					w("- %s\n", n)
				}
				if len(r.Notes) > 0 {
					w("\n")
				}
				break
			}
		}
	}

	w("## Targets (issue 4)\n\n")
	w("| scenario | target | measured (medians) | met? |\n| --- | --- | --- | --- |\n")
	for _, t := range evaluate(rs, o, mach) {
		w("| %s | %s | %s | %s |\n", t.scenario, t.target, t.measured, t.status)
	}
	w("\n")

	w("## Results\n\n")
	w("Units: MB = 10^6 bytes. Latencies are per operation as the generator sees them (HTTP included). ")
	w("\"ds/ref\" is durastream's median over the reference's; \"ds/null\" durastream's over the null server's ")
	w("(one run). Server CPU and RSS come from /proc/PID of the server during the timed phase.\n\n")
	for _, sc := range reportOrder {
		a, af := byLabel(rs, sc, o.Baseline)
		ref, rf := byLabel(rs, sc, o.Reference)
		nul, nf := byLabel(rs, sc, o.Null)
		if len(a)+len(ref)+len(nul)+len(af)+len(rf)+len(nf) == 0 {
			continue
		}
		w("### %s\n\n", sc)
		if d := describe(sc, append(append(a, ref...), nul...)); d != "" {
			w("%s\n\n", d)
		}
		w("| metric | durastream | reference | ds/ref | null | ds/null |\n| --- | --- | --- | --- | --- | --- |\n")
		for _, mt := range scenarioMetrics[sc] {
			sa, sr, sn := collect(a, mt.get), collect(ref, mt.get), collect(nul, mt.get)
			if sa.n+sr.n+sn.n == 0 {
				continue
			}
			rr, rn := "", ""
			if mt.ratio {
				rr, rn = ratioCell(sa, sr), ratioCell(sa, sn)
			}
			w("| %s | %s | %s | %s | %s | %s |\n", mt.name, sa.cell(mt.prec), sr.cell(mt.prec), rr, sn.cell(mt.prec), rn)
		}
		w("\n")
		if mt := scenarioMetrics[sc]; len(mt) > 0 {
			pm := mt[primaryMetric[sc]]
			pa, pr := collect(a, pm.get), collect(ref, pm.get)
			w("Rounds (%s, in run order): durastream %s; reference %s.\n\n", pm.name, fmtList(pa.vals, pm.prec), fmtList(pr.vals, pm.prec))
		}
		for _, f := range [][]*Result{af, rf, nf, a, ref, nul} {
			for _, r := range f {
				if r.Error != "" {
					w("- %s round %d: **%s**\n", r.Label, r.Round, oneLine(r.Error))
				}
			}
		}
		for _, r := range append(append(a, ref...), nul...) {
			for _, n := range r.Notes {
				if strings.HasPrefix(n, "last error") || strings.HasPrefix(n, "only ") || strings.HasPrefix(n, "stopped") || strings.HasPrefix(n, "writer") {
					w("- %s round %d: %s\n", r.Label, r.Round, oneLine(n))
				}
			}
		}
		w("\n")
	}

	if mil := millionRuns(rs, o); len(mil) > 0 {
		w("### many-streams at 1,000,000 (durastream only)\n\n")
		w("| run | streams created | creates/s | server RSS after | of which anonymous / mapped files | RSS per stream | peak RSS | complete |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for i, r := range mil {
			mm := r.Many
			peak := "–"
			if r.Server != nil && r.Server.RSSPeakMB > 0 {
				peak = fmtNum(r.Server.RSSPeakMB, 0) + " MB"
			}
			w("| %d | %s | %s | %s MB | %s / %s MB | %s B | %s | %v |\n", i+1, fmtNum(float64(mm.Created), 0), fmtNum(mm.CreatesPerSec, 0), fmtNum(mm.RSSAfterMB, 0),
				fmtNum(mm.AnonAfterMB, 0), fmtNum(mm.FileAfterMB, 0), fmtNum(mm.RSSPerStreamB, 0), peak, mm.Complete)
		}
		w("\n")
	}

	if o.CommandsFile != "" {
		cmds, err := os.ReadFile(o.CommandsFile)
		if err != nil {
			return nil, err
		}
		w("## Commands\n\n```sh\n%s```\n", ensureNL(string(cmds)))
	}
	return b.Bytes(), nil
}

func ensureNL(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func fmtList(vs []float64, prec int) string {
	if len(vs) == 0 {
		return "–"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmtNum(v, prec)
	}
	return strings.Join(parts, ", ")
}

func describe(sc string, rs []*Result) string {
	var c, size, subs int
	var dur float64
	var rateT float64
	for _, r := range rs {
		c, size = r.Concurrency, r.MsgBytes
		dur = max(dur, r.DurationS)
		if r.Fanout != nil {
			subs, rateT = r.Fanout.Subscribers, r.Fanout.TargetRate
		}
	}
	switch sc {
	case "append-small":
		return fmt.Sprintf("%d writers, each on its own stream, %d-byte appends, keep-alive; ~%.0f s per run.", c, size, dur)
	case "append-shared":
		return fmt.Sprintf("%d writers on one stream, %d-byte appends; ~%.0f s per run.", c, size, dur)
	case "append-json":
		return fmt.Sprintf("%d writers on JSON streams, each POST an array of 10 objects (%d bytes); ~%.0f s per run.", c, size, dur)
	case "append-large":
		return fmt.Sprintf("%d writers, each on its own stream, %d-byte appends; ~%.0f s per run.", c, size, dur)
	case "create-burst":
		return fmt.Sprintf("%d creators: PUT a new stream, then one %d-byte POST; latency covers both; ~%.0f s per run.", c, size, dur)
	case "catchup-read":
		return fmt.Sprintf("%d readers each read a prefilled stream from offset -1, following Stream-Next-Offset to Stream-Up-To-Date, repeatedly; ~%.0f s per run.", c, dur)
	case "fanout-sse", "fanout-longpoll":
		return fmt.Sprintf("%d subscribers tail one stream; one writer appends a %d-byte timestamped message every %.0f ms, pipelined on one connection, for ~%.0f s. Latency: append sent → message parsed by a subscriber.", subs, size, 1000/max(rateT, 1), dur)
	case "many-streams":
		return fmt.Sprintf("%d creators make new streams (PUT + one %d-byte POST each) up to a count or a time limit, on a fresh server; RSS per stream = server RSS growth / streams.", c, size)
	}
	return ""
}

func isMillion(r *Result) bool {
	return r.Scenario == "many-streams" && r.Many != nil && r.Many.Target >= 1_000_000
}

func millionRuns(rs []*Result, o ReportOptions) []*Result {
	var out []*Result
	for _, r := range rs {
		if isMillion(r) && r.Label != o.Reference && r.Label != o.Null {
			out = append(out, r)
		}
	}
	return out
}

type targetRow struct{ scenario, target, measured, status string }

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// evaluate checks the targets of issue 4 against the medians.
func evaluate(rs []*Result, o ReportOptions, mach *MachineStats) []targetRow {
	var rows []targetRow
	med := func(sc, label string, f func(*Result) (float64, bool)) stat {
		ok, _ := byLabel(rs, sc, label)
		var keep []*Result
		for _, r := range ok {
			if r.Many != nil && r.Many.Target >= 1_000_000 {
				continue
			}
			keep = append(keep, r)
		}
		return collect(keep, f)
	}
	na := func(sc, target string) { rows = append(rows, targetRow{sc, target, "not measured", "–"}) }
	for _, sc := range []string{"append-small", "append-shared", "append-json"} {
		a := med(sc, o.Baseline, mOps.get)
		if a.n == 0 {
			na(sc, "≥ 10× reference, p99 ≤ 10 ms, ≥ 80% of null")
			continue
		}
		r := med(sc, o.Reference, mOps.get)
		n := med(sc, o.Null, mOps.get)
		p99 := med(sc, o.Baseline, mP99.get)
		if rr, ok := ratio(a, r); ok {
			rows = append(rows, targetRow{sc, "≥ 10× reference appends/s", fmt.Sprintf("%s vs %s/s = %.1f×", fmtNum(a.med, 0), fmtNum(r.med, 0), rr), verdict(rr >= 10)})
		} else {
			na(sc, "≥ 10× reference appends/s")
		}
		rows = append(rows, targetRow{sc, "p99 ≤ 10 ms", fmt.Sprintf("p99 %.2f ms", p99.med), verdict(p99.n > 0 && p99.med <= 10)})
		if rn, ok := ratio(a, n); ok {
			rows = append(rows, targetRow{sc, "≥ 80% of the null server", fmt.Sprintf("%s vs %s/s = %.0f%%", fmtNum(a.med, 0), fmtNum(n.med, 0), 100*rn), verdict(rn >= 0.8)})
		} else {
			na(sc, "≥ 80% of the null server")
		}
	}
	if a := med("append-large", o.Baseline, mMB.get); a.n > 0 && mach != nil && mach.SeqWriteMBs > 0 {
		f := a.med / mach.SeqWriteMBs
		rows = append(rows, targetRow{"append-large", "≥ 90% of sequential write+fdatasync MB/s",
			fmt.Sprintf("%.0f MB/s vs %.0f MB/s = %.0f%%", a.med, mach.SeqWriteMBs, 100*f), verdict(f >= 0.9)})
	} else {
		na("append-large", "≥ 90% of sequential write+fdatasync MB/s")
	}
	if a := med("catchup-read", o.Baseline, mMB.get); a.n > 0 {
		r := med("catchup-read", o.Reference, mMB.get)
		if rr, ok := ratio(a, r); ok {
			rows = append(rows, targetRow{"catchup-read", "≥ 5× reference MB/s", fmt.Sprintf("%.0f vs %.0f MB/s = %.1f×", a.med, r.med, rr), verdict(rr >= 5)})
		} else {
			na("catchup-read", "≥ 5× reference MB/s")
		}
		rows = append(rows, targetRow{"catchup-read", "≥ 1.5 GB/s", fmt.Sprintf("%.2f GB/s", a.med/1000), verdict(a.med >= 1500)})
		tt := med("catchup-read", o.Baseline, scenarioMetrics["catchup-read"][2].get)
		tt99 := med("catchup-read", o.Baseline, scenarioMetrics["catchup-read"][3].get)
		rows = append(rows, targetRow{"catchup-read", "time to first byte in milliseconds (p99 < 100 ms)", fmt.Sprintf("p50 %.1f ms, p99 %.1f ms", tt.med, tt99.med), verdict(tt99.n > 0 && tt99.med < 100)})
	} else {
		na("catchup-read", "≥ 5× reference, ≥ 1.5 GB/s, first byte in ms")
	}
	for _, f := range []struct {
		sc    string
		p99   float64
		label string
	}{{"fanout-sse", 20, "100 msg/s to all subscribers, p99 ≤ 20 ms, none missing/duplicated/out of order"},
		{"fanout-longpoll", 50, "100 msg/s to all subscribers, p99 ≤ 50 ms, none missing/duplicated/out of order"}} {
		ok, _ := byLabel(rs, f.sc, o.Baseline)
		if len(ok) == 0 {
			na(f.sc, f.label)
			continue
		}
		conn := collect(ok, fanoutSet[0].get)
		rateS := collect(ok, fanoutSet[1].get)
		p99 := collect(ok, fanoutSet[3].get)
		var bad float64
		var subs int
		var target float64
		for _, r := range ok {
			if r.Fanout != nil {
				bad += float64(r.Fanout.Missing + r.Fanout.Duplicates + r.Fanout.OutOfOrder)
				subs, target = r.Fanout.Subscribers, r.Fanout.TargetRate
			}
		}
		met := p99.n > 0 && p99.med <= f.p99 && bad == 0 && conn.med >= float64(subs) && rateS.med >= 0.98*target
		rows = append(rows, targetRow{f.sc, f.label,
			fmt.Sprintf("%.0f of %d subscribers, %.1f msg/s, p99 %.2f ms, %.0f missing+dup+ooo (all rounds)", conn.med, subs, rateS.med, p99.med, bad),
			verdict(met)})
	}
	if a := med("create-burst", o.Baseline, mOps.get); a.n > 0 {
		n := med("create-burst", o.Null, mOps.get)
		if rn, ok := ratio(a, n); ok {
			rows = append(rows, targetRow{"create-burst", "≥ 80% of the null server (PUT+POST)", fmt.Sprintf("%s vs %s streams/s = %.0f%%", fmtNum(a.med, 0), fmtNum(n.med, 0), 100*rn), verdict(rn >= 0.8)})
		} else {
			na("create-burst", "≥ 80% of the null server (PUT+POST)")
		}
	} else {
		na("create-burst", "≥ 80% of the null server (PUT+POST)")
	}
	if mil := millionRuns(rs, o); len(mil) > 0 {
		r := mil[len(mil)-1]
		ok := r.Many.Complete && r.Many.RSSAfterMB > 0 && r.Many.RSSAfterMB*1e6 <= float64(1<<30)
		rows = append(rows, targetRow{"many-streams", "1,000,000 streams with ≤ 1 GiB server RSS",
			fmt.Sprintf("%s streams, RSS %.0f MB (%.0f B/stream; anonymous %.0f MB, mapped files %.0f MB), %.0f creates/s", fmtNum(float64(r.Many.Created), 0), r.Many.RSSAfterMB, r.Many.RSSPerStreamB, r.Many.AnonAfterMB, r.Many.FileAfterMB, r.Many.CreatesPerSec), verdict(ok)})
	} else {
		na("many-streams", "1,000,000 streams with ≤ 1 GiB server RSS")
	}
	return rows
}
