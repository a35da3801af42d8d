package server

// The durablefetch front door: the HTTP API of durablefetch
// (github.com/remorses/durablefetch), served at the root of its own origin
// so that the real `durablefetch` npm client (DurableFetchClient 0.1.0)
// works against it with `durablefetchHost` set to this listener.
//
//	ANY  /{host[:port]}/{path}?{query}   fetch, join or replay the upstream URL
//	POST /in-progress {"url": U}         {"inProgress","activeConnections","chunksStored","completed","outcome","bytesStored"}
//	POST /delete      {"url": U}         {"success","message"}; stops a running fetch
//	OPTIONS *                            CORS preflight (204)
//
// The key of a fetch is its upstream URL: the scheme the request arrived
// with (https over TLS, else http; X-Forwarded-Proto instead only when
// DurableFetchConfig.TrustForwardedProto says the proxy in front is
// trusted), "://", the first path segment as the host (lower-cased,
// percent-decoded, a default port dropped), and the rest of the path and
// the query exactly as sent. POST /in-progress and /delete name the same
// key by the upstream URL itself.
//
// The first request for a key starts the upstream request with its method,
// body and end-to-end headers (package fetch strips hop-by-hop headers and
// never stores the request's credentials); every request for the key,
// that one included, gets the upstream's status, the stored response
// headers and a body that replays what is stored and then follows the live
// tail until the upstream ends. What a client sees when it ends:
//
//   - complete: the body ends normally (a response that was complete
//     before it began carries Content-Length);
//   - anything else (the server restarted or stopped mid-fetch, the fetch
//     was deleted, the upstream failed or went quiet for the idle timeout,
//     the response outgrew the largest stored response): everything stored
//     is sent, then the response is cut: HTTP/1.1 without the terminating
//     chunk, HTTP/2 with a stream reset. Clients see a network error, never
//     a complete body. /in-progress then says inProgress false, completed
//     false, and its outcome field says why.
//
// With access control on (DurableFetchConfig.Auth), every request needs a
// token granting "fetch" on the upstream host[:port]/path, sent in the
// Durable-Fetch-Token header (Authorization goes upstream); the npm
// client's fetch(url, {headers}) can send it, its isInProgress and delete
// cannot (they send no headers), so with access control on they answer 401.
//
// Beyond durablefetch: every response names its fetch (Durable-Fetch-Id)
// and the byte offset its body starts at (Durable-Fetch-Offset); a request
// with Durable-Fetch-Offset: N resumes the body at byte N instead of
// replaying from 0 (N beyond what is stored: 416).

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/fetch"
)

// DurableFetchConfig configures the durablefetch front door. Zero fields
// take the defaults named.
type DurableFetchConfig struct {
	// TrustForwardedProto takes the upstream scheme from X-Forwarded-Proto
	// (http or https) when present: set it only behind a TLS-terminating
	// reverse proxy that sets that header itself.
	TrustForwardedProto bool
	// MaxRequestBodyBytes bounds the body of a request that starts a fetch
	// (413 beyond). Default 10 MiB.
	MaxRequestBodyBytes int64
	// BodyReadTimeout bounds reading that body (408). Default 30 s; -1: none.
	BodyReadTimeout time.Duration
	// WriteTimeout bounds each write of a response body to a client that
	// stopped reading. Default 60 s; -1: none.
	WriteTimeout time.Duration
	// MaxReaders bounds the responses streaming at once (503 beyond).
	// Default 10000; negative: no cap.
	MaxReaders int
	// ReadChunkBytes is the most stored bytes one write sends. Default 1 MiB.
	ReadChunkBytes int64
	// Auth, when it verifies tokens, requires a token granting "fetch" on
	// the upstream host[:port]/path, in the Durable-Fetch-Token header
	// (Authorization belongs to the upstream), for fetches, /in-progress
	// and /delete.
	Auth   *auth.Authenticator
	Logger *slog.Logger
}

