package server

// Limits against hostile or careless clients: stream path rules, a cap on
// live readers, and optional per-client rate limiting. Header read and idle
// timeouts and the header size limit are http.Server settings, made where
// the server is built (cmd/durastream).

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"golang.org/x/time/rate"
)

// streamPath extracts the stream path from the URL: everything after the
// prefix, unescaped once (net/http has done that in r.URL.Path). Rules, in
// the order they are checked:
//
//   - not empty (400) and at most MaxPathBytes bytes unescaped (414);
//   - no escaped slash (%2F) anywhere in the request path (400): segments are
//     split at literal slashes only, so "a%2Fb" can never be one name to a
//     proxy and two segments to the server, or smuggle a "..";
//   - a first segment of __ds, escaped or not (%5F%5Fds), is the reserved
//     control namespace: 404, and nothing is ever created there;
//   - no empty, "." or ".." segments, escaped or not (%2e%2e) (400);
//   - no control characters (0x00-0x1F, 0x7F), raw or escaped (400).
//     (net/http already rejects raw ones in the request line.)
func (s *Server) streamPath(r *http.Request) (string, error) {
	name := strings.TrimPrefix(r.URL.Path, s.cfg.Prefix)
	if err := s.checkPath(name, r.URL.RawPath); err != nil {
		return "", err
	}
	return name, nil
}

// checkPath applies streamPath's rules to name, a path unescaped once,
// whose form as sent is raw. RawPath is that form whenever it differs from
// the default encoding of Path, which it does whenever %2F was sent.
// (EscapedPath would not do: it falls back to re-encoding Path when
// RawPath holds characters that should have been escaped, losing the %2F.)
// Fork sources (Stream-Forked-From) go through it too.
func (s *Server) checkPath(name, raw string) error {
	if name == "" {
		return badRequest("missing stream path")
	}
	if len(name) > s.cfg.MaxPathBytes {
		return &httpError{http.StatusRequestURITooLong,
			fmt.Sprintf("stream path exceeds %d bytes", s.cfg.MaxPathBytes)}
	}
	if containsFold(raw, "%2f") {
		return badRequest("stream path must not contain an escaped slash (%2F)")
	}
	if name == "__ds" || strings.HasPrefix(name, "__ds/") {
		msg := "the __ds namespace is reserved for control APIs"
		if s.cfg.Subscriptions == nil {
			msg += "; subscriptions are not enabled on this server"
		}
		return &httpError{http.StatusNotFound, msg}
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch seg {
		case "":
			// Also keeps "//__ds/..." (which a slash-merging proxy would
			// turn into the reserved namespace) from becoming a stream.
			return badRequest("stream path must not contain empty segments")
		case ".", "..":
			return badRequest("stream path must not contain . or .. segments")
		}
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return badRequest("stream path must not contain control characters")
		}
	}
	return nil
}

// containsFold reports whether s contains the ASCII string sub, ignoring case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// admitLive reserves a live-reader slot for a GET whose live parameter
// (mode) is long-poll or sse. Beyond MaxLiveReaders it answers 503 with
// Retry-After and returns ok false. The slot is held for the whole request
// (a long-poll that finds data at once holds it only briefly); release
// frees it.
func (s *Server) admitLive(w http.ResponseWriter, r *http.Request, mode string, op *string) (release func(), ok bool) {
	if s.cfg.MaxLiveReaders < 0 {
		return func() {}, true
	}
	if mode != "long-poll" && mode != "sse" {
		return func() {}, true // not live, or invalid: handleRead answers
	}
	if n := s.live.Add(1); n > int64(s.cfg.MaxLiveReaders) {
		s.live.Add(-1)
		*op = mode
		s.writeError(w, r, &httpError{http.StatusServiceUnavailable,
			fmt.Sprintf("too many live readers (limit %d); retry shortly", s.cfg.MaxLiveReaders)})
		return nil, false
	}
	return func() { s.live.Add(-1) }, true
}

// rateLimited applies the per-client rate limit. When the client is over
// it, it answers 429 with Retry-After (whole seconds, at least 1) and
// returns true.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request) bool {
	if s.limiter == nil {
		return false
	}
	wait, ok := s.limiter.allow(s.limiter.clientKey(r), time.Now())
	if ok {
		return false
	}
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	s.writeError(w, r, &httpError{http.StatusTooManyRequests,
		fmt.Sprintf("rate limit exceeded (%g requests/s per client); retry after %d s", s.cfg.RateLimit, secs)})
	return true
}

// rateLimiter keeps one token bucket per client. Memory is bounded: a
// limiter idle long enough to have refilled its bucket is equivalent to a
// fresh one and is evicted by a sweep (run at most once a minute, by a
// request, in the background); and at most max limiters exist. When the
// table is full, new clients share one overflow limiter until a sweep
// frees room, so a flood of addresses cannot grow memory or get around
// the limit.
type rateLimiter struct {
	limit     rate.Limit
	burst     int
	max       int64
	trustXFF  bool
	idleAfter time.Duration
	every     time.Duration // sweep interval

	clients   *xsync.MapOf[string, *clientLimiter]
	n         atomic.Int64 // entries in clients
	overflow  *rate.Limiter
	lastSweep atomic.Int64 // unix nanoseconds
	sweeping  atomic.Bool
}

