package subs

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/fetch"
	"github.com/durastream/durastream/testkit"
)

func TestLeaseTTLRange(t *testing.T) {
	for _, c := range []struct {
		ms string
		ok bool
	}{
		{"999", false},
		{"1000", true},
		{"600000", true},
		{"600001", false},
		{"-1", false},
		{"18446744074710", false}, // as a Duration: wraps around to about 1 s
		{"9223372036854775807", false},
	} {
		_, err := ParseConfig([]byte(`{"type":"pull-wake","pattern":"a/*","wake_stream":"w","lease_ttl_ms":`+c.ms+`}`), false)
		if (err == nil) != c.ok {
			t.Errorf("lease_ttl_ms %s: %v, want ok %v", c.ms, err, c.ok)
		}
	}
}

// TestBackoffSchedule: 1 s doubling to a 60 s cap, each ±20 %, and the
// jitter spreads.
func TestBackoffSchedule(t *testing.T) {
	for n := 1; n <= 12; n++ {
		base := min(time.Second<<(n-1), time.Minute)
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 2000 {
			d := backoff(n)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < base*8/10 || hi > base*12/10 {
			t.Errorf("attempt %d: waits %v..%v, want %v ±20%%", n, lo, hi, base)
		}
		if hi-lo < base/4 { // of a possible 0.4 * base
			t.Errorf("attempt %d: waits %v..%v: no jitter", n, lo, hi)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestWebhookOneRequestInFlight: with a lease (1 s) shorter than the
// delivery timeout (10 s) and a receiver that never answers, a POST ends
// with its wake's lease, and the next wake's POST never runs beside it.
func TestWebhookOneRequestInFlight(t *testing.T) {
	var cur, peak atomic.Int32
	starts := make(chan time.Time, 16)
	hang := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		starts <- time.Now()
		<-r.Context().Done()
		return nil, r.Context().Err()
	})
	h := newHarnessWith(t, nil, func(o *Options) {
		o.Client = &http.Client{Transport: hang}
		o.DeliveryTimeout = 10 * time.Second
	})
	h.put("s1", `{"type":"webhook","pattern":"events/*","webhook":{"url":"http://127.0.0.1:1/hook"},"lease_ttl_ms":1000}`)
	h.create("events/a", "x")
	var at []time.Time
	for len(at) < 3 {
		select {
		case s := <-starts:
			at = append(at, s)
		case <-time.After(5 * time.Second):
			t.Fatalf("%d POSTs within 5 s", len(at))
		}
	}
	if p := peak.Load(); p != 1 {
		t.Fatalf("%d webhook requests of one subscription in flight at once", p)
	}
	if gap := at[2].Sub(at[1]); gap < 800*time.Millisecond {
		t.Fatalf("a wake's POST %v after the previous one, within its lease", gap)
	}
}

// TestWebhookStaleDeliverySkipped: a delivery that waits for a slot
// (MaxDeliveries) past its wake's lease is not sent when it gets one:
// only the wake that replaced it is.
func TestWebhookStaleDeliverySkipped(t *testing.T) {
	h := newHarnessWith(t, nil, func(o *Options) { o.MaxDeliveries = 1 })
	rc := newReceiver(t) // answers {}: the wake stays until its lease ends
	h.put("s1", `{"type":"webhook","pattern":"events/*","webhook":{"url":"`+rc.srv.URL+`"},"lease_ttl_ms":1000}`)
	h.m.sem <- struct{}{} // the only slot is busy
	h.create("events/a", "x")
	time.Sleep(1500 * time.Millisecond) // generation 1's lease ends; generation 2 waits too
	<-h.m.sem
	d := rc.next(t, 5*time.Second)
	if d.w.Generation != 2 {
		t.Fatalf("delivered generation %d after its lease ended, want only 2", d.w.Generation)
	}
}

// TestWebhookDNSToPrivateAddressRefused: a webhook URL whose host is a name
// passes the URL check, and when the name resolves to a private or the
// metadata address, the delivery is refused at the dial: the subscription
// goes to failed with a retry scheduled.
func TestWebhookDNSToPrivateAddressRefused(t *testing.T) {
	for _, ip := range [][4]byte{{10, 0, 0, 7}, {169, 254, 169, 254}} {
		dns, queries := testkit.FakeDNS(t, ip)
		d := webhookDialer(false)
		d.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "udp4", dns)
		}}
		client := webhookClient(d, 2*time.Second)
		url := "https://hooks.example.test/hook"
		if err := CheckWebhookURL(url, false); err != nil {
			t.Fatalf("URL check: %v", err)
		}
		if _, err := client.Post(url, "application/json", strings.NewReader("{}")); !errors.Is(err, fetch.ErrAddressRefused) {
			t.Fatalf("%v: POST: %v, want a refused address", ip, err)
		}
		logs := &testkit.SyncBuffer{}
		h := newHarnessWith(t, nil, func(o *Options) {
			o.Client = client
			o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		})
		h.put("s1", `{"type":"webhook","pattern":"events/*","webhook":{"url":"`+url+`"}}`)
		before := queries.Load()
		h.create("events/a", "x")
		for deadline := time.Now().Add(5 * time.Second); h.get("s1")["status"] != "failed"; {
			if time.Now().After(deadline) {
				t.Fatalf("%v: status %v after a delivery to a refused address", ip, h.get("s1")["status"])
			}
			time.Sleep(10 * time.Millisecond)
		}
		if queries.Load() == before {
			t.Fatalf("%v: the delivery did not resolve the name", ip)
		}
		if !strings.Contains(logs.String(), "webhook address is") {
			t.Fatalf("%v: the failure logged is not the address check: %s", ip, logs)
		}
		h.close()
	}
}