func (c DurableFetchConfig) withDefaults() DurableFetchConfig {
	if c.MaxRequestBodyBytes <= 0 {
		c.MaxRequestBodyBytes = 10 << 20
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.MaxReaders == 0 {
		c.MaxReaders = 10000
	}
	if c.ReadChunkBytes <= 0 {
		c.ReadChunkBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Header names of the durablefetch front door.
const (
	// HeaderDurableFetchID names the fetch a response belongs to.
	HeaderDurableFetchID = "Durable-Fetch-Id"
	// HeaderDurableFetchOffset, on a request, is the byte offset to resume
	// the body at; on a response, the offset its body starts at.
	HeaderDurableFetchOffset = "Durable-Fetch-Offset"
	// HeaderDurableFetchToken carries the caller's bearer token when
	// access control is on; it never goes upstream.
	HeaderDurableFetchToken = "Durable-Fetch-Token"
)

// DurableFetch serves the durablefetch API over a fetch.Manager.
type DurableFetch struct {
	mgr     *fetch.Manager
	eng     *engine.Engine
	cfg     DurableFetchConfig
	log     *slog.Logger
	readers atomic.Int64
	life    context.Context // ended by Shutdown
	endLife context.CancelFunc
}

// NewDurableFetch returns the durablefetch front door over mgr, whose
// streams live in eng.
func NewDurableFetch(mgr *fetch.Manager, eng *engine.Engine, cfg DurableFetchConfig) *DurableFetch {
	cfg = cfg.withDefaults()
	life, end := context.WithCancel(context.Background())
	return &DurableFetch{mgr: mgr, eng: eng, cfg: cfg, log: cfg.Logger, life: life, endLife: end}
}

// Shutdown ends the responses following a live fetch (cut, as the fetch
// is not complete for them) so that http.Server.Shutdown can finish. It
// neither stops the fetches (fetch.Manager.Close does) nor the engine.
func (d *DurableFetch) Shutdown() { d.endLife() }

// setDurableFetchCORS sets durablefetch's CORS headers (its worker's
// getCorsHeaders): any origin, every method, every header allowed and
// exposed. With the "*" origin browsers send no credentials.
func setDurableFetchCORS(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS, HEAD, PATCH")
	h.Set("Access-Control-Allow-Headers", "*")
	h.Set("Access-Control-Expose-Headers", "*")
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Max-Age", "86400")
}

// ServeHTTP routes a request.
func (d *DurableFetch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	handlerStarted(r)
	h := w.Header()
	setDurableFetchCORS(h)
	h.Set("X-Content-Type-Options", "nosniff")
	if mayBeSmuggled(r) {
		h.Set("Connection", "close")
	}
	if !expectOK(r) {
		dfError(w, r, http.StatusExpectationFailed, msgExpect)
		return
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	target := requestTarget(r)
	if r.Method == http.MethodPost {
		switch target {
		case "/in-progress":
			d.handleInProgress(w, r)
			return
		case "/delete":
			d.handleDelete(w, r)
			return
		}
	}
	d.handleFetch(w, r, target)
}

// requestTarget is the request's path and query exactly as sent.
func requestTarget(r *http.Request) string {
	if t := r.RequestURI; strings.HasPrefix(t, "/") {
		return t
	}
	// Absolute form (a request through a forward proxy) or none (a test
	// handler called directly): the URL as parsed, escaping as sent.
	t := r.URL.EscapedPath()
	if r.URL.ForceQuery || r.URL.RawQuery != "" {
		t += "?" + r.URL.RawQuery
	}
	return t
}

// scheme is the scheme the request arrived with.
func (d *DurableFetch) scheme(r *http.Request) string {
	if d.cfg.TrustForwardedProto {
		if v := r.Header.Get("X-Forwarded-Proto"); v != "" {
			v, _, _ = strings.Cut(v, ",")
			switch p := strings.ToLower(strings.TrimSpace(v)); p {
			case "http", "https":
				return p
			}
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

var errNoHost = errors.New("missing upstream host: the path must start with /{host[:port]}/")

// fetchKey builds the key (and upstream URL) of a fetch from its scheme,
// host and the path and query after the host, as sent.
func fetchKey(scheme, host, rest string) (string, *url.URL, error) {
	h, err := url.PathUnescape(host)
	if err != nil || h == "" {
		return "", nil, errNoHost
	}
	h = strings.ToLower(h)
	if strings.ContainsAny(h, "@/?#\\ ") || hasCTL(h) {
		return "", nil, errors.New("malformed upstream host " + quoteInput(h))
	}
	switch {
	case scheme == "https" && strings.HasSuffix(h, ":443"):
		h = strings.TrimSuffix(h, ":443")
	case scheme == "http" && strings.HasSuffix(h, ":80"):
		h = strings.TrimSuffix(h, ":80")
	}
	if rest == "" || rest[0] != '/' {
		rest = "/" + rest
	}
	key := scheme + "://" + h + rest
	if hasCTL(key) {
		return "", nil, errors.New("malformed upstream URL: control characters")
	}
	u, err := url.Parse(key)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return "", nil, errors.New("malformed upstream URL " + quoteInput(key))
	}
	return key, u, nil
}

func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// keyOfTarget is the key named by a request's target /{host}/{path}?{query}.
func (d *DurableFetch) keyOfTarget(r *http.Request, target string) (string, *url.URL, error) {
	rest := strings.TrimPrefix(target, "/")
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		i = len(rest)
	}
	return fetchKey(d.scheme(r), rest[:i], rest[i:])
}

// keyOfURL is the key of an upstream URL named in /in-progress or /delete.
func keyOfURL(raw string) (string, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "http" && scheme != "https") {
		return "", errors.New("url must be an absolute http or https URL, not " + quoteInput(raw))
	}
	rest, _, _ = strings.Cut(rest, "#")
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		i = len(rest)
	}
	key, _, err := fetchKey(scheme, rest[:i], rest[i:])
	return key, err
}

// dfError answers with a status and a short plain-text message.
func dfError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.WriteString(w, printable(msg, maxMessage)+"\n")
	}
}

// startError answers a failed fetch.Manager.Start.
func (d *DurableFetch) startError(w http.ResponseWriter, r *http.Request, key string, err error) {
	var ue *fetch.UpstreamError
	switch {
	case errors.As(err, &ue):
		// Passed through to this caller, not kept.
		h := w.Header()
		for k, v := range ue.Header {
			h[k] = v
		}
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", strconv.Itoa(len(ue.Body)))
		w.WriteHeader(ue.Status)
		w.Write(ue.Body)
	case errors.Is(err, fetch.ErrNotAllowed):
		dfError(w, r, http.StatusForbidden, err.Error())
	case errors.Is(err, fetch.ErrBadRequest):
		dfError(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, fetch.ErrRedirect):
		// Never followed (the proxy protocol's REDIRECT_NOT_ALLOWED): a
		// gateway error here, as durablefetch has no error envelope.
		dfError(w, r, http.StatusBadGateway, err.Error())
	case errors.Is(err, fetch.ErrTimeout):
		d.log.Info("durablefetch: upstream timeout", "url", fetch.RedactURL(key))
		dfError(w, r, http.StatusGatewayTimeout, err.Error())
	case errors.Is(err, fetch.ErrBusy), errors.Is(err, fetch.ErrClosed):
		dfError(w, r, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, fetch.ErrUpstream):
		d.log.Info("durablefetch: upstream failed", "url", fetch.RedactURL(key), "err", err)
		dfError(w, r, http.StatusBadGateway, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The caller left before the upstream answered; the fetch goes on.
	default:
		d.log.Error("durablefetch: start", "url", fetch.RedactURL(key), "err", err)
		dfError(w, r, http.StatusInternalServerError, "internal error")
	}
}

// handleFetch serves ANY /{host[:port]}/{path}?{query}.
func (d *DurableFetch) handleFetch(w http.ResponseWriter, r *http.Request, target string) {
	key, u, err := d.keyOfTarget(r, target)
	if err == nil {
		err = fetch.CheckURL(u) // one that could mean two things: refused, not guessed at
	}
	if err != nil {
		dfError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if !d.authorize(w, r, u) {
		return
	}
	var from int64
	if v := r.Header.Get(HeaderDurableFetchOffset); v != "" {
		n, ok := parseDecimal(v, maxSafeInt)
		if !ok {
			dfError(w, r, http.StatusBadRequest, HeaderDurableFetchOffset+" must be a decimal byte offset, not "+quoteInput(v))
			return
		}
		from = int64(n)
	}

	f, err := d.mgr.ByKey(key)
	if errors.Is(err, fetch.ErrNotFound) {
		if r.Method == http.MethodHead {
			dfError(w, r, http.StatusNotFound, "nothing is stored for this URL (HEAD never starts a fetch)")
			return
		}
		body, status, msg := d.readRequestBody(w, r)
		if status != 0 {
			dfError(w, r, status, msg)
			return
		}
		f, _, err = d.mgr.Start(r.Context(), fetch.Request{Key: key, URL: u, Method: r.Method,
			Header: upstreamHeader(r.Header), Passthrough: true, Body: body})
		if err != nil {
			d.startError(w, r, key, err)
			return
		}
	} else if err != nil {
		d.log.Error("durablefetch: look up fetch", "url", fetch.RedactURL(key), "err", err)
		dfError(w, r, http.StatusInternalServerError, "internal error")
		return
	}
	d.serveBody(w, r, f, from)
}

// upstreamHeader is the request's header for the upstream call, less the
// header that speaks to this front door. The manager filters it
// (fetch.PassthroughRequestHeader: hop-by-hop and Upstream-* headers go,
// the client's own Authorization goes upstream); it is never stored.
func upstreamHeader(in http.Header) http.Header {
	h := in.Clone()
	h.Del(HeaderDurableFetchOffset)
	h.Del(HeaderDurableFetchToken)
	return h
}

// readRequestBody reads the body of a request that starts a fetch; a
// non-zero status is the error to answer.
func (d *DurableFetch) readRequestBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	if r.ContentLength > d.cfg.MaxRequestBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, "request body larger than " + strconv.FormatInt(d.cfg.MaxRequestBodyBytes, 10) + " bytes"
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, 0, ""
	}
	rc := http.NewResponseController(w)
	if d.cfg.BodyReadTimeout > 0 {
		rc.SetReadDeadline(time.Now().Add(d.cfg.BodyReadTimeout))
		defer rc.SetReadDeadline(time.Time{})
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, d.cfg.MaxRequestBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, http.StatusRequestEntityTooLarge, "request body larger than " + strconv.FormatInt(d.cfg.MaxRequestBodyBytes, 10) + " bytes"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		return nil, http.StatusRequestTimeout, "request body arrived too slowly"
	case err != nil:
		return nil, http.StatusBadRequest, "reading the request body: " + errText(err)
	}
	return body, 0, ""
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// serveBody answers with a fetch's status and stored headers and its body
// from byte from: what is stored, then the live tail until the fetch ends.
//
// The body stream is read with the engine (Read, then Wait for more), each
// piece flushed as it is written. When the stream is closed the fetch has
// ended and its record says how: complete ends the body normally; any
// other outcome cuts the response (panic(http.ErrAbortHandler) after
// flushing what was stored), so that no client mistakes it for a whole
// response. The reads renew only the body, so the record is renewed as
// they go: a response may take longer than the TTL.
func (d *DurableFetch) serveBody(w http.ResponseWriter, r *http.Request, f *fetch.Fetch, from int64) {
	if from > 0 {
		// Nobody can have received a byte not yet stored. (The stream's
		// tail, not f.Bytes: a reader may see an append before the pipe
		// counts it.)
		info, err := d.eng.Head(f.Body)
		if err != nil || from > int64(info.Tail) {
			w.Header().Set(HeaderDurableFetchID, f.ID)
			dfError(w, r, http.StatusRequestedRangeNotSatisfiable, HeaderDurableFetchOffset+" "+strconv.FormatInt(from, 10)+
				" is beyond the "+strconv.FormatUint(uint64(info.Tail), 10)+" bytes stored")
			return
		}
	}
	if d.cfg.MaxReaders > 0 {
		if d.readers.Add(1) > int64(d.cfg.MaxReaders) {
			d.readers.Add(-1)
			dfError(w, r, http.StatusServiceUnavailable, "too many responses streaming")
			return
		}
		defer d.readers.Add(-1)
	}
	detach := d.mgr.Attach(f.ID)
	defer detach()

	h := w.Header()
	for k, v := range f.Header {
		h[k] = v
	}
	h.Del("Content-Length")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(HeaderDurableFetchID, f.ID)
	h.Set(HeaderDurableFetchOffset, strconv.FormatInt(from, 10))
	if f.Outcome == fetch.Complete {
		h.Set("Content-Length", strconv.FormatInt(f.Bytes-from, 10))
	}
	w.WriteHeader(f.Status)
	if r.Method == http.MethodHead {
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(d.life, cancel)()
	rc := http.NewResponseController(w)
	rc.Flush()
	off := engine.Offset(from)
	var streamID uint64
	renew := d.mgr.Renewer(f.ID)
	for {
		c, err := d.eng.Read(f.Body, engine.At(off), engine.ReadOptions{MaxBytes: d.cfg.ReadChunkBytes, Continues: streamID})
		if err != nil {
			if !errors.Is(err, engine.ErrNotFound) && !errors.Is(err, engine.ErrGone) && !errors.Is(err, engine.ErrEngineClosed) {
				// Not a delete or a shutdown racing this response: the
				// stored body cannot be read.
				d.log.Error("durablefetch: reading a stored body failed", "id", f.ID, "offset", off, "err", err)
			}
			d.cut(rc, r, f, err)
		}
		streamID = c.StreamID
		renew()
		if c.Next > c.Start {
			if d.cfg.WriteTimeout > 0 {
				rc.SetWriteDeadline(time.Now().Add(d.cfg.WriteTimeout))
			}
			bufs := c.Buffers()
			_, werr := bufs.WriteTo(w)
			if werr == nil {
				werr = rc.Flush()
			}
			c.Release()
			if werr != nil {
				return // the client is gone
			}
		} else {
			c.Release()
		}
		off = c.Next
		if c.Closed {
			if f.Outcome == fetch.Complete {
				if int64(off) != f.Bytes {
					d.log.Error("durablefetch: a complete fetch's stored body is not as long as its record says",
						"id", f.ID, "stored", off, "recorded", f.Bytes)
					d.cut(rc, r, f, errors.New("stored body length mismatch"))
				}
				return // known before the response began (and its Content-Length sent)
			}
			end, err := d.mgr.Get(f.ID)
			if err == nil && end.Outcome == fetch.Complete {
				return
			}
			if err == nil {
				err = errors.New("fetch ended: " + string(end.Outcome) + " " + end.Error)
			}
			d.cut(rc, r, f, err)
		}
		if c.UpToDate {
			if err := d.eng.Wait(ctx, f.Body, off); err != nil {
				if r.Context().Err() != nil {
					return // the client is gone
				}
				d.cut(rc, r, f, err)
			}
		}
	}
}

// cut ends a response whose fetch did not complete: what was written is
// flushed, and the response is aborted (HTTP/1.1: the connection closes
// without the terminating chunk; HTTP/2: the stream is reset).
func (d *DurableFetch) cut(rc *http.ResponseController, r *http.Request, f *fetch.Fetch, why error) {
	rc.Flush()
	if r.Context().Err() == nil {
		d.log.Debug("durablefetch: response cut", "id", f.ID, "url", fetch.RedactURL(f.URL), "why", why)
	}
	panic(http.ErrAbortHandler)
}

// inProgressStatus is the answer of POST /in-progress.
type inProgressStatus struct {
	InProgress        bool  `json:"inProgress"`
	ActiveConnections int   `json:"activeConnections"`
	ChunksStored      int64 `json:"chunksStored"`
	Completed         bool  `json:"completed"`
	// Beyond durablefetch's fields, present only once there is something
	// to say (so the answer for an unknown or idle URL is durablefetch's
	// own): how the fetch ended (fetch.Outcome: complete, interrupted,
	// aborted, upstream-error, idle-timeout, too-large or storage-error;
	// absent while it runs), so a client whose response was cut can tell
	// why, and how many body bytes are stored.
	Outcome     string `json:"outcome,omitempty"`
	BytesStored int64  `json:"bytesStored,omitempty"`
}

// urlOfBody reads the {"url": U} body of /in-progress and /delete and
// returns the key it names.
func (d *DurableFetch) urlOfBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	const max = 64 << 10
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			dfError(w, r, http.StatusRequestEntityTooLarge, "body larger than 64 KiB")
		} else {
			dfError(w, r, http.StatusBadRequest, "reading the request body: "+errText(err))
		}
		return "", false
	}
	var req struct {
		URL *string `json:"url"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		dfError(w, r, http.StatusBadRequest, `the body must be a JSON object {"url": "<upstream URL>"}: `+errText(err))
		return "", false
	}
	if req.URL == nil || *req.URL == "" {
		dfError(w, r, http.StatusBadRequest, `the body must be a JSON object {"url": "<upstream URL>"}: url is missing`)
		return "", false
	}
	key, err := keyOfURL(*req.URL)
	if err != nil {
		dfError(w, r, http.StatusBadRequest, err.Error())
		return "", false
	}
	u, err := url.Parse(key)
	if err != nil {
		dfError(w, r, http.StatusBadRequest, "malformed upstream URL "+quoteInput(key))
		return "", false
	}
	if !d.authorize(w, r, u) {
		return "", false
	}
	return key, true
}

// authorize checks the caller's grant of "fetch" on the upstream URL
// (host[:port]/path, as sent); false means it was answered.
func (d *DurableFetch) authorize(w http.ResponseWriter, r *http.Request, u *url.URL) bool {
	if !d.cfg.Auth.Enabled() {
		return true
	}
	dec := d.cfg.Auth.CheckToken(r.Header.Get(HeaderDurableFetchToken),
		auth.Need{Op: auth.OpFetch, Path: u.Host + u.EscapedPath()})
	if dec.Allowed() {
		return true
	}
	auth.WriteChallenge(w.Header(), dec)
	dfError(w, r, dec.Status, dec.Reason)
	return false
}

func writeJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// handleInProgress serves POST /in-progress.
func (d *DurableFetch) handleInProgress(w http.ResponseWriter, r *http.Request) {
	key, ok := d.urlOfBody(w, r)
	if !ok {
		return
	}
	var st inProgressStatus
	f, err := d.mgr.ByKey(key)
	switch {
	case err == nil:
		// (Running stays true for a moment after the end is recorded.)
		st = inProgressStatus{InProgress: f.Outcome == fetch.Running && d.mgr.Running(f.ID), ActiveConnections: d.mgr.Readers(f.ID),
			ChunksStored: f.Chunks, Completed: f.Outcome == fetch.Complete, Outcome: string(f.Outcome), BytesStored: f.Bytes}
	case !errors.Is(err, fetch.ErrNotFound):
		d.log.Error("durablefetch: in-progress", "url", fetch.RedactURL(key), "err", err)
		dfError(w, r, http.StatusInternalServerError, "internal error")
		return
	}
	writeJSON(w, st)
}

// deleteResult is the answer of POST /delete.
type deleteResult struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

// handleDelete serves POST /delete: stops the fetch if it runs and deletes
// what it stored. Deleting a URL with nothing stored succeeds too.
func (d *DurableFetch) handleDelete(w http.ResponseWriter, r *http.Request) {
	key, ok := d.urlOfBody(w, r)
	if !ok {
		return
	}
	f, err := d.mgr.ByKey(key)
	if errors.Is(err, fetch.ErrNotFound) {
		writeJSON(w, deleteResult{Success: true, Message: "Nothing stored for this URL"})
		return
	}
	if err == nil {
		err = d.mgr.Delete(r.Context(), f.ID)
	}
	switch {
	case err == nil, errors.Is(err, fetch.ErrNotFound):
		writeJSON(w, deleteResult{Success: true, Message: "Storage cleared"})
	case errors.Is(err, context.Canceled):
	default:
		d.log.Error("durablefetch: delete", "url", fetch.RedactURL(key), "err", err)
		dfError(w, r, http.StatusInternalServerError, "internal error")
	}
}
