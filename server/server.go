package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/durastream/durastream/engine"
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
	bodies  *byteBudget  // request bodies in flight (body.go)
	proxy   *proxyDoor   // the proxy protocol (proxy.go); nil when off

	// proxyClosedSeen, in tests only, runs when a proxy read has found its
	// stream closed and is about to read the fetch's outcome: the window in
	// which a delete can remove the record.
	proxyClosedSeen func(id string)
}

// New returns a handler serving eng.
func New(eng *engine.Engine, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	life, end := context.WithCancel(context.Background())
	return &Server{eng: eng, cfg: cfg, log: cfg.Logger, metrics: newMetrics(), life: life, endLife: end,
		limiter: newRateLimiter(cfg), bodies: newByteBudget(cfg.MaxInflightBodyBytes, cfg.AfterBodyBurst),
		proxy: newProxyDoor(cfg.Proxy)}, nil
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

	handlerStarted(r)
	if mayBeSmuggled(r) {
		h["Connection"] = valClose
	}
	if !expectOK(r) {
		s.writeError(rec, r, &httpError{http.StatusExpectationFailed, msgExpect})
		return
	}
	s.limitBody(rec, r)

	path := r.URL.Path
	if path != "/health" && path != "/metrics" && s.rateLimited(rec, r) {
		op = "rate-limited"
		return
	}
	switch {
	case path == "/health":
		op = "health"
		if s.authorizeOps(rec, r) {
			s.handleHealth(rec, r)
		}
		return
	case path == "/metrics":
		op = "metrics"
		if s.authorizeOps(rec, r) {
			s.handleMetrics(rec, r)
		}
		return
	case s.proxy != nil && isProxyPath(path):
		op = "proxy"
		s.serveProxy(rec, r, &op)
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
	if rest, ok := strings.CutPrefix(path, s.cfg.Prefix+"__ds/"); ok && s.cfg.Subscriptions != nil {
		op = "subscriptions"
		s.serveControl(rec, r, rest)
		return
	}
	name, err := s.streamPath(r)
	if err != nil {
		s.writeError(rec, r, err)
		return
	}
	if !s.authorize(rec, r, name) {
		op = "refused"
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

// sourcePath turns a Stream-Forked-From value (a URL or URL path, possibly
// with the prefix) into a stream path, which must pass the rules of a
// stream path in a request URL (checkPath): else a fork could copy what
// no request can name, such as a subscription's state under __ds.
func (s *Server) sourcePath(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil {
		return "", badRequest("Stream-Forked-From must be a URL path")
	}
	name, ok := strings.CutPrefix(u.Path, s.cfg.Prefix)
	if !ok {
		name = strings.TrimPrefix(u.Path, "/")
	}
	if err := s.checkPath(name, u.RawPath); err != nil {
		return "", badRequest("Stream-Forked-From must name a stream: " + err.Error())
	}
	return name, nil
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

// statusRecorder remembers the status for metrics, keeps responses that
// needed a credential out of shared caches, and passes Flush through.
type statusRecorder struct {
	http.ResponseWriter
	status  int
	private bool // the request needed a credential (auth.go)
}

// begin runs once, before the response's header is sent.
func (r *statusRecorder) begin(code int) {
	if r.status == 0 {
		r.status = code
		if r.private {
			privateCache(r.Header())
		}
	}
}

func (r *statusRecorder) WriteHeader(code int) {
	r.begin(code)
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.begin(http.StatusOK)
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	r.begin(http.StatusOK)
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
