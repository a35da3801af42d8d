package bench

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

const octet = "application/octet-stream"

func runAppendSmall(r *runner) error {
	return r.appendLoop(r.cfg.Concurrency, octet, payload(r.cfg.Size), 1)
}

func runAppendShared(r *runner) error { return r.appendLoop(1, octet, payload(r.cfg.Size), 1) }

func runAppendLarge(r *runner) error {
	return r.appendLoop(r.cfg.Concurrency, octet, payload(r.cfg.Size), 1)
}

// runAppendJSON: each POST is an array of 10 objects of about Size bytes.
func runAppendJSON(r *runner) error {
	return r.appendLoop(r.cfg.Concurrency, "application/json", jsonBatch(10, r.cfg.Size), 10)
}

// payload is n printable bytes ending in a newline (valid for any content type).
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	if n > 0 {
		b[n-1] = '\n'
	}
	return b
}

// jsonBatch is a JSON array of n objects, each about size bytes compact.
func jsonBatch(n, size int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		head := fmt.Sprintf(`{"i":%d,"kind":"bench","pad":"`, i)
		pad := max(size-len(head)-2, 1)
		b.WriteString(head)
		for j := 0; j < pad; j++ {
			b.WriteByte('a' + byte(j%26))
		}
		b.WriteString(`"}`)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// appendLoop: Concurrency writers POST body to streams (writer w to stream
// w mod streams) back to back until the timed phase ends. One op is one
// acknowledged append of msgs messages.
func (r *runner) appendLoop(streams int, ct string, body []byte, msgs int64) error {
	cfg := r.cfg
	streams = min(streams, cfg.Concurrency)
	urls, err := r.createStreams("s", streams, ct)
	if err != nil {
		return err
	}
	r.res.Concurrency = cfg.Concurrency
	r.res.MsgBytes = len(body)
	hdr := ctHeader(ct)
	tmpls := make([]*http.Request, cfg.Concurrency)
	for w := range tmpls {
		if tmpls[w], err = template(r.ctx, http.MethodPost, urls[w%streams], hdr); err != nil {
			return err
		}
	}
	// One untimed append per writer opens its connection and warms the stream.
	warm := make([]*tally, cfg.Concurrency)
	parallel(cfg.Concurrency, func(w int) {
		warm[w] = newTally()
		r.c.exchange(warm[w], tmpls[w], body, make([]byte, 4<<10))
	})
	if t := mergeTallies(warm); t.errs+t.non2xx > 0 {
		return fmt.Errorf("warm-up appends failed: %d errors, %d non-2xx %v (last error %v)", t.errs, t.non2xx, t.statuses, t.lastErr)
	}

	var opsLeft atomic.Int64
	opsLeft.Store(cfg.MaxOps)
	tallies := make([]*tally, cfg.Concurrency)
	end := r.startTimed()
	parallel(cfg.Concurrency, func(w int) {
		t := newTally()
		tallies[w] = t
		buf := make([]byte, 4<<10)
		tmpl := tmpls[w]
		for time.Now().Before(end) && opsLeft.Add(-1) >= 0 {
			start := time.Now()
			ok, _ := r.c.exchange(t, tmpl, body, buf)
			if ok {
				recordUS(t.lat, time.Since(start))
				t.ops++
				t.msgs += msgs
				t.bytes += int64(len(body))
			}
			if r.ctx.Err() != nil {
				return
			}
		}
	})
	r.endTimed(mergeTallies(tallies), "appends")
	return nil
}

// createLoop: Concurrency creators PUT a new stream and POST one small
// message to it, until the timed phase ends or limit streams exist. One op
// is one stream created and appended to; its latency covers both requests.
func (r *runner) createLoop(limit int64) (*tally, error) {
	cfg := r.cfg
	body := payload(cfg.Size)
	r.res.Concurrency = cfg.Concurrency
	r.res.MsgBytes = len(body)
	hdr := ctHeader(octet)
	tmplPut, err := template(r.ctx, http.MethodPut, r.base+"c/0", hdr)
	if err != nil {
		return nil, err
	}
	tmplPost, err := template(r.ctx, http.MethodPost, r.base+"c/0", hdr)
	if err != nil {
		return nil, err
	}
	pathBase := tmplPut.URL.Path[:len(tmplPut.URL.Path)-1]
	var next atomic.Int64
	tallies := make([]*tally, cfg.Concurrency)
	progress := limit / 10
	end := r.startTimed()
	parallel(cfg.Concurrency, func(w int) {
		t := newTally()
		tallies[w] = t
		buf := make([]byte, 4<<10)
		pb := []byte(pathBase)
		for time.Now().Before(end) && r.ctx.Err() == nil {
			i := next.Add(1) - 1
			if i >= limit {
				return
			}
			if progress > 0 && i > 0 && i%progress == 0 {
				r.logf("%d streams (%.0f/s)", i, float64(i)/time.Since(r.t0).Seconds())
			}
			path := string(strconv.AppendInt(pb[:len(pathBase)], i, 10))
			start := time.Now()
			if ok, _ := r.c.exchange(t, withPath(tmplPut, path), nil, buf); !ok {
				continue
			}
			if ok, _ := r.c.exchange(t, withPath(tmplPost, path), body, buf); ok {
				recordUS(t.lat, time.Since(start))
				t.ops++
				t.msgs++
				t.bytes += int64(len(body))
			}
		}
	})
	total := mergeTallies(tallies)
	r.endTimed(total, "streams")
	return total, nil
}

func runCreateBurst(r *runner) error {
	_, err := r.createLoop(r.cfg.MaxOps)
	return err
}
