package fetch

import (
	"bytes"
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
// timer) and hands chunks over a small channel. This goroutine appends what
// is there as soon as it can, and while an append waits for its group
// commit the reader queues more: the next append takes everything queued
// (up to BatchBytes), as the engine's group commit takes whatever arrived
// during the previous sync. So a slow token stream is stored, and reaches
// live readers, one token at a time within a commit, and a fast upstream
// is stored in large appends, with no fixed delay anywhere. Appends never
// wait on readers: readers follow the stream through the engine.
func (m *Manager) pipe(ctx context.Context, f *Fetch, body io.ReadCloser, ru *run) {
	defer close(ru.done)
	idle := time.AfterFunc(m.cfg.IdleTimeout, func() { ru.cancel(errIdle) })
	chunks := make(chan []byte, 16)
	var readErr error
	go func() {
		defer close(chunks)
		// One read buffer; a chunk queued is a copy of what was read, so
		// a token stream queues tokens, not read buffers.
		buf := make([]byte, 32<<10)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				idle.Reset(m.cfg.IdleTimeout)
				chunks <- bytes.Clone(buf[:n])
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()

	// Appends renew the body; the record is renewed with it.
	renew := m.Renewer(f.ID)
	var (
		batch    []byte // grows to what the upstream sends per commit, at most BatchBytes and a read
		total    int64
		stopped  Outcome // set when this side stops the fetch
		storeErr error
	)
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
			renew()
		}
		batch = batch[:0]
	}
	add := func(c []byte) {
		if stopped != Running {
			return // draining: the reader stops once its context is cancelled
		}
		if room := m.cfg.MaxResponseBytes - total; int64(len(c)) > room {
			c = c[:room]
			stopped = TooLarge
			ru.cancel(errTooLarge)
		}
		total += int64(len(c))
		batch = append(batch, c...)
	}
	for c := range chunks {
		add(c)
	more:
		for len(batch) < m.cfg.BatchBytes {
			select {
			case c, ok := <-chunks:
				if !ok {
					break more
				}
				add(c)
			default:
				break more
			}
		}
		flush()
	}
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
