package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/durastream/durastream/engine"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Server is the HTTP handler for one engine.
type Server struct {
	eng     *engine.Engine
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// life ends at Shutdown: live reads then end cleanly.
	life    context.Context
	endLife context.CancelFunc
	readers atomic.Int64 // live long-poll and SSE readers
	live    atomic.Int64 // live reads admitted under MaxLiveReaders (limits.go)
	limiter *rateLimiter // nil without RateLimit
}

// New returns a handler serving eng.
func New(eng *engine.Engine, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	life, end := context.WithCancel(context.Background())
	return &Server{eng: eng, cfg: cfg, log: cfg.Logger, metrics: newMetrics(), life: life, endLife: end,
		limiter: newRateLimiter(cfg)}, nil
}

// Shutdown ends live long-poll and SSE reads so that http.Server.Shutdown
// can finish; it does not close the engine.
func (s *Server) Shutdown() { s.endLife() }

// Headers a browser client may send and must be allowed to read.
const (
	corsAllowHeaders = "Content-Type, Content-Encoding, If-None-Match, Authorization, Stream-Seq, Stream-TTL, " +
		"Stream-Expires-At, Stream-Closed, Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset, " +
		"Producer-Id, Producer-Epoch, Producer-Seq"
	corsExposeHeaders = "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, " +
		"Stream-Expires-At, Stream-Sse-Data-Encoding, ETag, Location, Content-Type, Producer-Epoch, Producer-Seq, " +
		"Producer-Expected-Seq, Producer-Received-Seq, Retry-After"
	corsAllowMethods = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
)

// Values of the headers every response carries. Shared and never modified:
// assigning them to the header map directly spares each request a
// canonicalization and an allocation per header.
var (
	valNosniff     = []string{"nosniff"}
	valCrossOrigin = []string{"cross-origin"}
	valAnyOrigin   = []string{"*"}
	valExpose      = []string{corsExposeHeaders}
	valNoStore     = []string{"no-store"}
	valTrue        = []string{"true"}
)

// SetCommonHeaders sets the security (12.7) and CORS headers that every
// response carries. Exported so that the benchmark's null server answers
// with the same headers and its ceiling includes the same HTTP work.
func SetCommonHeaders(h http.Header) {
	h["X-Content-Type-Options"] = valNosniff
	h["Cross-Origin-Resource-Policy"] = valCrossOrigin
	h["Access-Control-Allow-Origin"] = valAnyOrigin
	h["Access-Control-Expose-Headers"] = valExpose
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	SetCommonHeaders(h)

	rec := &statusRecorder{ResponseWriter: w}
	op := "other"
	defer func() { s.metrics.observeRequest(op, rec.status) }()

	path := r.URL.Path
	if path != "/health" && path != "/metrics" && s.rateLimited(rec, r) {
		op = "rate-limited"
		return
	}
	switch {
	case path == "/health":
		op = "health"
		s.handleHealth(rec, r)
		return
	case path == "/metrics":
		op = "metrics"
		s.handleMetrics(rec, r)
		return
	case !strings.HasPrefix(path, s.cfg.Prefix):
		s.writeError(rec, r, &httpError{http.StatusNotFound, "not found"})
		return
	}
	if r.Method == http.MethodOptions {
		op = "preflight"
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders+", "+req)
		} else {
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		}
		h.Set("Access-Control-Max-Age", "86400")
		rec.WriteHeader(http.StatusNoContent)
		return
	}
	name, err := s.streamPath(r)
	if err != nil {
		s.writeError(rec, r, err)
		return
	}
	switch r.Method {
	case http.MethodPut:
		op = "create"
		s.handleCreate(rec, r, name)
	case http.MethodPost:
		op = "append"
		s.handleAppend(rec, r, name)
	case http.MethodDelete:
		op = "delete"
		s.handleDelete(rec, r, name)
	case http.MethodHead:
		op = "head"
		s.handleHead(rec, r, name)
	case http.MethodGet:
		op = "read"
		live, _ := queryParam(r.URL.RawQuery, "live")
		release, ok := s.admitLive(rec, r, live, &op)
		if !ok {
			return
		}
		defer release()
		s.handleRead(rec, r, name, live, &op)
	default:
		h.Set("Allow", corsAllowMethods)
		s.writeError(rec, r, &httpError{http.StatusMethodNotAllowed, "method not allowed"})
	}
}

// sourcePath turns a Stream-Forked-From value (a URL path, possibly with the
// prefix) into a stream path.
func (s *Server) sourcePath(v string) (string, error) {
	if u, err := url.Parse(v); err == nil && u.Path != "" {
		v = u.Path
	}
	v = strings.TrimPrefix(v, s.cfg.Prefix)
	v = strings.TrimPrefix(v, "/")
	if v == "" {
		return "", badRequest("Stream-Forked-From must name a stream path")
	}
	return v, nil
}

// readBody reads a request body within MaxAppendBytes, decoding
// Content-Encoding gzip or zstd. The caller may hand the body to putBody
// once nothing refers to it (the engine keeps no reference to its input).
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxAppendBytes
	if r.ContentLength == 0 {
		return nil, nil // nothing to decode, whatever Content-Encoding says
	}
	if r.ContentLength > limit {
		return nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", limit)}
	}
	var src io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, badRequest("invalid gzip body")
		}
		defer zr.Close()
		src = zr
	case "zstd":
		zr, err := zstd.NewReader(r.Body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)+1<<20))
		if err != nil {
			return nil, badRequest("invalid zstd body")
		}
		defer zr.Close()
		src = zr
	default:
		return nil, &httpError{http.StatusUnsupportedMediaType, "unsupported Content-Encoding " + enc}
	}
	if src == r.Body && r.ContentLength > 0 {
		// The size is known: read into a buffer of exactly that size
		// (pooled when large), not a growing one.
		body := getBody(int(r.ContentLength))
		if _, err := io.ReadFull(r.Body, body); err != nil {
			putBody(body)
			return nil, badRequest("reading request body: " + err.Error())
		}
		return body, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(src, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{http.StatusRequestEntityTooLarge, "request body too large"}
		}
		if r.Header.Get("Content-Encoding") != "" {
			return nil, badRequest("invalid compressed body: " + err.Error())
		}
		return nil, badRequest("reading request body: " + err.Error())
	}
	if n > limit {
		return nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", limit)}
	}
	return buf.Bytes(), nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.eng.Err(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "{\"status\":\"unavailable\",\"error\":%q}\n", err.Error())
		return
	}
	io.WriteString(w, "{\"status\":\"ok\"}\n")
}

// statusRecorder remembers the status for metrics and passes Flush through.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Large request bodies are read into pooled buffers, by power-of-two size
// class from 64 KiB: a stream of 1 MiB appends would otherwise allocate a
// megabyte per request and keep the garbage collector busy.
const (
	minPooledBody = 16 // log2 of the smallest pooled size, 64 KiB
	maxPooledBody = 26 // log2 of the largest, 64 MiB
)

var bodyPools [maxPooledBody + 1]sync.Pool

func getBody(n int) []byte {
	c := bits.Len(uint(n - 1))
	if c < minPooledBody || c > maxPooledBody {
		return make([]byte, n)
	}
	if p, ok := bodyPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

// putBody returns a body from getBody to its pool.
func putBody(b []byte) {
	c := bits.Len(uint(cap(b) - 1))
	if cap(b) != 1<<c || c < minPooledBody || c > maxPooledBody {
		return
	}
	bodyPools[c].Put(&b)
}
