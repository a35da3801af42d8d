package server

// The Durable Streams proxy protocol (PROXY_PROTOCOL.md, draft v0.1) on the
// main listener, over the upstream-fetch manager (package fetch):
//
//	POST   /v1/proxy        create: fetch the upstream, 201 + pre-signed Location
//	GET    /v1/proxy/{id}   read the response body stream (base-protocol reads)
//	HEAD   /v1/proxy/{id}   metadata (service authentication only)
//	PATCH  /v1/proxy/{id}   ?action=abort (pre-signed URL only)
//	DELETE /v1/proxy/{id}   abort and delete (service authentication only)
//	OPTIONS                 CORS preflight
//
// A proxy stream is a fetch without a key; its id is the fetch id, a
// lowercase UUID, checked before anything else (404 otherwise). Reads
// delegate to the server's ordinary read path (handleRead, handleHead) on
// the fetch's body stream, through proxyWriter, which adds the proxy
// headers, presents the stream as application/octet-stream (the upstream's
// type is in Upstream-Content-Type: a stream labelled text/event-stream
// would make Durable Streams clients take a catch-up response for the
// protocol's own SSE), keeps responses out of shared caches, and turns the
// read path's plain-text errors into the JSON envelope of section 11.
//
// However a fetch ends, its stream is closed (Stream-Closed: true) with
// what had arrived; Upstream-Outcome on reads and HEAD says how it ended:
// running, complete, aborted, upstream-error, interrupted, idle-timeout,
// too-large or storage-error (fetch.Outcome).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/durastream/durastream/fetch"
)

// proxyBase is the proxy protocol's URL path on the main listener.
const proxyBase = "/v1/proxy"

// Proxy protocol headers.
const (
	hUpstreamURL         = "Upstream-Url"
	hUpstreamMethod      = "Upstream-Method"
	hUpstreamContentType = "Upstream-Content-Type"
	hUpstreamStatus      = "Upstream-Status"
	hUpstreamOutcome     = "Upstream-Outcome"
)

// proxyStreamType is the content type proxy streams are read as.
const proxyStreamType = "application/octet-stream"

// CORS for the proxy routes (section 10).
const (
	proxyAllowMethods = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
	proxyAllowHeaders = "Upstream-URL, Upstream-Method, Upstream-Authorization, Authorization, Content-Type, " +
		"If-None-Match"
	proxyExposeHeaders = corsExposeHeaders + ", Upstream-Content-Type, Upstream-Status, Upstream-Outcome"
)

var valProxyExpose = []string{proxyExposeHeaders}

// proxyDoor is the proxy protocol's state; nil when it is off.
type proxyDoor struct {
	mgr     *fetch.Manager
	sign    *signer
	urlTTL  time.Duration
	maxBody int64
	baseURL string // "" : from the request
	now     func() time.Time
}

func newProxyDoor(c ProxyConfig) *proxyDoor {
	if c.Manager == nil {
		return nil
	}
	return &proxyDoor{mgr: c.Manager, sign: newSigner(c.Secret), urlTTL: c.URLTTL, maxBody: c.MaxRequestBytes,
		baseURL: strings.TrimSuffix(c.BaseURL, "/"), now: c.Now}
}

// absoluteHTTPURL reports whether s is an absolute http(s) URL without a
// query or fragment (a ProxyConfig.BaseURL).
func absoluteHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" &&
		u.Fragment == "" && !u.ForceQuery
}

// isProxyPath reports whether path is one of the proxy routes' paths.
func isProxyPath(path string) bool {
	return path == proxyBase || path == proxyBase+"/" || strings.HasPrefix(path, proxyBase+"/")
}

