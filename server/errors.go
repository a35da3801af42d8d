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
	{engine.ErrNoSpace, http.StatusInsufficientStorage},
	{engine.ErrFailed, http.StatusServiceUnavailable},
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
	if status >= 500 && !errors.Is(err, context.Canceled) {
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
		w.Write([]byte(msg + "\n"))
	}
}
