package server

// Unit tests of the rate limiter's bookkeeping: eviction, the client cap
// and client identity. The HTTP behaviour is in limits_test.go.

import (
	"net/http"
	"testing"
	"time"
)

func testLimiter(t *testing.T, cfg Config) *rateLimiter {
	t.Helper()
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l := newRateLimiter(cfg)
	l.every = 1 << 62 // no background sweeps: the tests sweep themselves
	return l
}

func TestRateLimiterEvictsIdleClients(t *testing.T) {
	l := testLimiter(t, Config{RateLimit: 10, RateBurst: 5})
	now := time.Unix(1_000_000, 0)
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := l.allow(k, now); !ok {
			t.Fatalf("first request of %s limited", k)
		}
	}
	l.allow("c", now.Add(50*time.Second))
	if n := l.n.Load(); n != 3 {
		t.Fatalf("%d limiters, want 3", n)
	}
	// a and b have been idle for more than idleAfter (1 min); c has not.
	l.sweep(now.Add(90 * time.Second))
	if n, size := l.n.Load(), l.clients.Size(); n != 1 || size != 1 {
		t.Fatalf("after the sweep: count %d, map size %d, want 1", n, size)
	}
	if _, ok := l.clients.Load("c"); !ok {
		t.Fatalf("the recently active client was evicted")
	}
}

func TestRateLimiterKeepsStateUntilRefilled(t *testing.T) {
	// 1 token per 10 minutes, burst 2: refilling takes 20 minutes, so a
	// client idle for 5 minutes must keep its (empty) bucket.
	l := testLimiter(t, Config{RateLimit: 1.0 / 600, RateBurst: 2})
	if l.idleAfter != 20*time.Minute {
		t.Fatalf("idleAfter %v, want 20m", l.idleAfter)
	}
	now := time.Unix(1_000_000, 0)
	l.allow("a", now)
	l.allow("a", now)
	if _, ok := l.allow("a", now); ok {
		t.Fatal("third request within the burst of 2 allowed")
	}
	l.sweep(now.Add(5 * time.Minute))
	d, ok := l.allow("a", now.Add(5*time.Minute))
	if ok || d < 4*time.Minute || d > 5*time.Minute {
		t.Fatalf("after a sweep: allowed %v, wait %v; want limited for ~5m", ok, d)
	}
}

func TestRateLimiterClientCap(t *testing.T) {
	l := testLimiter(t, Config{RateLimit: 0.001, RateBurst: 1, RateLimitClients: 2})
	now := time.Unix(1_000_000, 0)
	for _, k := range []string{"a", "b"} {
		if _, ok := l.allow(k, now); !ok {
			t.Fatalf("client %s limited", k)
		}
	}
	// The table is full: c and d share the overflow limiter (burst 1).
	if _, ok := l.allow("c", now); !ok {
		t.Fatal("first overflow client limited")
	}
	if _, ok := l.allow("d", now); ok {
		t.Fatal("second overflow client not limited by the shared bucket")
	}
	if n := l.clients.Size(); n != 2 {
		t.Fatalf("%d limiters with a cap of 2", n)
	}
	// Known clients keep their own buckets.
	if _, ok := l.allow("a", now); ok {
		t.Fatal("a's bucket was refilled")
	}
	// Once idle clients are swept, new clients get their own limiter.
	later := now.Add(2 * time.Hour)
	l.idleAfter = time.Hour
	l.sweep(later)
	if _, ok := l.allow("e", later); !ok {
		t.Fatal("new client after the sweep limited")
	}
	if _, ok := l.clients.Load("e"); !ok {
		t.Fatal("new client after the sweep has no limiter of its own")
	}
}

func TestRateLimiterBackgroundSweep(t *testing.T) {
	l := testLimiter(t, Config{RateLimit: 100})
	l.every = time.Millisecond
	l.idleAfter = time.Millisecond
	base := time.Now()
	l.allow("old", base)
	deadline := time.Now().Add(5 * time.Second)
	for i := 1; ; i++ {
		time.Sleep(2 * time.Millisecond)
		l.allow("new", base.Add(time.Duration(i)*10*time.Millisecond))
		if _, ok := l.clients.Load("old"); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("requests never triggered a sweep that evicted the idle client")
		}
	}
}

func TestRateLimiterClientKey(t *testing.T) {
	cases := []struct {
		trust  bool
		remote string
		xff    []string
		want   string
	}{
		{false, "192.0.2.1:1234", nil, "192.0.2.1"},
		{false, "192.0.2.1:1234", []string{"10.0.0.1"}, "192.0.2.1"},
		{true, "192.0.2.1:1234", []string{"10.0.0.1"}, "10.0.0.1"},
		{true, "192.0.2.1:1234", []string{"1.1.1.1, 10.0.0.1"}, "10.0.0.1"},
		{true, "192.0.2.1:1234", []string{"1.1.1.1", "10.0.0.2 "}, "10.0.0.2"},
		{true, "192.0.2.1:1234", []string{"10.0.0.1, junk"}, "192.0.2.1"},
		{true, "192.0.2.1:1234", []string{"10.0.0.3:999"}, "10.0.0.3"},
		{true, "192.0.2.1:1234", []string{"[2001:db8::1]:80"}, "2001:db8::/64"},
		{false, "[2001:db8:0:0:abcd::1]:1234", nil, "2001:db8::/64"},
		{false, "[::ffff:192.0.2.9]:1234", nil, "192.0.2.9"},
		{false, "[fe80::1%eth0]:1234", nil, "fe80::/64"},
		{false, "pipe", nil, "pipe"},
	}
	for _, c := range cases {
		l := testLimiter(t, Config{RateLimit: 1, TrustForwardedFor: c.trust})
		r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := l.clientKey(r); got != c.want {
			t.Errorf("trust %v, remote %q, X-Forwarded-For %q: key %q, want %q", c.trust, c.remote, c.xff, got, c.want)
		}
	}
}
