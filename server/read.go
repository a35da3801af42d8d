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
	"time"

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

// readLive reads a long-poll response's or an SSE data event's chunk.
func (s *Server) readLive(name string, from engine.ReadFrom) (*engine.Chunk, error) {
	return s.eng.Read(name, from, engine.ReadOptions{MaxBytes: s.cfg.LiveChunkBytes})
}

// readLiveNext is readLive at the Next of an earlier chunk of stream
// incarnation id: the engine need not check that it is a message boundary.
func (s *Server) readLiveNext(name string, next engine.Offset, id uint64) (*engine.Chunk, error) {
	return s.eng.Read(name, engine.At(next), engine.ReadOptions{MaxBytes: s.cfg.LiveChunkBytes, Continues: id})
}

// A whole catch-up response is read in pages: the first small, so its
// first byte leaves soon, the rest larger (fewer engine reads and pins).
const (
	firstPageBytes = 1 << 20
	wholePageBytes = 4 << 20
)

// catchUp answers a plain read with what is there now: everything from the
// offset up to the tail it finds, or MaxReadBytes of it when the operator
// set that cap.
func (s *Server) catchUp(w http.ResponseWriter, r *http.Request, name string, from engine.ReadFrom) {
	page := s.cfg.MaxReadBytes
	if page == 0 {
		page = firstPageBytes
	}
	c, err := s.eng.Read(name, from, engine.ReadOptions{MaxBytes: page})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch {
	case from.Kind == engine.FromNow:
		defer c.Release()
		s.writeTail(w, c, http.StatusOK, "")
	case c.UpToDate || s.cfg.MaxReadBytes > 0:
		defer c.Release()
		s.writeChunk(w, r, c, false)
	default:
		s.writeWhole(w, r, name, c)
	}
}

