// Package server puts the Durable Streams HTTP protocol on top of the
// engine: routing, headers, status codes, long-poll, SSE, caching, CORS,
// compression, limits, health and metrics. It knows HTTP and nothing about
// files.
package server

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"
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
	// PrivateCache makes cacheable responses "private" instead of "public".
	PrivateCache bool
	// CompressMinBytes is the smallest read response that is compressed
	// when the client accepts gzip or zstd. Default 1 KiB; negative disables.
	CompressMinBytes int64
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
	if c.MaxPathBytes < 0 || c.RateBurst < 0 || c.RateLimitClients < 0 {
		errs = append(errs, errors.New("path, burst and client limits must not be negative"))
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		errs = append(errs, errors.New("the rate limit must be a finite number >= 0"))
	}
	if strings.Contains(c.Prefix, "__ds") {
		errs = append(errs, errors.New("the stream prefix must not contain the reserved __ds segment"))
	}
	return errors.Join(errs...)
}
