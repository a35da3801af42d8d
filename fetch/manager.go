package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/google/uuid"
)

// Config configures a Manager. Zero fields take the defaults named.
type Config struct {
	// Allow lists the upstream URLs that may be fetched; nil or empty
	// denies every URL.
	Allow *Allowlist
	// Namespace is the engine path prefix of fetch streams. Default
	// "__ds/fetch" (the stream API refuses __ds paths, so clients cannot
	// write to them).
	Namespace string
	// TTL is the sliding time-to-live of a stored fetch: a lookup (Get,
	// ByKey, a joining Start), a reader of its body that calls Renewer and
	// its upstream still sending renew it. Default 6 h.
	TTL time.Duration
	// MaxResponseBytes cuts a response body (outcome TooLarge). Default 100 MB.
	MaxResponseBytes int64
	// MaxConcurrent bounds the upstream fetches running at once
	// (ErrBusy beyond). Default 256.
	MaxConcurrent int
	// HeaderTimeout bounds the wait for the upstream's response headers
	// (ErrTimeout). Default 60 s.
	HeaderTimeout time.Duration
	// IdleTimeout ends a fetch whose upstream sends nothing for this long
	// (outcome IdleTimeout). Default DefaultIdleTimeout. TTL must be at
	// least twice it: a silent upstream renews nothing.
	IdleTimeout time.Duration
	// BatchBytes bounds one append of body bytes: an append takes what
	// the upstream sent while the previous one was being committed, up to
	// this. Default 64 KiB.
	BatchBytes int
	// ErrorBodyBytes truncates the body of a non-2xx answer passed through
	// to the caller. Default 64 KiB.
	ErrorBodyBytes int64
	// Client makes the upstream requests. Default: NewClient over
	// NewTransport(Allow, HeaderTimeout). A test may pass its own (one
	// that trusts a test CA, say); it must not follow redirects.
	Client *http.Client
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = "__ds/fetch"
	}
	c.Namespace = strings.TrimSuffix(c.Namespace, "/")
	if c.TTL == 0 {
		c.TTL = 6 * time.Hour
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = 100_000_000
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 256
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = 60 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 64 << 10
	}
	if c.ErrorBodyBytes == 0 {
		c.ErrorBodyBytes = 64 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// DefaultIdleTimeout is Config.IdleTimeout's default.
const DefaultIdleTimeout = 10 * time.Minute

// Errors. The front doors map them to status codes.
var (
	ErrNotAllowed = errors.New("upstream URL is not allowed")
	ErrBadRequest = errors.New("bad upstream request")
	ErrRedirect   = errors.New("upstream answered with a redirect, which is never followed")
	ErrTimeout    = errors.New("upstream did not answer with headers in time")
	ErrUpstream   = errors.New("upstream request failed")
	ErrBusy       = errors.New("too many upstream fetches in progress")
	ErrNotFound   = errors.New("no such fetch")
	ErrClosed     = errors.New("fetch manager is closed")
)

// UpstreamError is a non-2xx, non-3xx upstream answer: passed through to
// the caller, not stored.
type UpstreamError struct {
	Status int
	Header http.Header // the stored-header set of the answer
	Body   []byte      // at most ErrorBodyBytes
}

func (e *UpstreamError) Error() string { return fmt.Sprintf("upstream answered %d", e.Status) }

// Request is an upstream request.
type Request struct {
	// Key identifies the fetch for later requests (durablefetch: the
	// upstream URL); requests with the same key join one fetch. Empty: a
	// new fetch every time (the proxy protocol).
	Key    string
	URL    *url.URL
	Method string
	// Header is the request header as the client sent it; the manager
	// maps it for the upstream call (UpstreamRequestHeader: the proxy
	// protocol's Upstream-Authorization becomes Authorization, the client's
	// own Authorization is not forwarded; or PassthroughRequestHeader when
	// Passthrough). Never stored.
	Header      http.Header
	Passthrough bool // durablefetch: the client's Authorization goes upstream
	Body        []byte
}

// Fetch is a stored fetch.
type Fetch struct {
	ID      string
	Key     string
	Body    string // engine path of the response body stream
	Meta    string // engine path of its record
	URL     string
	Method  string
	Status  int
	Header  http.Header // the stored response headers
	Created time.Time
	Outcome Outcome // Running until it ends
	Error   string  // what ended it, for outcomes other than Complete
	Bytes   int64   // stored body bytes (so far, while running)
	Chunks  int64   // appends made (so far)
}

// ContentType is the upstream response's content type, or "".
func (f *Fetch) ContentType() string { return f.Header.Get("Content-Type") }

// Manager runs and tracks fetches.
type Manager struct {
	eng    *engine.Engine
	cfg    Config
	client *http.Client
	log    *slog.Logger
	sem    chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	byKey   map[string]string   // key -> id of its stored fetch
	pending map[string]*pending // key -> its first request, waiting for headers
	running map[string]*run     // id -> a fetch being piped
	readers map[string]int      // id -> readers attached (durablefetch activeConnections)

	// recordDeleted, when set (tests), is called by a delete between
	// deleting a fetch's record and deleting its body.
	recordDeleted func(id string)
}

type pending struct {
	done chan struct{}
	f    *Fetch
	err  error
}

type run struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
	bytes  atomic.Int64
	chunks atomic.Int64
}

