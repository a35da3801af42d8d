package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/durastream/durastream/engine"
)

// handleCreate serves PUT: create (or confirm) a stream, possibly a fork,
// closed, with TTL/expiry and initial data.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request, name string) {
	var o engine.CreateOptions
	o.ContentType = r.Header.Get("Content-Type")
	if err := parseExpiry(r, &o); err != nil {
		s.writeError(w, r, err)
		return
	}
	o.Closed = closedHeader(r)
	_, hasOff := header(r, hForkOffset)
	_, hasSub := header(r, hForkSubOffset)
	if from := r.Header.Get(hForkedFrom); from != "" {
		src, err := s.sourcePath(from)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		o.ForkFrom = src
		if hasOff {
			off, err := engine.ParseOffset(r.Header.Get(hForkOffset))
			if err != nil {
				s.writeError(w, r, badRequest("malformed Stream-Fork-Offset"))
				return
			}
			o.ForkOffset = &off
		}
		if hasSub {
			v, ok := parseDecimal(r.Header.Get(hForkSubOffset), 1<<62)
			if !ok {
				s.writeError(w, r, badRequest("Stream-Fork-Sub-Offset must be a non-negative integer"))
				return
			}
			o.ForkSubOffset = v
		}
	} else if hasOff || hasSub {
		s.writeError(w, r, badRequest("Stream-Fork-Offset and Stream-Fork-Sub-Offset require Stream-Forked-From"))
		return
	}
	rb, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer s.releaseBody(rb)
	o.Data = rb.b
	done := func() {}
	if s.cfg.Subscriptions != nil {
		done = s.cfg.Subscriptions.BeforeCreate(name) // linked durably before its data exists
	}
	info, created, err := s.eng.Create(r.Context(), name, o)
	done()
	s.notify(name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setInfoHeaders(w.Header(), info)
	if created {
		w.Header().Set("Location", requestOrigin(r)+r.URL.EscapedPath())
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleAppend serves POST: append, close, or append-and-close.
func (s *Server) handleAppend(w http.ResponseWriter, r *http.Request, name string) {
	start := time.Now()
	producer, err := parseProducer(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rb, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer s.releaseBody(rb)
	body := rb.b
	ct := r.Header.Get("Content-Type")
	if len(body) > 0 && ct == "" {
		s.writeError(w, r, badRequest("Content-Type is required when appending data"))
		return
	}
	res, err := s.eng.Append(r.Context(), name, body, engine.AppendOptions{
		ContentType: ct,
		Seq:         r.Header.Get(hStreamSeq),
		Producer:    producer,
		Close:       closedHeader(r),
	})
	if err != nil {
		s.notify(name)
		s.writeError(w, r, err)
		return
	}
	s.metrics.appendLatency.observe(time.Since(start))
	s.notify(name)
	h := w.Header()
	setTailHeaders(h, res.Tail, res.Closed)
	if producer != nil {
		h.Set(hProducerEpoch, strconv.FormatUint(res.ProducerEpoch, 10))
		h.Set(hProducerSeq, strconv.FormatUint(res.ProducerSeq, 10))
		if !res.Duplicate && len(body) > 0 {
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleDelete serves DELETE.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, name string) {
	err := s.eng.Delete(r.Context(), name)
	s.notify(name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// notify tells the subscriptions that stream name may have changed. Also
// after an error: a write whose request ended while it was being stored
// still took effect.
func (s *Server) notify(name string) {
	if s.cfg.Subscriptions != nil {
		s.cfg.Subscriptions.Notify(name)
	}
}

// handleHead serves HEAD: metadata, never cached, not a TTL access.
func (s *Server) handleHead(w http.ResponseWriter, r *http.Request, name string) {
	info, err := s.eng.Head(name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	setInfoHeaders(h, info)
	if info.HasTTL {
		h.Set(hTTL, strconv.FormatUint(info.TTL, 10))
	}
	if !info.ExpiresAt.IsZero() {
		h.Set(hExpiresAt, info.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	w.WriteHeader(http.StatusOK)
}

// setInfoHeaders sets the metadata headers that create and HEAD share.
func setInfoHeaders(h http.Header, info engine.StreamInfo) {
	h.Set("Content-Type", info.ContentType)
	setTailHeaders(h, info.Tail, info.Closed)
}

// setTailHeaders sets the headers of a response that reports a stream's
// tail and must not be cached: next offset, no-store, closure. The keys are
// canonical and the shared values never modified, so the map is assigned
// directly (these are on every append's path).
func setTailHeaders(h http.Header, tail engine.Offset, closed bool) {
	h[hNextOffset] = []string{tail.String()}
	h["Cache-Control"] = valNoStore
	if closed {
		h[hStreamClosed] = valTrue
	}
}

// requestOrigin returns scheme://host of the request, for absolute URLs.
func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
