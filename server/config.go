// Package server puts the Durable Streams HTTP protocol on top of the
// engine: routing, headers, status codes, long-poll, SSE, caching, CORS,
// compression, limits, health and metrics. It knows HTTP and nothing about
// files.
package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/durastream/durastream/fetch"
	"github.com/durastream/durastream/subs"
)

// Config configures a Server. Zero fields take the defaults beside them.
type Config struct {
	// Prefix is the URL path under which streams live. Default "/v1/stream/".
	Prefix string
	// LongPollTimeout is how long a long-poll read waits for data. Default 30 s.
	LongPollTimeout time.Duration
	// SSEMaxDuration is how long an SSE connection stays open before the
	// server closes it (the client reconnects; CDNs can collapse). Default 60 s.
	SSEMaxDuration time.Duration
	// MaxAppendBytes bounds a POST/PUT body (decompressed); larger is 413.
	// Default 64 MiB.
	MaxAppendBytes int64
	// MaxReadBytes caps the data in one plain catch-up response; readers
	// then page with Stream-Next-Offset. Default 0: no cap, a catch-up read
	// returns everything up to the tail it found, streamed from the
	// segments (clients that read once, such as @durable-streams/client
	// with live false, see only the first page of a capped read).
	MaxReadBytes int64
	// LiveChunkBytes caps the data in one long-poll response or SSE data
	// event. Default 1 MiB.
	LiveChunkBytes int64
	// CursorInterval and CursorEpoch define Stream-Cursor values (protocol
	// section 10.1). Defaults 20 s and 2024-10-09T00:00:00Z.
	CursorInterval time.Duration
	CursorEpoch    time.Time
	// CatchupMaxAge is how long a shared cache may serve a catch-up read
	// without asking again. 0 (the default): "no-cache": caches keep
	// responses but revalidate each use (a 304 when nothing changed), so a
	// reader never gets data older than the stream, nor a deleted or
	// recreated stream's bytes. 60 s is the protocol's suggestion for CDNs
	// in front of streams whose paths are never reused (section 10.1:
	// max-age, stale-while-revalidate five times that).
	CatchupMaxAge time.Duration
	// PrivateCache makes cacheable responses "private" instead of "public".
	PrivateCache bool
	// CompressMinBytes is the smallest read response that is compressed
	// when the client accepts gzip or zstd. Default 1 KiB; negative disables.
	CompressMinBytes int64
	// Subscriptions serves the reserved subscription APIs under
	// {Prefix}__ds/ (package subs); nil: they answer 404.
	Subscriptions *subs.Manager
	// ExtraMetrics, if set, appends Prometheus text to /metrics (the
	// object-storage tier's counters).
	ExtraMetrics func(w io.Writer)
	// Auth decides who may do what to which stream (package auth); nil or
	// one without token verification: everything is allowed.
	Auth *auth.Authenticator
	// OpenOps serves /health and /metrics without a token even when Auth
	// verifies tokens (otherwise they need a token with "ops": true; see
	// OpsHandler for a separate open listener).
	OpenOps bool
	// Logger receives request errors and lifecycle logs. Default: discard.
	Logger *slog.Logger

	// Limits against hostile clients (limits.go).

	// MaxPathBytes bounds the stream path (after the prefix, unescaped);
	// longer is 414. Default 1024.
	MaxPathBytes int
	// MaxLiveReaders caps long-poll and SSE readers waiting or streaming at
	// once; beyond it a live read is 503 with Retry-After. Default 10000;
	// negative: no cap.
	MaxLiveReaders int
	// RateLimit is the requests per second allowed per client IP (token
	// bucket, golang.org/x/time/rate); excess requests are 429 with
	// Retry-After. 0 (the default) turns rate limiting off.
	RateLimit float64
	// RateBurst is the token bucket size per client. Default: one second's
	// worth of RateLimit, at least 1.
	RateBurst int
	// RateLimitClients bounds how many client limiters are kept; idle ones
	// are evicted, and when the table is still full new clients share one
	// overflow limiter. Default 100000.
	RateLimitClients int
	// TrustForwardedFor identifies clients by the last X-Forwarded-For
	// address (the one the trusted proxy appended) instead of the TCP peer.
	TrustForwardedFor bool
	// BodyReadTimeout and BodyMinRate bound how slowly a request body may
	// arrive (bodytimeout.go): it must be complete BodyReadTimeout after the
	// request's headers, plus one second for every BodyMinRate bytes
	// received; a slower one is answered 408 and logged. Defaults 30 s and
	// 8 KiB/s; a negative BodyReadTimeout turns the limit off, a negative
	// BodyMinRate makes the deadline fixed.
	BodyReadTimeout time.Duration
	BodyMinRate     int64
	// MaxInflightBodyBytes bounds the memory held by request bodies in
	// flight, all requests together: body buffers as they grow and the
	// windows of their gzip/zstd decoders (body.go). A request whose body
	// would take more is refused with 503 and Retry-After. Default
	// 256 MiB, or MinInflightBodyBytes(MaxAppendBytes) (what one largest
	// compressed body needs) when that is more; a positive value below it
	// is invalid; negative: no cap.
	MaxInflightBodyBytes int64
	// AfterBodyBurst, if set, is called (in its own goroutine, at most once
	// per 10 s) when the request bodies in flight fall back to none after
	// holding at least 64 MiB together, e.g. to hand that memory back to
	// the operating system (cmd/durastream calls debug.FreeOSMemory).
	AfterBodyBurst func()

	// Proxy turns on the Durable Streams proxy protocol under /v1/proxy
	// (proxy.go) when Proxy.Manager is set.
	Proxy ProxyConfig
}