// New opens the manager over eng and finishes what a restart interrupted:
// a fetch whose record has no end is marked Interrupted and its body
// stream closed, so no reader waits for it.
func New(eng *engine.Engine, cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	if cfg.TTL < 2*cfg.IdleTimeout {
		return nil, fmt.Errorf("fetch: TTL %v is less than twice the idle timeout %v (a fetch whose upstream is silent renews nothing, and must not expire before it ends)", cfg.TTL, cfg.IdleTimeout)
	}
	m := &Manager{eng: eng, cfg: cfg, log: cfg.Logger, sem: make(chan struct{}, cfg.MaxConcurrent),
		byKey: map[string]string{}, pending: map[string]*pending{}, running: map[string]*run{}, readers: map[string]int{}}
	m.client = cfg.Client
	if m.client == nil {
		m.client = NewClient(NewTransport(cfg.Allow, cfg.HeaderTimeout))
	}
	if err := m.recover(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) bodyPath(id string) string { return m.cfg.Namespace + "/" + id + "/body" }
func (m *Manager) metaPath(id string) string { return m.cfg.Namespace + "/" + id + "/meta" }

// recover scans the stored fetches at startup.
func (m *Manager) recover() error {
	paths, err := m.eng.List(m.cfg.Namespace + "/")
	if err != nil {
		return err
	}
	ctx := context.Background()
	metas := map[string]bool{}
	for _, p := range paths {
		if id, ok := strings.CutSuffix(strings.TrimPrefix(p, m.cfg.Namespace+"/"), "/meta"); ok {
			metas[id] = true
		}
	}
	for _, p := range paths {
		id, ok := strings.CutSuffix(strings.TrimPrefix(p, m.cfg.Namespace+"/"), "/body")
		if ok && !metas[id] {
			// A delete cut short by a crash after the record went.
			m.log.Info("deleting the body of a deleted fetch", "id", id)
			m.deleteStreams(id)
		}
	}
	for _, p := range paths {
		id, ok := strings.CutSuffix(strings.TrimPrefix(p, m.cfg.Namespace+"/"), "/meta")
		if !ok {
			continue
		}
		if _, err := m.eng.Head(m.bodyPath(id)); errors.Is(err, engine.ErrNotFound) {
			// A record without a body (its body was deleted first by an
			// older version, or never created): there is nothing to serve.
			m.log.Warn("fetch record without a body: deleting the fetch", "id", id)
			m.deleteStreams(id)
			continue
		}
		st, end, err := m.readMeta(id)
		if err != nil {
			m.log.Warn("fetch record unreadable: deleting the fetch", "id", id, "err", err)
			m.deleteStreams(id)
			continue
		}
		if end == nil {
			info, herr := m.eng.Head(m.bodyPath(id))
			n := int64(info.Tail)
			if herr != nil {
				n = 0
			}
			m.log.Warn("fetch interrupted by a restart", "id", id, "url", RedactURL(st.URL), "bytes", n)
			if err := m.writeEnd(ctx, id, endRecord{End: Interrupted, Bytes: n, At: time.Now().UTC(),
				Error: "the server stopped while the upstream response was being stored"}); err != nil {
				return fmt.Errorf("fetch: mark %s interrupted: %w", id, err)
			}
		}
		m.closeBody(ctx, id)
		if st.Key != "" {
			m.byKey[st.Key] = id
		}
	}
	return nil
}

// Start starts the upstream request, or joins the fetch already stored or
// starting under r.Key. The upstream call does not depend on ctx: it goes
// on whatever the caller does; ctx only bounds how long the caller waits
// for the response headers. A 2xx answer becomes a stored Fetch (joined:
// false for the request that started it); a 3xx is ErrRedirect; any other
// status is an *UpstreamError, not stored.
func (m *Manager) Start(ctx context.Context, r Request) (f *Fetch, joined bool, err error) {
	if err := m.check(r); err != nil {
		return nil, false, err
	}
	if r.Key != "" {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, false, ErrClosed
		}
		if id, ok := m.byKey[r.Key]; ok {
			m.mu.Unlock()
			if f, err := m.Get(id); err == nil {
				return f, true, nil
			}
			m.mu.Lock()
			if m.byKey[r.Key] == id {
				delete(m.byKey, r.Key) // expired or deleted
			}
		}
		if p, ok := m.pending[r.Key]; ok {
			m.mu.Unlock()
			select {
			case <-p.done:
				return p.f, p.err == nil, p.err
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		p := &pending{done: make(chan struct{})}
		m.pending[r.Key] = p
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.pending, r.Key)
			m.mu.Unlock()
			p.f, p.err = f, err
			close(p.done)
		}()
	}
	return m.start(ctx, r)
}

