package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/durastream/durastream/engine"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// handleRead serves GET: catch-up, long-poll or SSE, as the live parameter
// says.
func (s *Server) handleRead(w http.ResponseWriter, r *http.Request, name, live string, op *string) {
	offStr, n := queryParam(r.URL.RawQuery, "offset")
	if n > 1 {
		s.writeError(w, r, badRequest("offset must be given once"))
		return
	}
	hasOffset := n == 1
	if hasOffset {
		if offStr == "" {
			s.writeError(w, r, badRequest("offset must not be empty"))
			return
		}
	}
	from, err := engine.ParseReadOffset(offStr)
	if err != nil {
		s.writeError(w, r, badRequest("malformed offset"))
		return
	}
	switch live {
	case "":
		s.catchUp(w, r, name, from)
	case "long-poll":
		*op = "long-poll"
		if !hasOffset {
			s.writeError(w, r, badRequest("live=long-poll requires an offset"))
			return
		}
		s.longPoll(w, r, name, from)
	case "sse":
		*op = "sse"
		if !hasOffset {
			s.writeError(w, r, badRequest("live=sse requires an offset"))
			return
		}
		s.serveSSE(w, r, name, from)
	default:
		s.writeError(w, r, badRequest("live must be long-poll or sse"))
	}
}

func (s *Server) read(name string, from engine.ReadFrom) (*engine.Chunk, error) {
	return s.eng.Read(name, from, engine.ReadOptions{MaxBytes: s.cfg.MaxReadBytes})
}

// catchUp answers a plain read with what is there now.
func (s *Server) catchUp(w http.ResponseWriter, r *http.Request, name string, from engine.ReadFrom) {
	c, err := s.read(name, from)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer c.Release()
	if from.Kind == engine.FromNow {
		s.writeTail(w, c, http.StatusOK)
		return
	}
	s.writeChunk(w, r, c, false)
}

// writeTail answers offset=now and empty live responses: no data, the tail
// offset, never cached.
func (s *Server) writeTail(w http.ResponseWriter, c *engine.Chunk, status int) {
	h := w.Header()
	h.Set("Content-Type", c.ContentType)
	h.Set(hUpToDate, "true")
	setTailHeaders(h, c.Next, c.Closed)
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	var body []byte
	if c.JSON {
		body = []byte("[]")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// etag identifies a response's content: stream incarnation, range and
// closure (so a close without new data changes it), and content coding.
func etag(c *engine.Chunk, coding string) string {
	var b strings.Builder
	b.WriteByte('"')
	b.WriteString(strconv.FormatUint(c.StreamID, 36))
	b.WriteByte(':')
	b.WriteString(c.Start.String())
	b.WriteByte(':')
	b.WriteString(c.Next.String())
	if c.Closed {
		b.WriteString(":c")
	}
	if coding != "" {
		b.WriteByte(':')
		b.WriteString(coding)
	}
	b.WriteByte('"')
	return b.String()
}

// writeChunk sends a read's data with the headers of section 5.6.
func (s *Server) writeChunk(w http.ResponseWriter, r *http.Request, c *engine.Chunk, live bool) {
	h := w.Header()
	h.Set("Content-Type", c.ContentType)
	h.Set(hNextOffset, c.Next.String())
	if c.UpToDate {
		h.Set(hUpToDate, "true")
	}
	if c.Closed {
		h.Set(hStreamClosed, "true")
	}
	if live || !c.Closed {
		h.Set(hCursor, s.cursor(r))
	}
	if c.Next > c.Start || c.Closed {
		h.Set("Cache-Control", s.cacheable())
	} else {
		h.Set("Cache-Control", "no-store") // an empty tail read changes as soon as data arrives
	}
	h.Add("Vary", "Accept-Encoding")
	coding := ""
	if s.cfg.CompressMinBytes >= 0 && c.Len() >= s.cfg.CompressMinBytes {
		coding = acceptedCoding(r.Header.Get("Accept-Encoding"))
	}
	tag := etag(c, coding)
	h.Set("ETag", tag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if coding != "" {
		body, err := compress(coding, c.Buffers())
		if err == nil {
			h.Set("Content-Encoding", coding)
			h.Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body)
			return
		}
		h.Set("ETag", etag(c, ""))
	}
	// Uncompressed: the stored bytes go from the mapping to the socket.
	h.Set("Content-Length", strconv.FormatInt(c.Len(), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	for _, b := range c.Buffers() {
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

func (s *Server) cacheable() string {
	if s.cfg.PrivateCache {
		return "private, max-age=60, stale-while-revalidate=300"
	}
	return "public, max-age=60, stale-while-revalidate=300"
}

// etagMatches implements If-None-Match: a list of tags or "*".
func etagMatches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}

// acceptedCoding picks zstd or gzip from Accept-Encoding, or "". A coding
// with q=0 (in any spelling, e.g. 0.000) is refused, per RFC 9110 12.5.3.
func acceptedCoding(ae string) string {
	gz := false
	for _, part := range strings.Split(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if qZero(params) {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "zstd":
			return "zstd"
		case "gzip", "x-gzip":
			gz = true
		}
	}
	if gz {
		return "gzip"
	}
	return ""
}

// qZero reports whether Accept-Encoding parameters carry a q weight of 0.
func qZero(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q == 0
		}
	}
	return false
}

var (
	gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed); return w }}
	zstdPool = sync.Pool{New: func() any {
		w, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		return w
	}}
)

func compress(coding string, bufs [][]byte) ([]byte, error) {
	var out bytes.Buffer
	var zw io.WriteCloser
	switch coding {
	case "gzip":
		gz := gzipPool.Get().(*gzip.Writer)
		defer gzipPool.Put(gz)
		gz.Reset(&out)
		zw = gz
	case "zstd":
		zs := zstdPool.Get().(*zstd.Encoder)
		defer zstdPool.Put(zs)
		zs.Reset(&out)
		zw = zs
	default:
		return nil, errors.New("unknown coding " + coding)
	}
	for _, b := range bufs {
		if _, err := zw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// longPoll answers with data at the offset, or waits up to LongPollTimeout
// for some; 204 on timeout, immediately 204 with Stream-Closed at the end of
// a closed stream.
func (s *Server) longPoll(w http.ResponseWriter, r *http.Request, name string, from engine.ReadFrom) {
	c, err := s.read(name, from)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if c.Next > c.Start && from.Kind != engine.FromNow {
		defer c.Release()
		s.writeChunk(w, r, c, true)
		return
	}
	tail := c.Next
	c.Release()
	if !c.Closed {
		s.readers.Add(1)
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.LongPollTimeout)
		stop := context.AfterFunc(s.life, cancel)
		err = s.eng.Wait(ctx, name, tail)
		stop()
		cancel()
		s.readers.Add(-1)
		switch {
		case err == nil:
			if c, err = s.read(name, engine.At(tail)); err != nil {
				s.writeError(w, r, err)
				return
			}
			defer c.Release()
			if c.Next > c.Start {
				s.writeChunk(w, r, c, true)
				return
			}
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			if r.Context().Err() != nil {
				return // client went away
			}
			if c, err = s.read(name, engine.At(tail)); err != nil {
				s.writeError(w, r, err)
				return
			}
			defer c.Release()
		default:
			s.writeError(w, r, err)
			return
		}
	}
	if !c.Closed {
		w.Header().Set(hCursor, s.cursor(r))
	}
	s.writeTail(w, c, http.StatusNoContent)
}
