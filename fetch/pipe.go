package fetch

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/durastream/durastream/engine"
)

// pipe copies the upstream body into the fetch's body stream, then records
// how the fetch ended and closes its streams.
//
// A reader goroutine reads the upstream body (every read renews the idle
// timer) and hands chunks over a small channel; this goroutine batches them
// into appends: once BatchBytes have accumulated, or BatchDelay after the
// first byte not yet written, so a token stream is stored (and reaches live
// readers) within milliseconds without one append per token. Appends never
// wait on readers: readers follow the stream through the engine.
func (m *Manager) pipe(ctx context.Context, f *Fetch, body io.ReadCloser, ru *run) {
	defer close(ru.done)
	idle := time.AfterFunc(m.cfg.IdleTimeout, func() { ru.cancel(errIdle) })
	chunks := make(chan []byte, 16)
	var readErr error
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := body.Read(buf)
			if n > 0 {
				idle.Reset(m.cfg.IdleTimeout)
				chunks <- buf[:n]
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()

	var (
		batch    = make([]byte, 0, m.cfg.BatchBytes+32<<10)
		total    int64
		stopped  Outcome // set when this side stops the fetch
		storeErr error
		timer    = time.NewTimer(time.Hour)
		armed    bool
	)
	timer.Stop()
	flush := func() {
		if len(batch) == 0 || storeErr != nil {
			batch = batch[:0]
			return
		}
		if _, err := m.eng.Append(context.Background(), f.Body, batch, engine.AppendOptions{}); err != nil {
			storeErr = err
			stopped = StorageError
			ru.cancel(err)
		} else {
			ru.bytes.Add(int64(len(batch)))
			ru.chunks.Add(1)
		}
		batch = batch[:0]
	}
	for c := range chunksOrTimer(chunks, timer, &armed, flush) {
		if stopped != Running {
			continue // draining: the reader stops once its context is cancelled
		}
		if room := m.cfg.MaxResponseBytes - total; int64(len(c)) > room {
			c = c[:room]
			stopped = TooLarge
			ru.cancel(errTooLarge)
		}
		total += int64(len(c))
		batch = append(batch, c...)
		if len(batch) >= m.cfg.BatchBytes {
			flush()
		} else if !armed {
			timer.Reset(m.cfg.BatchDelay)
			armed = true
		}
	}
	timer.Stop()
	idle.Stop()
	body.Close()
	flush()

	end := endRecord{End: stopped, Bytes: ru.bytes.Load(), Chunks: ru.chunks.Load(), At: time.Now().UTC()}
	if end.End == Running {
		switch cause := context.Cause(ctx); {
		case errors.Is(readErr, io.EOF):
			end.End = Complete
		case errors.Is(cause, errAbort):
			end.End = Aborted
		case errors.Is(cause, errIdle):
			end.End = IdleTimeout
		case errors.Is(cause, errShutdown):
			end.End = Interrupted
		default:
			end.End = UpstreamFailed
		}
	}
	switch {
	case storeErr != nil:
		end.Error = storeErr.Error()
	case end.End == TooLarge:
		end.Error = errTooLarge.Error()
	case end.End != Complete:
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			end.Error = cause.Error()
		} else if readErr != nil {
			end.Error = readErr.Error()
		}
	}
	ctxW := context.Background()
	if err := m.writeEnd(ctxW, f.ID, end); err != nil && !errors.Is(err, engine.ErrNotFound) {
		m.log.Error("record the end of a fetch", "id", f.ID, "err", err)
	}
	m.closeBody(ctxW, f.ID)
	m.mu.Lock()
	delete(m.running, f.ID)
	m.mu.Unlock()
	ru.cancel(nil)
	if end.End != Complete {
		m.log.Info("fetch ended", "id", f.ID, "outcome", end.End, "bytes", end.Bytes, "err", end.Error)
	}
}

var (
	errTooLarge      = errors.New("the upstream response exceeded the largest stored response")
	errHeaderTimeout = errors.New("the upstream did not answer with headers in time")
)

// chunksOrTimer yields the chunks from ch and calls flush whenever the
// batch timer fires in between; it ends when ch is closed.
func chunksOrTimer(ch <-chan []byte, timer *time.Timer, armed *bool, flush func()) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for {
			select {
			case c, ok := <-ch:
				if !ok {
					return
				}
				if !yield(c) {
					return
				}
			case <-timer.C:
				*armed = false
				flush()
			}
		}
	}
}
