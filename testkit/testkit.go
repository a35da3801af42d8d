// Package testkit holds helpers that tests of several packages share: a
// DNS server that answers every name with one address (for checks made
// after name resolution, such as the SSRF rules of durable fetch and
// webhooks), a log buffer safe for concurrent writes, and a clock that
// only the test moves. Tests only.
package testkit

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"golang.org/x/net/dns/dnsmessage"
)

// FakeDNS serves DNS on a local UDP port: an A query for any name is
// answered with ip, any other query with no answer. It returns the port's
// address (for a net.Resolver's Dial) and a count of the queries answered.
// It stops when the test ends.
func FakeDNS(t testing.TB, ip [4]byte) (addr string, queries *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	queries = new(atomic.Int64)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, ok := answer(buf[:n], ip); ok {
				queries.Add(1)
				pc.WriteTo(resp, from)
			}
		}
	}()
	return pc.LocalAddr().String(), queries
}

// answer builds the response to a one-question query.
func answer(query []byte, ip [4]byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true})
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	if q.Type == dnsmessage.TypeA {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60}
		if b.AResource(rh, dnsmessage.AResource{A: ip}) != nil {
			return nil, false
		}
	}
	resp, err := b.Finish()
	return resp, err == nil
}

// SyncBuffer is a log destination that tests read while the code under
// test writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Clock is a clock that only Advance moves (engine.Options.Clock takes
// its Now), starting at the time it was made.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock at the current time.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// ClockEngine is an in-memory engine on a Clock (for TTLs): closed when the
// test ends.
func ClockEngine(t testing.TB) (*engine.Engine, *Clock) {
	t.Helper()
	clock := NewClock()
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng, clock
}