type clientLimiter struct {
	lim  *rate.Limiter
	seen atomic.Int64 // unix nanoseconds of the last request
}

func newRateLimiter(cfg Config) *rateLimiter {
	if cfg.RateLimit <= 0 {
		return nil
	}
	refill := time.Duration(float64(cfg.RateBurst) / cfg.RateLimit * float64(time.Second))
	l := &rateLimiter{
		limit:     rate.Limit(cfg.RateLimit),
		burst:     cfg.RateBurst,
		max:       int64(cfg.RateLimitClients),
		trustXFF:  cfg.TrustForwardedFor,
		idleAfter: max(time.Minute, refill),
		every:     time.Minute,
		clients:   xsync.NewMapOf[string, *clientLimiter](),
		overflow:  rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst),
	}
	l.lastSweep.Store(time.Now().UnixNano())
	return l
}

// allow takes a token for the client; when none is available it returns
// how long until one is, and false.
func (l *rateLimiter) allow(key string, now time.Time) (time.Duration, bool) {
	if last := l.lastSweep.Load(); now.UnixNano()-last >= int64(l.every) && l.sweeping.CompareAndSwap(false, true) {
		l.lastSweep.Store(now.UnixNano())
		go func() {
			defer l.sweeping.Store(false)
			l.sweep(now)
		}()
	}
	lim := l.overflow
	c, ok := l.clients.Load(key)
	if !ok && l.n.Load() < l.max {
		c, _ = l.clients.LoadOrCompute(key, func() *clientLimiter {
			l.n.Add(1)
			return &clientLimiter{lim: rate.NewLimiter(l.limit, l.burst)}
		})
		ok = true
	}
	if ok {
		c.seen.Store(now.UnixNano())
		lim = c.lim
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// sweep evicts limiters idle for idleAfter.
func (l *rateLimiter) sweep(now time.Time) {
	cutoff := now.UnixNano() - int64(l.idleAfter)
	l.clients.Range(func(key string, c *clientLimiter) bool {
		if c.seen.Load() < cutoff {
			l.clients.Compute(key, func(old *clientLimiter, loaded bool) (*clientLimiter, bool) {
				if loaded && old.seen.Load() < cutoff {
					l.n.Add(-1)
					return old, true
				}
				return old, false
			})
		}
		return true
	})
}

// clientKey identifies the client: its IP address (IPv6 by /64, which one
// host or subscriber usually holds whole), from the TCP peer or, with
// TrustForwardedFor, the last X-Forwarded-For entry (the one the trusted
// proxy appended; earlier entries are whatever the client claimed).
func (l *rateLimiter) clientKey(r *http.Request) string {
	if l.trustXFF {
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, ok := parseAddr(strings.TrimSpace(last)); ok {
				return addrKey(a)
			}
		}
	}
	if a, ok := parseAddr(r.RemoteAddr); ok {
		return addrKey(a)
	}
	return r.RemoteAddr
}

// parseAddr parses "ip", "ip:port" or "[ip]:port".
func parseAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func addrKey(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// byteBudget counts the bytes held by requests in flight (request bodies
// being read, inflated and handed to the engine: body.go) against one
// server-wide cap. A charge that does not fit is refused, never waited for.
// When the bytes in flight fall back to zero after a burst that held at
// least burstBytes, onBurstEnd runs (in its own goroutine, at most once per
// burstEvery) so the embedding program can hand the memory back to the OS.
type byteBudget struct {
	max        int64 // <= 0: no cap (still counted)
	used       atomic.Int64
	high       atomic.Int64 // most used since the last time used was zero
	onBurstEnd func()

	burstPending atomic.Bool
	lastBurstEnd atomic.Int64 // unix nanoseconds
}

const (
	burstBytes = 64 << 20
	burstEvery = 10 * time.Second
)

func newByteBudget(limit int64, onBurstEnd func()) *byteBudget {
	return &byteBudget{max: limit, onBurstEnd: onBurstEnd}
}

// tryAcquire charges n bytes if they fit under the cap.
func (b *byteBudget) tryAcquire(n int64) bool {
	if n <= 0 {
		return true
	}
	for {
		u := b.used.Load()
		if b.max > 0 && u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			u += n
			for h := b.high.Load(); u > h && !b.high.CompareAndSwap(h, u); h = b.high.Load() {
			}
			return true
		}
	}
}

// release gives back n bytes charged by tryAcquire.
func (b *byteBudget) release(n int64) {
	if n <= 0 {
		return
	}
	if b.used.Add(-n) != 0 || b.onBurstEnd == nil || b.high.Load() < burstBytes {
		return
	}
	if b.high.Swap(0) >= burstBytes && b.burstPending.CompareAndSwap(false, true) {
		go func() {
			if wait := time.Duration(b.lastBurstEnd.Load() + int64(burstEvery) - time.Now().UnixNano()); wait > 0 {
				time.Sleep(wait)
			}
			b.lastBurstEnd.Store(time.Now().UnixNano())
			b.burstPending.Store(false)
			b.onBurstEnd()
		}()
	}
}

// inUse is the number of bytes charged now.
func (b *byteBudget) inUse() int64 { return b.used.Load() }
