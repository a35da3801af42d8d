package bench

import (
	"fmt"
	"time"
)

// runManyStreams creates Streams streams with one append each (bounded by
// Duration too) and, with a PID, reports the server's RSS growth per stream.
func runManyStreams(r *runner) error {
	cfg := r.cfg
	var before ProcSample
	var perr error
	if cfg.PID > 0 {
		before, perr = ReadProc(cfg.PID)
	}
	t, err := r.createLoop(int64(cfg.Streams))
	if err != nil {
		return err
	}
	m := &ManyStats{Target: cfg.Streams, Created: t.ops, CreatesPerSec: r.res.OpsPerSec, Complete: t.ops >= int64(cfg.Streams)}
	r.res.Many = m
	if !m.Complete {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("stopped by -duration %s after %d of %d streams", cfg.Duration, t.ops, cfg.Streams))
	}
	if cfg.PID > 0 && perr == nil {
		// Let the server settle (background checkpoint, GC) before reading RSS.
		time.Sleep(time.Second)
		after, err := ReadProc(cfg.PID)
		if err == nil {
			m.RSSBeforeMB = mb(before.RSSBytes)
			m.RSSAfterMB = mb(after.RSSBytes)
			m.AnonAfterMB, m.FileAfterMB = mb(after.AnonBytes), mb(after.FileBytes)
			if t.ops > 0 {
				m.RSSPerStreamB = round3(float64(after.RSSBytes-before.RSSBytes) / float64(t.ops))
				m.AnonPerStreamB = round3(float64(after.AnonBytes-before.AnonBytes) / float64(t.ops))
			}
		}
	}
	return nil
}
