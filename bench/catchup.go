package bench

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// prefillChunk is the append size used to fill the catch-up stream.
const prefillChunk = 256 << 10

// runCatchup fills one stream with Prefill bytes (untimed), then Readers
// readers each read it from the start, page by page following
// Stream-Next-Offset until Stream-Up-To-Date, over and over until the timed
// phase ends. One op is one complete read; latency is per page; TTFB is from
// the start of a complete read to the first body byte.
func runCatchup(r *runner) error {
	cfg := r.cfg
	urls, err := r.createStreams("s", 1, octet)
	if err != nil {
		return err
	}
	u := urls[0]
	chunk := payload(prefillChunk)
	n := (cfg.Prefill + prefillChunk - 1) / prefillChunk
	tmpl, err := template(r.ctx, http.MethodPost, u, ctHeader(octet))
	if err != nil {
		return err
	}
	t0 := time.Now()
	var next atomic.Int64
	fill := make([]*tally, 4)
	parallel(len(fill), func(w int) {
		t := newTally()
		fill[w] = t
		buf := make([]byte, 4<<10)
		for next.Add(1) <= n && r.ctx.Err() == nil && t.errs+t.non2xx == 0 {
			r.c.exchange(t, tmpl, chunk, buf)
		}
	})
	if t := mergeTallies(fill); t.errs+t.non2xx > 0 {
		return fmt.Errorf("prefill failed: %d errors, %d non-2xx %v (last error %v)", t.errs, t.non2xx, t.statuses, t.lastErr)
	}
	total := n * prefillChunk
	r.logf("prefilled %.1f MB in %.2f s", float64(total)/1e6, time.Since(t0).Seconds())
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("stream of %d bytes (%d appends of %d); op = one complete read", total, n, prefillChunk))
	r.res.Concurrency = cfg.Readers
	r.res.MsgBytes = prefillChunk

	tallies := make([]*tally, cfg.Readers)
	ttfbs := make([]*tally, cfg.Readers)
	end := r.startTimed()
	parallel(cfg.Readers, func(w int) {
		t, ft := newTally(), newTally()
		tallies[w], ttfbs[w] = t, ft
		buf := make([]byte, 256<<10)
		for reads := int64(0); time.Now().Before(end) && r.ctx.Err() == nil && reads < cfg.MaxOps; reads++ {
			if r.readAll(t, ft, u, buf, end) {
				t.ops++
			}
		}
	})
	ft := mergeTallies(ttfbs)
	r.endTimed(mergeTallies(tallies), "reads")
	r.res.TTFB = summarize(ft.lat)
	return nil
}

// readAll reads the stream from the start to Stream-Up-To-Date, and says
// whether it got there (a read cut short by the end of the timed phase does
// not count as an op, but its bytes do).
func (r *runner) readAll(t, ft *tally, u string, buf []byte, end time.Time) bool {
	start := time.Now()
	off := "-1"
	first := true
	for pages := 0; pages < 1<<20; pages++ {
		page := time.Now()
		tmpl, err := template(r.ctx, http.MethodGet, u+"?offset="+url.QueryEscape(off), nil)
		if err != nil {
			t.fail(err)
			return false
		}
		resp, err := r.c.send(tmpl, nil)
		if err != nil {
			t.fail(err)
			return false
		}
		var n int64
		for {
			k, err := resp.Body.Read(buf)
			if k > 0 && first {
				recordUS(ft.lat, time.Since(start))
				first = false
			}
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				resp.Body.Close()
				t.bytes += n
				t.fail(err)
				return false
			}
		}
		resp.Body.Close()
		t.bytes += n
		if !t.status(resp.StatusCode) {
			return false
		}
		recordUS(t.lat, time.Since(page))
		nextOff := resp.Header.Get("Stream-Next-Offset")
		if resp.Header.Get("Stream-Up-To-Date") == "true" || nextOff == "" || nextOff == off {
			return true
		}
		off = nextOff
		if !time.Now().Before(end) {
			return false
		}
	}
	return false
}