// serveProxy routes a request under /v1/proxy.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request, op *string) {
	h := w.Header()
	h["Access-Control-Expose-Headers"] = valProxyExpose
	if r.Method == http.MethodOptions {
		*op = "proxy-preflight"
		h.Set("Access-Control-Allow-Methods", proxyAllowMethods)
		// Every other request header is forwarded upstream, so whatever
		// the page asks to send is allowed.
		allow := proxyAllowHeaders
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			allow += ", " + req
		}
		h.Set("Access-Control-Allow-Headers", allow)
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, proxyBase), "/")
	if rest == "" {
		if r.Method != http.MethodPost {
			h.Set("Allow", "POST, OPTIONS")
			writeProxyError(w, r, http.StatusNotFound, "NOT_FOUND", "no route for "+r.Method+" "+proxyBase)
			return
		}
		*op = "proxy-create"
		s.proxyCreate(w, r)
		return
	}
	if strings.Contains(rest, "/") {
		writeProxyError(w, r, http.StatusNotFound, "NOT_FOUND", "no such route")
		return
	}
	id := rest
	if !validStreamID(id) {
		writeProxyError(w, r, http.StatusNotFound, "STREAM_NOT_FOUND", "no such proxy stream")
		return
	}
	switch r.Method {
	case http.MethodGet:
		*op = "proxy-read"
		s.proxyRead(w, r, id, op)
	case http.MethodHead:
		*op = "proxy-head"
		s.proxyHead(w, r, id)
	case http.MethodPatch:
		*op = "proxy-abort"
		s.proxyAbort(w, r, id)
	case http.MethodDelete:
		*op = "proxy-delete"
		s.proxyDelete(w, r, id)
	default:
		h.Set("Allow", "GET, HEAD, PATCH, DELETE, OPTIONS")
		writeProxyError(w, r, http.StatusNotFound, "NOT_FOUND", "no route for "+r.Method+" "+proxyBase+"/{id}")
	}
}

