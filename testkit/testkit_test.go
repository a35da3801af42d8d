package testkit

import (
	"context"
	"net"
	"testing"
	"time"
)

// A resolver pointed at FakeDNS gets ip for any name, and no IPv6 address.
func TestFakeDNS(t *testing.T) {
	addr, queries := FakeDNS(t, [4]byte{10, 1, 2, 3})
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp4", addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := r.LookupHost(ctx, "anything.example.com")
	if err != nil || len(ips) != 1 || ips[0] != "10.1.2.3" {
		t.Fatalf("lookup: %v, %v", ips, err)
	}
	if queries.Load() == 0 {
		t.Fatal("no query counted")
	}
}