// writeTail answers offset=now and empty live responses: no data, the tail
// offset; never cached unless cacheControl says otherwise.
func (s *Server) writeTail(w http.ResponseWriter, c *engine.Chunk, status int, cacheControl string) {
	h := w.Header()
	h.Set("Content-Type", c.ContentType)
	h.Set(hUpToDate, "true")
	setTailHeaders(h, c.Next, c.Closed)
	if cacheControl != "" {
		h.Set("Cache-Control", cacheControl)
	}
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

// readMeta is what a data response's headers describe: the range
// [start, next) of stream incarnation id, and its wire body length.
type readMeta struct {
	id               uint64
	start, next      engine.Offset
	upToDate, closed bool
	contentType      string
	bodyLen          int64
}

func chunkMeta(c *engine.Chunk) readMeta {
	return readMeta{id: c.StreamID, start: c.Start, next: c.Next, upToDate: c.UpToDate,
		closed: c.Closed, contentType: c.ContentType, bodyLen: c.Len()}
}

// etag identifies a response's content: stream incarnation, range and
// closure (so a close without new data changes it), and content coding.
func etag(m readMeta, coding string) string {
	var b strings.Builder
	b.WriteByte('"')
	b.WriteString(strconv.FormatUint(m.id, 36))
	b.WriteByte(':')
	b.WriteString(m.start.String())
	b.WriteByte(':')
	b.WriteString(m.next.String())
	if m.closed {
		b.WriteString(":c")
	}
	if coding != "" {
		b.WriteByte(':')
		b.WriteString(coding)
	}
	b.WriteByte('"')
	return b.String()
}

// readHeaders sets the headers of section 5.6 and picks the content coding
// ("" for none). False: If-None-Match matched and a 304 went out.
func (s *Server) readHeaders(w http.ResponseWriter, r *http.Request, m readMeta, live bool) (string, bool) {
	h := w.Header()
	h.Set("Content-Type", m.contentType)
	h.Set(hNextOffset, m.next.String())
	if m.upToDate {
		h.Set(hUpToDate, "true")
	}
	if m.closed {
		h.Set(hStreamClosed, "true")
	}
	if live || !m.closed {
		h.Set(hCursor, s.cursor(r))
	}
	if m.next > m.start || m.closed {
		h.Set("Cache-Control", s.cacheable(r, live))
	} else {
		h.Set("Cache-Control", "no-store") // an empty tail read changes as soon as data arrives
	}
	h.Add("Vary", "Accept-Encoding")
	coding := ""
	if s.cfg.CompressMinBytes >= 0 && m.bodyLen >= s.cfg.CompressMinBytes {
		coding = acceptedCoding(r.Header.Get("Accept-Encoding"))
	}
	tag := etag(m, coding)
	h.Set("ETag", tag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, tag) {
		w.WriteHeader(http.StatusNotModified)
		return "", false
	}
	return coding, true
}

// writeChunk sends a read's data.
func (s *Server) writeChunk(w http.ResponseWriter, r *http.Request, c *engine.Chunk, live bool) {
	m := chunkMeta(c)
	coding, ok := s.readHeaders(w, r, m, live)
	if !ok {
		return
	}
	h := w.Header()
	if coding != "" {
		body, err := compress(coding, c.Buffers())
		if err == nil {
			h.Set("Content-Encoding", coding)
			h.Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body)
			return
		}
		h.Set("ETag", etag(m, ""))
	}
	// Uncompressed: the stored bytes go from the mapping to the socket.
	h.Set("Content-Length", strconv.FormatInt(c.Len(), 10))
	w.WriteHeader(http.StatusOK)
	for _, b := range c.Buffers() {
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

// writeWhole answers a catch-up read that its first page c does not hold:
// the range from c.Start to the tail c found, in one response. It goes out
// page by page, each a zero-copy view of the segments whose pages leave the
// process's mappings once sent (ReadOptions.OnePass), so memory stays flat
// whatever the size. Appends that land meanwhile are not in it:
// Stream-Next-Offset says where they start. A page that cannot be read
// once the headers are out (the stream was deleted, or replaced by another
// of the same path) aborts the connection: the client sees an error, never
// a short body presented as whole.
func (s *Server) writeWhole(w http.ResponseWriter, r *http.Request, name string, c *engine.Chunk) {
	end := c.Tail
	m := readMeta{id: c.StreamID, start: c.Start, next: end, upToDate: true, closed: c.TailClosed,
		contentType: c.ContentType, bodyLen: int64(end - c.Start)}
	if c.JSON {
		m.bodyLen++ // '[' + messages + ']', the last stored comma dropped
	}
	coding, ok := s.readHeaders(w, r, m, false)
	if !ok {
		c.Release()
		return
	}
	var out io.Writer = w
	if coding != "" {
		zw, done, err := newEncoder(coding, w)
		if err != nil {
			c.Release()
			s.writeError(w, r, err)
			return
		}
		defer done()
		w.Header().Set("Content-Encoding", coding)
		out = zw
	} else {
		w.Header().Set("Content-Length", strconv.FormatInt(m.bodyLen, 10))
	}
	w.WriteHeader(http.StatusOK)
	isJSON := c.JSON
	if isJSON {
		out.Write([]byte{'['})
	}
	for {
		bufs := c.Data()
		last := c.Next == end
		if last && isJSON {
			i := len(bufs) - 1
			bufs[i] = bufs[i][:len(bufs[i])-1] // the trailing comma
		}
		for _, b := range bufs {
			for len(b) > 0 {
				n := min(len(b), 256<<10)
				if _, err := out.Write(b[:n]); err != nil {
					c.Release()
					return // the client went away
				}
				b = b[n:]
			}
		}
		next := c.Next
		c.Release()
		if last {
			break
		}
		var err error
		c, err = s.eng.Read(name, engine.At(next), engine.ReadOptions{MaxBytes: wholePageBytes, End: end, OnePass: true,
			Continues: m.id})
		if err == nil && c.StreamID != m.id {
			c.Release()
			err = engine.ErrNotFound
		}
		if err != nil {
			s.log.Info("whole read cut short: connection aborted", "path", r.URL.Path, "at", next.String(), "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	if isJSON {
		out.Write([]byte{']'})
	}
	if zw, ok := out.(io.Closer); ok {
		zw.Close() // the encoder's last block; an error means the client left
	}
}

func (s *Server) cacheable(r *http.Request, live bool) string {
	scope := "public"
	if s.cfg.PrivateCache {
		scope = "private"
	}
	if live && echoesCursor(r) {
		// A long-poll batch for a URL unique to this cursor interval.
		return s.cursorCacheable()
	}
	if s.cfg.CatchupMaxAge <= 0 {
		// The answer for this URL changes when data is appended, the
		// stream is closed, deleted or recreated: a cache may keep it but
		// must revalidate it (If-None-Match: a 304 when nothing changed).
		return scope + ", no-cache"
	}
	secs := int64(s.cfg.CatchupMaxAge / time.Second)
	return scope + ", max-age=" + strconv.FormatInt(secs, 10) + ", stale-while-revalidate=" + strconv.FormatInt(5*secs, 10)
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

// newEncoder returns a pooled gzip or zstd encoder writing to dst, and the
// function that returns it to the pool (after Close).
func newEncoder(coding string, dst io.Writer) (io.WriteCloser, func(), error) {
	switch coding {
	case "gzip":
		gz := gzipPool.Get().(*gzip.Writer)
		gz.Reset(dst)
		return gz, func() { gzipPool.Put(gz) }, nil
	case "zstd":
		zs := zstdPool.Get().(*zstd.Encoder)
		zs.Reset(dst)
		return zs, func() { zstdPool.Put(zs) }, nil
	}
	return nil, nil, errors.New("unknown coding " + coding)
}

func compress(coding string, bufs [][]byte) ([]byte, error) {
	var out bytes.Buffer
	zw, done, err := newEncoder(coding, &out)
	if err != nil {
		return nil, err
	}
	defer done()
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
	c, err := s.readLive(name, from)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if c.Next > c.Start && from.Kind != engine.FromNow {
		defer c.Release()
		s.writeChunk(w, r, c, true)
		return
	}
	tail, id := c.Next, c.StreamID
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
			if c, err = s.readLiveNext(name, tail, id); err != nil {
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
			if c, err = s.readLiveNext(name, tail, id); err != nil {
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
	cc := ""
	if echoesCursor(r) && !c.Closed {
		// A timeout for a request that echoed a cursor: the answer names
		// the next cursor. Never without a cursor: that URL is reused.
		cc = s.cursorCacheable()
	}
	s.writeTail(w, c, http.StatusNoContent, cc)
}

// echoesCursor reports whether a live request carries the cursor of an
// earlier answer: its URL is then unique to one cursor interval and offset.
func echoesCursor(r *http.Request) bool {
	_, n := queryParam(r.URL.RawQuery, "cursor")
	return n > 0
}

// cursorCacheable is the Cache-Control of a long-poll answer (data or
// timeout) to a request that echoed a cursor: kept just long enough for a
// shared cache to hand one origin answer to every reader waiting on the
// URL (request collapsing, section 10.1).
func (s *Server) cursorCacheable() string {
	if s.cfg.PrivateCache {
		return "private, max-age=1"
	}
	return "public, max-age=1"
}