// validStreamID reports whether id is a lowercase UUID
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex digits 0-9a-f).
func validStreamID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// proxyError is the JSON error envelope of section 11.
type proxyError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeProxyError answers with the section-11 envelope.
func writeProxyError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Del("ETag")
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="durastream proxy"`)
	case http.StatusServiceUnavailable:
		if h.Get("Retry-After") == "" {
			h.Set("Retry-After", "1")
		}
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	var e proxyError
	e.Error.Code, e.Error.Message = code, printable(msg, maxMessage)
	b, _ := json.Marshal(e)
	w.Write(append(b, '\n'))
}

func writeAuthFailure(w http.ResponseWriter, r *http.Request, f *authFailure) {
	writeProxyError(w, r, http.StatusUnauthorized, f.code, f.msg)
}

// proxyCreate serves POST /v1/proxy (section 4.1).
func (s *Server) proxyCreate(w http.ResponseWriter, r *http.Request) {
	p := s.proxy
	if f := p.sign.serviceAuth(r.URL.RawQuery, r.Header.Get("Authorization")); f != nil {
		writeAuthFailure(w, r, f)
		return
	}
	rawURLs := r.Header.Values(hUpstreamURL)
	if len(rawURLs) == 0 || strings.TrimSpace(rawURLs[0]) == "" {
		writeProxyError(w, r, http.StatusBadRequest, "MISSING_UPSTREAM_URL", "the Upstream-URL header is required")
		return
	}
	methods := r.Header.Values(hUpstreamMethod)
	if len(methods) == 0 || strings.TrimSpace(methods[0]) == "" {
		writeProxyError(w, r, http.StatusBadRequest, "MISSING_UPSTREAM_METHOD", "the Upstream-Method header is required")
		return
	}
	method := strings.ToUpper(strings.TrimSpace(methods[0]))
	switch {
	case len(methods) > 1:
		writeProxyError(w, r, http.StatusBadRequest, "INVALID_UPSTREAM_METHOD", "Upstream-Method must be sent once")
		return
	case method != http.MethodGet && method != http.MethodPost && method != http.MethodPut &&
		method != http.MethodPatch && method != http.MethodDelete:
		writeProxyError(w, r, http.StatusBadRequest, "INVALID_UPSTREAM_METHOD",
			"Upstream-Method must be one of GET, POST, PUT, PATCH, DELETE, not "+quoteInput(methods[0]))
		return
	}
	// A URL that is not a valid absolute http(s) URL cannot match any
	// allow pattern: 403, as for one that matches none.
	if len(rawURLs) > 1 {
		writeProxyError(w, r, http.StatusForbidden, "UPSTREAM_NOT_ALLOWED", "Upstream-URL must be sent once")
		return
	}
	u, err := url.Parse(strings.TrimSpace(rawURLs[0]))
	if err == nil {
		err = fetch.CheckURL(u)
	}
	if err != nil {
		writeProxyError(w, r, http.StatusForbidden, "UPSTREAM_NOT_ALLOWED", "not a valid upstream URL: "+errText(err))
		return
	}
	body, ok := s.proxyBody(w, r)
	if !ok {
		return
	}

	f, _, err := p.mgr.Start(r.Context(), fetch.Request{URL: u, Method: method, Header: r.Header, Body: body})
	if err != nil {
		s.proxyStartError(w, r, err)
		return
	}
	now := p.now()
	expires := now.Add(p.urlTTL).Unix()
	h := w.Header()
	h.Set("Location", p.location(r, f.ID, expires))
	if ct := f.ContentType(); ct != "" {
		h.Set(hUpstreamContentType, ct)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// location is the pre-signed URL of stream id.
func (p *proxyDoor) location(r *http.Request, id string, expires int64) string {
	base := p.baseURL
	if base == "" {
		base = requestOrigin(r) + proxyBase
	}
	return base + "/" + id + "?expires=" + strconv.FormatInt(expires, 10) + "&signature=" + p.sign.sign(id, expires)
}

// proxyBody reads the request body, forwarded upstream as sent (no
// decoding), within MaxRequestBytes and the in-flight body budget.
func (s *Server) proxyBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := s.proxy.maxBody
	if r.ContentLength == 0 {
		return nil, true
	}
	if r.ContentLength > limit {
		writeProxyError(w, r, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE",
			"request body exceeds "+strconv.FormatInt(limit, 10)+" bytes")
		return nil, false
	}
	var rb reqBody
	err := s.readGrowing(r.Body, limit, &rb)
	if late, _ := bodyTimedOut(r); late {
		s.releaseBody(rb)
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		writeProxyError(w, r, http.StatusRequestTimeout, "REQUEST_TIMEOUT", "request body arrived too slowly")
		return nil, false
	}
	if err != nil {
		var he *httpError
		var be *errBodyBudget
		switch {
		case errors.As(err, &be):
			writeProxyError(w, r, http.StatusServiceUnavailable, "UNAVAILABLE", be.Error())
		case errors.As(err, &he) && he.status == http.StatusRequestEntityTooLarge:
			writeProxyError(w, r, he.status, "PAYLOAD_TOO_LARGE", he.msg)
		default:
			writeProxyError(w, r, http.StatusBadRequest, "INVALID_REQUEST", "reading request body: "+errText(err))
		}
		return nil, false
	}
	// The upstream request may still be reading its body after Start
	// returns (an upstream may answer before it has read it all), so it
	// gets its own copy, not the pooled buffer.
	body := bytes.Clone(rb.b)
	s.releaseBody(rb)
	return body, true
}

// proxyStartError maps a failed fetch start to section 11.
func (s *Server) proxyStartError(w http.ResponseWriter, r *http.Request, err error) {
	var ue *fetch.UpstreamError
	switch {
	case errors.As(err, &ue):
		// Passed through: status, type and (truncated) body; no stream.
		h := w.Header()
		h.Set(hUpstreamStatus, strconv.Itoa(ue.Status))
		ct := ue.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.Set("Content-Type", ct)
		h.Set("Cache-Control", "no-store")
		// The body is the upstream's, served from our origin: never run it.
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		h.Set("Content-Length", strconv.Itoa(len(ue.Body)))
		w.WriteHeader(http.StatusBadGateway)
		w.Write(ue.Body)
	case errors.Is(err, fetch.ErrRedirect):
		writeProxyError(w, r, http.StatusBadRequest, "REDIRECT_NOT_ALLOWED", "Proxy cannot follow redirects")
	case errors.Is(err, fetch.ErrNotAllowed):
		writeProxyError(w, r, http.StatusForbidden, "UPSTREAM_NOT_ALLOWED", err.Error())
	case errors.Is(err, fetch.ErrBadURL):
		writeProxyError(w, r, http.StatusForbidden, "UPSTREAM_NOT_ALLOWED", "not a valid upstream URL: "+errText(err))
	case errors.Is(err, fetch.ErrTimeout):
		writeProxyError(w, r, http.StatusGatewayTimeout, "UPSTREAM_TIMEOUT", "upstream did not respond in time")
	case errors.Is(err, fetch.ErrUpstream):
		writeProxyError(w, r, http.StatusBadGateway, "UPSTREAM_ERROR", err.Error())
	case errors.Is(err, fetch.ErrBadRequest):
		writeProxyError(w, r, http.StatusBadRequest, "INVALID_REQUEST", err.Error())
	case errors.Is(err, fetch.ErrBusy):
		writeProxyError(w, r, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
	case errors.Is(err, fetch.ErrClosed):
		writeProxyError(w, r, http.StatusServiceUnavailable, "UNAVAILABLE", "the server is shutting down")
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The client left before the upstream answered: nobody to tell.
		// (A 499-like status, for the metrics.)
		writeProxyError(w, r, http.StatusBadGateway, "UPSTREAM_ERROR", "the request ended before the upstream answered")
	default:
		s.log.Error("proxy: storing a fetch failed", "err", err)
		writeProxyError(w, r, http.StatusBadGateway, "STORAGE_ERROR", "failed to create the durable stream")
	}
}

// proxyFetch looks up proxy stream id, answering 404 (or a storage
// error) when there is none. Fetches with a key belong to the durablefetch
// front door and are not proxy streams.
func (s *Server) proxyFetch(w http.ResponseWriter, r *http.Request, id string) (*fetch.Fetch, bool) {
	f, err := s.proxy.mgr.Get(id)
	switch {
	case errors.Is(err, fetch.ErrNotFound) || err == nil && f.Key != "":
		writeProxyError(w, r, http.StatusNotFound, "STREAM_NOT_FOUND", "no such proxy stream")
		return nil, false
	case err != nil:
		s.log.Error("proxy: reading a fetch record failed", "id", id, "err", err)
		writeProxyError(w, r, http.StatusBadGateway, "STORAGE_ERROR", "failed to read the stream's record")
		return nil, false
	}
	return f, true
}

// proxyRead serves GET (section 4.2): pre-signed URL, or service
// authentication as the fallback.
func (s *Server) proxyRead(w http.ResponseWriter, r *http.Request, id string, op *string) {
	p := s.proxy
	fail := p.sign.presignedAuth(id, r.URL.RawQuery, p.now())
	if fail != nil {
		secret, has := presentedSecret(r.URL.RawQuery, r.Header.Get("Authorization"))
		switch {
		case has && p.sign.secretOK(secret):
			fail = nil
		case has && fail == errMissingSignature:
			fail = errInvalidSecret
		}
	}
	if fail != nil {
		writeAuthFailure(w, r, fail)
		return
	}
	f, ok := s.proxyFetch(w, r, id)
	if !ok {
		return
	}
	live, _ := queryParam(r.URL.RawQuery, "live")
	pw := &proxyWriter{ResponseWriter: w, s: s, f: f, sse: live == "sse", renew: p.mgr.Renewer(id)}
	defer pw.finish(r)
	release, ok := s.admitLive(pw, r, live, op)
	if !ok {
		return
	}
	defer release()
	s.handleRead(pw, r, f.Body, live, op)
}

// proxyHead serves HEAD (section 4.4): service authentication only.
func (s *Server) proxyHead(w http.ResponseWriter, r *http.Request, id string) {
	if f := s.proxy.sign.serviceAuth(r.URL.RawQuery, r.Header.Get("Authorization")); f != nil {
		writeAuthFailure(w, r, f)
		return
	}
	f, ok := s.proxyFetch(w, r, id)
	if !ok {
		return
	}
	pw := &proxyWriter{ResponseWriter: w, s: s, f: f}
	defer pw.finish(r)
	s.handleHead(pw, r, f.Body)
}

// abortWait bounds how long an abort or delete waits for the fetch to
// store what it received and close its stream.
const abortWait = 30 * time.Second

// proxyAbort serves PATCH ?action=abort (section 4.3): pre-signed URL
// only, never service authentication. Idempotent.
func (s *Server) proxyAbort(w http.ResponseWriter, r *http.Request, id string) {
	p := s.proxy
	if f := p.sign.presignedAuth(id, r.URL.RawQuery, p.now()); f != nil {
		writeAuthFailure(w, r, f)
		return
	}
	if action, n := queryParam(r.URL.RawQuery, "action"); n != 1 || action != "abort" {
		writeProxyError(w, r, http.StatusBadRequest, "INVALID_ACTION", "the only action is action=abort")
		return
	}
	if _, ok := s.proxyFetch(w, r, id); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), abortWait)
	defer cancel()
	switch err := p.mgr.Abort(ctx, id); {
	case err == nil:
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, fetch.ErrNotFound):
		writeProxyError(w, r, http.StatusNotFound, "STREAM_NOT_FOUND", "no such proxy stream")
	default:
		writeProxyError(w, r, http.StatusServiceUnavailable, "UNAVAILABLE", "the abort did not complete: "+errText(err))
	}
}

// proxyDelete serves DELETE (section 4.5): service authentication only;
// aborts a running fetch, deletes its streams; 204 for unknown ids too.
func (s *Server) proxyDelete(w http.ResponseWriter, r *http.Request, id string) {
	p := s.proxy
	if f := p.sign.serviceAuth(r.URL.RawQuery, r.Header.Get("Authorization")); f != nil {
		writeAuthFailure(w, r, f)
		return
	}
	f, err := p.mgr.Get(id)
	if errors.Is(err, fetch.ErrNotFound) || err == nil && f.Key != "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), abortWait)
	defer cancel()
	if err == nil {
		err = p.mgr.Delete(ctx, id)
	}
	switch {
	case err == nil || errors.Is(err, fetch.ErrNotFound):
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		writeProxyError(w, r, http.StatusServiceUnavailable, "UNAVAILABLE", "the delete did not complete: "+errText(err))
	default:
		s.log.Error("proxy: delete failed", "id", id, "err", err)
		writeProxyError(w, r, http.StatusBadGateway, "STORAGE_ERROR", "failed to delete the stream")
	}
}

// proxyWriter wraps the read path's ResponseWriter for a proxy stream:
// on success it adds Upstream-Content-Type and Upstream-Outcome, presents
// the stream as application/octet-stream (SSE responses stay
// text/event-stream) and makes cacheable responses private (they are
// authenticated); an error (status >= 400) is held back and sent by
// finish in the JSON envelope, with the same status. A read renews the
// fetch's record as it writes (a response may take longer than the TTL).
type proxyWriter struct {
	http.ResponseWriter
	s      *Server
	f      *fetch.Fetch
	sse    bool
	wrote  bool
	status int    // an error status held back, or 0
	msg    []byte // its plain-text message
	gone   bool   // deleted under the reader: the body written is dropped
	renew  func() // fetch.Manager.Renewer, for reads; nil for HEAD
}

func (w *proxyWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	if code >= 400 {
		w.status = code
		return
	}
	h := w.Header()
	if !w.sse {
		h.Set("Content-Type", proxyStreamType)
	}
	privateCache(h)
	if ct := w.f.ContentType(); ct != "" {
		h.Set(hUpstreamContentType, ct)
	}
	out := w.f.Outcome
	if out == fetch.Running && h.Get(hStreamClosed) == "true" {
		// It ended since it was looked up; the end record is written
		// before the stream is closed.
		if hook := w.s.proxyClosedSeen; hook != nil {
			hook(w.f.ID)
		}
		f, err := w.s.proxy.mgr.Get(w.f.ID)
		switch {
		case errors.Is(err, fetch.ErrNotFound):
			// Deleted under this reader (a delete ends the fetch, closing
			// its stream, then removes its record): the stream is gone.
			w.status, w.msg, w.gone = http.StatusNotFound, []byte("the stream was deleted"), true
			return
		case err != nil:
			w.s.log.Error("proxy: the record of a closed stream is unreadable", "id", w.f.ID, "err", err)
		case f.Outcome == fetch.Running:
			w.s.log.Error("proxy: a closed stream's record has no end", "id", w.f.ID)
		default:
			out = f.Outcome
		}
	}
	h.Set(hUpstreamOutcome, outcomeName(out))
	w.ResponseWriter.WriteHeader(code)
}

func (w *proxyWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.gone {
		return len(b), nil
	}
	if w.status != 0 {
		if room := maxMessage - len(w.msg); room > 0 {
			w.msg = append(w.msg, b[:min(len(b), room)]...)
		}
		return len(b), nil
	}
	if w.renew != nil {
		w.renew()
	}
	return w.ResponseWriter.Write(b)
}

func (w *proxyWriter) Flush() {
	if w.status != 0 {
		return
	}
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
		if w.status != 0 {
			return // it turned into an error (deleted meanwhile)
		}
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (SSE sets
// write deadlines through it).
func (w *proxyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish sends a held-back error in the JSON envelope.
func (w *proxyWriter) finish(r *http.Request) {
	if w.status == 0 {
		return
	}
	msg := strings.TrimSpace(string(w.msg))
	if msg == "" {
		msg = http.StatusText(w.status)
	}
	writeProxyError(w.ResponseWriter, r, w.status, readErrorCode(w.status), msg)
}

// readErrorCode names the read path's errors, which section 11 does not
// cover except for a missing stream.
func readErrorCode(status int) string {
	switch {
	case status == http.StatusNotFound || status == http.StatusGone:
		return "STREAM_NOT_FOUND"
	case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
		return "UNAVAILABLE"
	case status < 500:
		return "INVALID_REQUEST"
	}
	return "STORAGE_ERROR"
}

// outcomeName is the Upstream-Outcome value of a fetch outcome.
func outcomeName(o fetch.Outcome) string {
	if o == fetch.Running {
		return "running"
	}
	return string(o)
}