// ProxyConfig configures the proxy protocol front door (proxy.go,
// presign.go). Zero fields take the defaults beside them.
type ProxyConfig struct {
	// Manager runs the upstream fetches (shared with the durablefetch
	// front door). nil: the proxy protocol is off (/v1/proxy is then an
	// ordinary 404).
	Manager *fetch.Manager
	// Secret is the service secret (?secret= or Authorization: Bearer)
	// and the root of the key that signs pre-signed URLs (presign.go).
	// Required with Manager; at least 16 bytes.
	Secret string
	// URLTTL is how long a pre-signed URL is valid. Default 24 h.
	URLTTL time.Duration
	// MaxRequestBytes bounds a create request's body, forwarded upstream
	// as sent; larger is 413. Default 10 MiB.
	MaxRequestBytes int64
	// BaseURL is the public URL of /v1/proxy used in Location headers,
	// e.g. https://api.example.com/v1/proxy behind a reverse proxy.
	// Default: the request's scheme and Host + /v1/proxy.
	BaseURL string
	// Now is the clock for URL expiry. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "/v1/stream/"
	}
	if !strings.HasPrefix(c.Prefix, "/") {
		c.Prefix = "/" + c.Prefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.LongPollTimeout == 0 {
		c.LongPollTimeout = 30 * time.Second
	}
	if c.SSEMaxDuration == 0 {
		c.SSEMaxDuration = 60 * time.Second
	}
	if c.MaxAppendBytes == 0 {
		c.MaxAppendBytes = 64 << 20
	}
	if c.LiveChunkBytes == 0 {
		c.LiveChunkBytes = 1 << 20
	}
	if c.CursorInterval == 0 {
		c.CursorInterval = 20 * time.Second
	}
	if c.CursorEpoch.IsZero() {
		c.CursorEpoch = time.Date(2024, 10, 9, 0, 0, 0, 0, time.UTC)
	}
	if c.CompressMinBytes == 0 {
		c.CompressMinBytes = 1 << 10
	}
	if c.MaxPathBytes == 0 {
		c.MaxPathBytes = 1024
	}
	if c.MaxLiveReaders == 0 {
		c.MaxLiveReaders = 10000
	}
	if c.RateBurst == 0 && c.RateLimit > 0 {
		c.RateBurst = max(1, int(math.Ceil(c.RateLimit)))
	}
	if c.RateLimitClients == 0 {
		c.RateLimitClients = 100000
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = 30 * time.Second
	}
	if c.BodyMinRate == 0 {
		c.BodyMinRate = 8 << 10
	}
	if c.MaxInflightBodyBytes == 0 {
		c.MaxInflightBodyBytes = max(256<<20, MinInflightBodyBytes(c.MaxAppendBytes))
	}
	if c.Proxy.URLTTL == 0 {
		c.Proxy.URLTTL = 24 * time.Hour
	}
	if c.Proxy.MaxRequestBytes == 0 {
		c.Proxy.MaxRequestBytes = 10 << 20
	}
	if c.Proxy.Now == nil {
		c.Proxy.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Validate reports invalid settings.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.LongPollTimeout < 0 || c.SSEMaxDuration < 0 || c.CursorInterval < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.MaxAppendBytes < 0 || c.MaxReadBytes < 0 || c.LiveChunkBytes < 0 {
		errs = append(errs, errors.New("byte limits must not be negative"))
	}
	if m := MinInflightBodyBytes(c.MaxAppendBytes); c.MaxInflightBodyBytes > 0 && c.MaxInflightBodyBytes < m {
		errs = append(errs, fmt.Errorf("the in-flight body budget (%d bytes) must hold one largest compressed body: at least %d bytes", c.MaxInflightBodyBytes, m))
	}
	if c.MaxPathBytes < 0 || c.RateBurst < 0 || c.RateLimitClients < 0 {
		errs = append(errs, errors.New("path, burst and client limits must not be negative"))
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		errs = append(errs, errors.New("the rate limit must be a finite number >= 0"))
	}
	if strings.Contains(c.Prefix, "__ds") {
		errs = append(errs, errors.New("the stream prefix must not contain the reserved __ds segment"))
	}
	if p := c.Proxy; p.Manager != nil {
		switch {
		case len(p.Secret) < 16:
			errs = append(errs, errors.New("the proxy protocol needs a secret of at least 16 bytes"))
		case p.URLTTL < 0 || p.MaxRequestBytes < 0:
			errs = append(errs, errors.New("the proxy URL lifetime and request size limit must not be negative"))
		case p.BaseURL != "" && !absoluteHTTPURL(p.BaseURL):
			errs = append(errs, fmt.Errorf("the proxy base URL %q must be an absolute http or https URL", p.BaseURL))
		case c.MaxInflightBodyBytes > 0 && p.MaxRequestBytes > c.MaxInflightBodyBytes:
			errs = append(errs, fmt.Errorf("the proxy request size limit (%d bytes) exceeds the in-flight body budget (%d bytes)",
				p.MaxRequestBytes, c.MaxInflightBodyBytes))
		}
	}
	return errors.Join(errs...)
}
