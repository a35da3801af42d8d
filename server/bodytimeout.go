package server

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// A request body must keep arriving. http.Server's ReadHeaderTimeout
// bounds the headers only, and a ReadTimeout would also cut off large
// bodies sent at a fair pace, so a body that trickles in (one byte a
// second holds a connection and the request's buffer for as long as the
// client likes) is bounded here: it must be complete by
//
//	start + BodyReadTimeout + received/BodyMinRate
//
// (the allowance grows by one second for every BodyMinRate bytes that
// arrive, as Apache's mod_reqtimeout does), where start is when the
// handler began. The deadline is a read deadline on the connection (HTTP/1)
// or the stream (HTTP/2), moved as bytes arrive; a read that hits it fails,
// and the request is answered 408 and logged. A ResponseWriter without
// deadlines (httptest.ResponseRecorder) is not limited.
type slowBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	start    time.Time
	timeout  time.Duration
	rate     int64     // bytes per second that buy one more second
	length   int64     // r.ContentLength: -1 if unknown
	n        int64     // bytes read so far
	set      time.Time // the read deadline in force; zero: none
	off      bool      // deadlines unsupported, or the body is complete
	timedOut bool      // a read hit the deadline: the answer is 408
}

// limitBody puts the body deadline on r's body, if r has one and the
// deadline is enabled.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request) {
	if s.cfg.BodyReadTimeout < 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	r.Body = &slowBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(),
		timeout: s.cfg.BodyReadTimeout, rate: s.cfg.BodyMinRate, length: r.ContentLength}
}

// deadline is when the body must be complete, given what has arrived.
func (b *slowBody) deadline() time.Time {
	if b.rate <= 0 {
		return b.start.Add(b.timeout)
	}
	return b.start.Add(b.timeout + time.Duration(float64(b.n)/float64(b.rate)*float64(time.Second)))
}

func (b *slowBody) Read(p []byte) (int, error) {
	if !b.off {
		// Moving a deadline is cheap but not free: only when it has moved
		// by a second or more.
		if d := b.deadline(); b.set.IsZero() || d.Sub(b.set) >= time.Second {
			if err := b.rc.SetReadDeadline(d); err != nil {
				b.off = true // not supported: no limit
			} else {
				b.set = d
			}
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !b.set.IsZero() {
		b.timedOut = true
	}
	if !b.off && (err == io.EOF || b.length >= 0 && b.n >= b.length) {
		// Complete: no deadline for the rest of the request (net/http's
		// background read, which notices a client that goes away, must not
		// time out) and none for the next request on the connection.
		b.clear()
	}
	return n, err
}

func (b *slowBody) clear() {
	b.off = true
	if !b.set.IsZero() {
		b.rc.SetReadDeadline(time.Time{})
	}
}

// bodyTimedOut reports whether r's body missed its deadline, and how much
// of it had arrived by then.
func bodyTimedOut(r *http.Request) (bool, int64) {
	b, ok := r.Body.(*slowBody)
	if !ok || !b.timedOut {
		return false, 0
	}
	return true, b.n
}
