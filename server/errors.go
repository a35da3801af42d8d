package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/durastream/durastream/engine"
)

// statusOf maps engine errors to HTTP status codes: the one table.
var statusOf = []struct {
	err    error
	status int
}{
	{engine.ErrNotFound, http.StatusNotFound},
	{engine.ErrGone, http.StatusGone},
	{engine.ErrBadPath, http.StatusBadRequest},
	{engine.ErrConfigMismatch, http.StatusConflict},
	{engine.ErrBadTTL, http.StatusBadRequest},
	{engine.ErrSourceNotFound, http.StatusNotFound},
	{engine.ErrSourceDeleted, http.StatusConflict},
	{engine.ErrForkOffset, http.StatusBadRequest},
	{engine.ErrSubOffset, http.StatusBadRequest},
	{engine.ErrClosed, http.StatusConflict},
	{engine.ErrContentType, http.StatusConflict},
	{engine.ErrSeqRegression, http.StatusConflict},
	{engine.ErrStaleEpoch, http.StatusForbidden},
	{engine.ErrSeqGap, http.StatusConflict},
	{engine.ErrEpochSeq, http.StatusBadRequest},
	{engine.ErrEmptyAppend, http.StatusBadRequest},
	{engine.ErrInvalidJSON, http.StatusBadRequest},
	{engine.ErrEmptyJSONArray, http.StatusBadRequest},
	{engine.ErrTooLarge, http.StatusRequestEntityTooLarge},
	{engine.ErrInvalidProducer, http.StatusBadRequest},
	{engine.ErrBadOffset, http.StatusBadRequest},
	{engine.ErrOffsetPastEnd, http.StatusBadRequest},
	{engine.ErrNotBoundary, http.StatusBadRequest},
	{engine.ErrNoSpace, http.StatusInsufficientStorage},
	{engine.ErrFailed, http.StatusServiceUnavailable},
	{engine.ErrUnavailable, http.StatusServiceUnavailable},
	{engine.ErrEngineClosed, http.StatusServiceUnavailable},
}

// httpError is a request error the server itself detects.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string) error { return &httpError{http.StatusBadRequest, msg} }

// writeError answers with the status for err, the headers the protocol
// attaches to it, and a short plain-text message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	var he *httpError
	if errors.As(err, &he) {
		status = he.status
	} else {
		for _, m := range statusOf {
			if errors.Is(err, m.err) {
				status = m.status
				break
			}
		}
	}
	h := w.Header()
	if late, got := bodyTimedOut(r); late {
		// Whatever the handler made of the failed read: the client was too slow.
		status, err = http.StatusRequestTimeout, errors.New("request body arrived too slowly")
		if r.ProtoMajor == 1 { // (a connection header is malformed in HTTP/2)
			h.Set("Connection", "close")
		}
		s.log.Warn("request body too slow: 408", "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "received_bytes", got, "content_length", r.ContentLength)
	}
	var ce *engine.ClosedError
	var se *engine.StaleEpochError
	var ge *engine.SeqGapError
	switch {
	case errors.As(err, &ce):
		h.Set(hStreamClosed, "true")
		h.Set(hNextOffset, ce.Final.String())
	case errors.As(err, &se):
		h.Set(hProducerEpoch, strconv.FormatUint(se.Current, 10))
	case errors.As(err, &ge):
		h.Set(hProducerExpectedSeq, strconv.FormatUint(ge.Expected, 10))
		h.Set(hProducerReceivedSeq, strconv.FormatUint(ge.Received, 10))
	}
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	var busy *errBodyBudget // expected under load, answered with Retry-After: not logged
	if status >= 500 && !errors.Is(err, context.Canceled) && !errors.As(err, &busy) {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	h.Del("Content-Length")
	h.Del("ETag")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		msg := err.Error()
		if status == http.StatusInternalServerError {
			msg = "internal error"
		}
		w.Write([]byte(printable(msg, maxMessage) + "\n"))
	}
}

// Error messages are short, one line of printable ASCII. Whatever of the
// client's input they quote is cut to maxQuoted bytes (quoteInput); the
// whole message to maxMessage, in case a message quotes more.
const (
	maxQuoted  = 64
	maxMessage = 512
)

// quoteInput quotes a value the client sent, for an error message: at most
// maxQuoted bytes of it, in double quotes, bytes outside printable ASCII
// (and '"' and '\') as '?', and "..." after the quote when it was cut.
func quoteInput(v string) string {
	cut := len(v) > maxQuoted
	if cut {
		v = v[:maxQuoted]
	}
	b := make([]byte, 0, len(v)+5)
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			c = '?'
		}
		b = append(b, c)
	}
	b = append(b, '"')
	if cut {
		b = append(b, "..."...)
	}
	return string(b)
}

// errText is the text of an error from reading a request body, for a
// message: net/http's and the decoders' errors may quote what the client
// sent (a malformed trailer line, say), so it is cut short.
func errText(err error) string { return printable(err.Error(), maxQuoted+32) }

// printable returns msg with bytes outside printable ASCII as '?', cut to
// max bytes (with "...").
func printable(msg string, max int) string {
	ok := len(msg) <= max
	for i := 0; ok && i < len(msg); i++ {
		ok = msg[i] >= 0x20 && msg[i] <= 0x7e
	}
	if ok {
		return msg
	}
	if len(msg) > max {
		msg = msg[:max-3] + "..."
	}
	b := []byte(msg)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