func (m *Manager) check(r Request) error {
	if r.URL == nil {
		return fmt.Errorf("%w: no upstream URL", ErrBadRequest)
	}
	if err := CheckURL(r.URL); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return fmt.Errorf("%w: method %q (want GET, POST, PUT, PATCH or DELETE)", ErrBadRequest, r.Method)
	}
	// The URL is checked here, before anything is sent; the dialer checks
	// the address actually dialled.
	if m.cfg.Allow == nil || !m.cfg.Allow.Allows(r.URL) {
		return ErrNotAllowed
	}
	return nil
}

// start makes the upstream call and, on a 2xx, stores the fetch and pipes
// its body in the background.
func (m *Manager) start(ctx context.Context, r Request) (*Fetch, bool, error) {
	select {
	case m.sem <- struct{}{}:
	default:
		return nil, false, ErrBusy
	}
	release := func() { <-m.sem }
	runCtx, cancel := context.WithCancelCause(WithURL(context.Background(), r.URL))
	req, err := http.NewRequestWithContext(runCtx, r.Method, r.URL.String(), bytes.NewReader(r.Body))
	if err != nil {
		cancel(nil)
		release()
		return nil, false, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if r.Passthrough {
		req.Header = PassthroughRequestHeader(r.Header)
	} else {
		req.Header = UpstreamRequestHeader(r.Header)
	}
	req.ContentLength = int64(len(r.Body))
	if len(r.Body) == 0 {
		req.Body = http.NoBody
	}

	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	// HeaderTimeout counts from the start (connecting and TLS included,
	// which the transport's ResponseHeaderTimeout does not).
	headerTimer := time.AfterFunc(m.cfg.HeaderTimeout, func() { cancel(errHeaderTimeout) })
	go func() {
		resp, err := m.client.Do(req)
		headerTimer.Stop()
		got <- answer{resp, err}
	}()
	var a answer
	select {
	case a = <-got:
	case <-ctx.Done():
		// The caller left before the headers came: the fetch goes on for
		// whoever asks next (its key), or is dropped (no key: nobody can
		// find it).
		if r.Key == "" {
			cancel(ctx.Err())
			release()
			return nil, false, ctx.Err()
		}
		a = <-got
	}
	if a.err != nil {
		cause := context.Cause(runCtx)
		cancel(nil)
		release()
		if errors.Is(cause, errHeaderTimeout) {
			return nil, false, ErrTimeout
		}
		logErr := a.err
		var ue *url.Error
		if errors.As(logErr, &ue) {
			logErr = ue.Err // its message repeats the whole URL
		}
		m.log.Info("upstream request failed", "url", RedactURL(r.URL.String()), "err", logErr)
		return nil, false, upstreamErr(a.err)
	}
	resp := a.resp
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.Body.Close()
		cancel(nil)
		release()
		return nil, false, ErrRedirect
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, m.cfg.ErrorBodyBytes))
		resp.Body.Close()
		cancel(nil)
		release()
		return nil, false, &UpstreamError{Status: resp.StatusCode, Header: StoredResponseHeader(resp.Header), Body: body}
	}

	if !PlainBody(resp.Header) {
		// Asked for identity; a body stored encoded would be replayed
		// without its Content-Encoding.
		resp.Body.Close()
		cancel(nil)
		release()
		return nil, false, fmt.Errorf("%w: the upstream answered with Content-Encoding %q", ErrUpstream, resp.Header.Get("Content-Encoding"))
	}
	f, err := m.store(r, resp)
	if err != nil {
		resp.Body.Close()
		cancel(nil)
		release()
		return nil, false, err
	}
	ru := &run{cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		cancel(errShutdown)
	} else {
		m.running[f.ID] = ru
		if r.Key != "" {
			m.byKey[r.Key] = f.ID
		}
		m.mu.Unlock()
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer release()
		m.pipe(runCtx, f, resp.Body, ru)
	}()
	return f, false, nil
}

