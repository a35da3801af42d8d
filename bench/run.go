package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// runner carries one run: its settings, client, stream names and result.
type runner struct {
	cfg  Config
	ctx  context.Context
	c    *client
	base string // stream URL prefix of this run: URL + Prefix + bench-<id>/<scenario>/
	res  *Result

	mu      sync.Mutex
	cleanup []string // stream URLs to delete afterwards

	watch *procWatch
	t0    time.Time
	cpu0  float64
}

// Run runs one scenario. The result is returned even when err is not nil
// if the run got as far as its timed phase.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	sc, ok := lookup(cfg.Scenario)
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q (want one of %s)", cfg.Scenario, strings.Join(ScenarioNames(), ", "))
	}
	res := &Result{Scenario: cfg.Scenario, Label: cfg.Label, Round: cfg.Round, Start: time.Now().UTC().Truncate(time.Millisecond)}
	if cfg.Scenario != "machine" {
		res.URL = cfg.URL
		res.DurationS = cfg.Duration.Seconds()
	}
	r := &runner{cfg: cfg, res: res}
	if cfg.Scenario != "machine" {
		u, err := url.Parse(cfg.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("-url %q: want http://host:port", cfg.URL)
		}
		r.base = cfg.URL + cfg.Prefix + runID() + "/" + cfg.Scenario + "/"
		conns, bufSize := cfg.Concurrency+cfg.Readers+8, 64<<10
		if strings.HasPrefix(cfg.Scenario, "fanout") {
			conns, bufSize = cfg.Subscribers+8, 8<<10 // a thousand connections: small buffers
		}
		r.c = newClient(conns, cfg.Timeout, bufSize)
		defer r.c.close()
	}
	// The whole run is bounded: setup (prefill, subscribers), the timed
	// phase, drain and cleanup.
	var cancel context.CancelFunc
	r.ctx, cancel = context.WithTimeout(ctx, 2*cfg.Duration+cfg.Drain+5*time.Minute)
	defer cancel()

	err := sc.run(r)
	if r.cfg.Cleanup {
		r.deleteStreams()
	}
	if r.t0.IsZero() {
		if err == nil {
			err = errors.New("the scenario never started its timed phase")
		}
		return nil, err
	}
	return res, err
}

func (r *runner) logf(format string, a ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, "bench %s: "+format+"\n", append([]any{r.cfg.Scenario}, a...)...)
	}
}

// createStreams PUTs n streams named base+prefix+i (untimed, 16 at a time)
// and returns their URLs.
func (r *runner) createStreams(prefix string, n int, ct string) ([]string, error) {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s%s%d", r.base, prefix, i)
	}
	errc := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Add(1)
		sem <- struct{}{}
		go func(u string) {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := r.c.simple(r.ctx, http.MethodPut, u, ctHeader(ct), nil)
			errc <- err
		}(u)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return nil, fmt.Errorf("creating streams: %w", err)
		}
	}
	r.mu.Lock()
	r.cleanup = append(r.cleanup, urls...)
	r.mu.Unlock()
	return urls, nil
}

func (r *runner) deleteStreams() {
	if r.c == nil || len(r.cleanup) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, u := range r.cleanup {
		if _, err := r.c.simple(ctx, http.MethodDelete, u, nil, nil); err != nil {
			r.logf("cleanup: %v", err)
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// startTimed begins the timed phase and returns its end.
func (r *runner) startTimed() time.Time {
	r.watch = watchProc(r.cfg.PID)
	r.cpu0 = selfCPU()
	r.t0 = time.Now()
	return r.t0.Add(r.cfg.Duration)
}

// endTimed ends the timed phase and fills the result from t.
func (r *runner) endTimed(t *tally, opName string) {
	elapsed := time.Since(r.t0).Seconds()
	r.finish(t, opName, elapsed)
}

// finish fills the result for a timed phase of elapsed seconds.
func (r *runner) finish(t *tally, opName string, elapsed float64) {
	res := r.res
	res.ElapsedS = round3(elapsed)
	res.ClientCPUS = round3(selfCPU() - r.cpu0)
	res.ClientCPUPct = round3(100 * res.ClientCPUS / elapsed)
	res.Server = r.watch.finish(t.ops, elapsed)
	res.OpName = opName
	res.Ops = t.ops
	res.OpsPerSec = rate(t.ops, elapsed)
	res.Requests = t.reqs
	res.ReqPerSec = rate(t.reqs, elapsed)
	res.Messages = t.msgs
	res.MsgPerSec = rate(t.msgs, elapsed)
	res.Bytes = t.bytes
	res.MBPerSec = round3(float64(t.bytes) / elapsed / 1e6)
	res.Errors = t.errs
	res.Non2xx = t.non2xx
	res.Statuses = t.statuses
	res.Latency = summarize(t.lat)
	if t.lastErr != nil {
		res.Notes = append(res.Notes, "last error: "+t.lastErr.Error())
	}
}

// parallel runs n workers and waits for them.
func parallel(n int, f func(w int)) {
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(w)
		}()
	}
	wg.Wait()
}