// upstreamErr classifies a failed upstream call. Its message is for the
// client: a refused address says why but not which address a name resolved
// to, and other failures say what failed, not the dialled address.
func upstreamErr(err error) error {
	var ue *url.Error
	var ae *AddressError
	switch {
	case errors.As(err, &ae):
		return fmt.Errorf("%w: the upstream address is %s", ErrNotAllowed, ae.Reason)
	case errors.Is(err, ErrAddressRefused):
		return ErrNotAllowed
	case errors.As(err, &ue) && ue.Timeout():
		return ErrTimeout
	}
	return ErrUpstream
}

// RedactURL is an upstream URL as logged: scheme, host and path, without
// the query (a durablefetch key's query is often the unguessable part that
// acts as a bearer secret), userinfo or fragment; "" if it does not parse.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// store creates a fetch's streams for a 2xx answer. Its id is known to
// nobody until it returns, so no lookup sees a record before its body
// exists (Get would take it for one whose body is gone).
func (m *Manager) store(r Request, resp *http.Response) (*Fetch, error) {
	id := uuid.NewString()
	f := &Fetch{ID: id, Key: r.Key, Body: m.bodyPath(id), Meta: m.metaPath(id), URL: r.URL.String(),
		Method: r.Method, Status: resp.StatusCode, Header: StoredResponseHeader(resp.Header), Created: time.Now().UTC()}
	rec, err := json.Marshal(startRecord{Key: f.Key, URL: f.URL, Method: f.Method, Status: f.Status, Header: f.Header, Created: f.Created})
	if err != nil {
		return nil, err
	}
	ttl := uint64(m.cfg.TTL / time.Second)
	ctx := context.Background()
	if _, _, err := m.eng.Create(ctx, f.Meta, engine.CreateOptions{ContentType: "application/json", TTL: ttl, HasTTL: true, Data: rec}); err != nil {
		return nil, fmt.Errorf("store fetch record: %w", err)
	}
	if _, _, err := m.eng.Create(ctx, f.Body, engine.CreateOptions{ContentType: bodyContentType(f.ContentType()), TTL: ttl, HasTTL: true}); err != nil {
		m.eng.Delete(ctx, f.Meta)
		return nil, fmt.Errorf("store fetch body: %w", err)
	}
	return f, nil
}

// bodyContentType is the body stream's content type: the upstream's, but
// never application/json, which would make the engine frame (and refuse)
// arbitrary byte chunks of a JSON document as messages.
func bodyContentType(ct string) string {
	if ct == "" || strings.EqualFold(engine.MediaType(ct), "application/json") {
		return "application/octet-stream"
	}
	return ct
}

var (
	errShutdown = errors.New("the server is shutting down")
	errAbort    = errors.New("aborted")
	errIdle     = errors.New("the upstream sent nothing for the idle timeout")
)

// readMeta reads a fetch's record.
func (m *Manager) readMeta(id string) (startRecord, *endRecord, error) {
	c, err := m.eng.Read(m.metaPath(id), engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{MaxBytes: 1 << 20})
	if err != nil {
		return startRecord{}, nil, err
	}
	defer c.Release()
	return parseMeta(c.Bytes())
}

// writeEnd appends the end record and closes the meta stream.
func (m *Manager) writeEnd(ctx context.Context, id string, end endRecord) error {
	b, err := json.Marshal(end)
	if err != nil {
		return err
	}
	_, err = m.eng.Append(ctx, m.metaPath(id), b, engine.AppendOptions{Close: true})
	var ce *engine.ClosedError
	if errors.As(err, &ce) {
		return nil // ended already
	}
	return err
}

// closeBody closes a fetch's body stream (if it is not already).
func (m *Manager) closeBody(ctx context.Context, id string) {
	_, err := m.eng.Append(ctx, m.bodyPath(id), nil, engine.AppendOptions{Close: true})
	var ce *engine.ClosedError
	if err != nil && !errors.As(err, &ce) && !errors.Is(err, engine.ErrNotFound) {
		m.log.Warn("close fetch body", "id", id, "err", err)
	}
}

// renew renews a fetch's record and body together: an engine read counts
// as an access for a stream's sliding TTL, and one of no bytes is enough.
// A stream that is gone is left to the next Get.
func (m *Manager) renew(id string) {
	for _, p := range []string{m.metaPath(id), m.bodyPath(id)} {
		m.touch(p)
	}
}

// touch renews one stream.
func (m *Manager) touch(path string) error {
	c, err := m.eng.Read(path, engine.ReadFrom{Kind: engine.FromNow}, engine.ReadOptions{})
	if err != nil {
		return err
	}
	c.Release()
	return nil
}

// Renewer returns a func that renews a fetch's record and body together,
// at most once every TTL/8 by the engine's clock. A goroutine that writes
// or reads the body for long calls it as it goes: an append or a read
// renews only the body, and the record must not expire under it. Not for
// concurrent use.
func (m *Manager) Renewer(id string) func() {
	every := m.cfg.TTL / 8
	next := m.eng.Now().Add(every)
	return func() {
		if now := m.eng.Now(); !now.Before(next) {
			next = now.Add(every)
			m.renew(id)
		}
	}
}

func isGone(err error) bool {
	return errors.Is(err, engine.ErrNotFound) || errors.Is(err, engine.ErrGone)
}

// Get returns a stored fetch by id and renews its record and body.
func (m *Manager) Get(id string) (*Fetch, error) {
	if _, err := uuid.Parse(id); err != nil || strings.ToLower(id) != id {
		return nil, ErrNotFound
	}
	st, end, err := m.readMeta(id) // renews the record
	if isGone(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := m.touch(m.bodyPath(id)); isGone(err) {
		// A record whose body is gone (deleted, or expired under a version
		// that renewed the record alone): nothing to serve, and its key is
		// free for a new upstream call.
		if err := m.eng.Delete(context.Background(), m.metaPath(id)); err != nil && !isGone(err) {
			m.log.Warn("delete the record of a fetch without a body", "id", id, "err", err)
		}
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	f := &Fetch{ID: id, Key: st.Key, Body: m.bodyPath(id), Meta: m.metaPath(id), URL: st.URL, Method: st.Method,
		Status: st.Status, Header: st.Header, Created: st.Created}
	if end != nil {
		f.Outcome, f.Error, f.Bytes, f.Chunks = end.End, end.Error, end.Bytes, end.Chunks
	}
	m.mu.Lock()
	ru := m.running[id]
	m.mu.Unlock()
	if ru != nil {
		f.Bytes, f.Chunks = ru.bytes.Load(), ru.chunks.Load()
	} else if end == nil {
		// Between the body's last append and its end record: report the tail.
		if info, err := m.eng.Head(f.Body); err == nil {
			f.Bytes = int64(info.Tail)
		}
	}
	return f, nil
}

// ByKey returns the fetch stored under key.
func (m *Manager) ByKey(key string) (*Fetch, error) {
	m.mu.Lock()
	id, ok := m.byKey[key]
	m.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	f, err := m.Get(id)
	if errors.Is(err, ErrNotFound) {
		m.mu.Lock()
		if m.byKey[key] == id {
			delete(m.byKey, key)
		}
		m.mu.Unlock()
	}
	return f, err
}

// Running reports whether the fetch is still being piped.
func (m *Manager) Running(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running[id] != nil
}

// Attach counts a reader of a fetch until the returned func is called.
func (m *Manager) Attach(id string) func() {
	m.mu.Lock()
	m.readers[id]++
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		if m.readers[id]--; m.readers[id] <= 0 {
			delete(m.readers, id)
		}
		m.mu.Unlock()
	}
}

// Readers is how many readers are attached to a fetch.
func (m *Manager) Readers(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.readers[id]
}

// Abort stops a running fetch and waits until what it received is stored
// and the stream closed (outcome Aborted). Aborting a fetch that has ended
// is a no-op; an unknown id is ErrNotFound.
func (m *Manager) Abort(ctx context.Context, id string) error {
	m.mu.Lock()
	ru := m.running[id]
	m.mu.Unlock()
	if ru == nil {
		if _, err := m.Get(id); err != nil {
			return err
		}
		return nil
	}
	ru.cancel(errAbort)
	select {
	case <-ru.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Delete aborts a fetch if it runs and deletes what it stored. An unknown
// id is ErrNotFound.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if err := m.Abort(ctx, id); err != nil {
		return err
	}
	m.deleteStreams(id)
	m.mu.Lock()
	for k, v := range m.byKey {
		if v == id {
			delete(m.byKey, k)
		}
	}
	m.mu.Unlock()
	return nil
}

// deleteStreams deletes a fetch: its record first, so that a crash
// between the two deletes leaves a body without a record (swept by
// recover), never a record whose body is gone (a reader would be promised
// bytes that are not there).
func (m *Manager) deleteStreams(id string) {
	ctx := context.Background()
	for i, p := range []string{m.metaPath(id), m.bodyPath(id)} {
		if err := m.eng.Delete(ctx, p); err != nil && !errors.Is(err, engine.ErrNotFound) {
			m.log.Warn("delete fetch stream", "path", p, "err", err)
		}
		if i == 0 && m.recordDeleted != nil {
			m.recordDeleted(id)
		}
	}
}

// Close stops every running fetch (outcome Interrupted: the server is
// stopping) and waits for their pipes. Call it before closing the engine.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	runs := make([]*run, 0, len(m.running))
	for _, ru := range m.running {
		runs = append(runs, ru)
	}
	m.mu.Unlock()
	for _, ru := range runs {
		ru.cancel(errShutdown)
	}
	m.wg.Wait()
}
