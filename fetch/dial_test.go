package fetch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/testkit"
)

func TestDialRestrictedAddress(t *testing.T) {
	restricted := []string{
		"127.0.0.1", "127.5.6.7", "::1",
		"0.0.0.0", "0.1.2.3", "::",
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"fc00::1", "fd12:3456::1",
		"169.254.0.1", "169.254.169.254", "169.254.170.2", "fe80::1", "fe80::1%eth0",
		"fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192",
		"100.64.0.1", "100.127.255.255",
		"224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1",
		"255.255.255.255", "240.0.0.1",
		"192.0.2.1", "198.51.100.1", "203.0.113.1", "198.18.0.1",
		"fec0::1", "2001:db8::1", "2001::1", "100::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
		"::127.0.0.1", "::10.0.0.1", // IPv4-compatible
		"64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", // NAT64 of restricted IPv4
		"64:ff9b:1::1",     // local-use NAT64
		"2002:7f00:1::1",   // 6to4 of 127.0.0.1
		"2002:a9fe:a9fe::", // 6to4 of 169.254.169.254
	}
	for _, s := range restricted {
		reason, bad := RestrictedAddress(netip.MustParseAddr(s))
		if !bad || reason == "" {
			t.Errorf("RestrictedAddress(%s) = %q, %v; want restricted", s, reason, bad)
		}
	}
	public := []string{
		"8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0",
		"172.15.255.255", "172.32.0.0", "169.253.255.255", "11.0.0.1", "223.255.255.255",
		"2606:4700:4700::1111", "2a00:1450:4001::200e",
		"::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
	}
	for _, s := range public {
		if reason, bad := RestrictedAddress(netip.MustParseAddr(s)); bad {
			t.Errorf("RestrictedAddress(%s) = %q, restricted; want public", s, reason)
		}
	}
	if _, bad := RestrictedAddress(netip.Addr{}); !bad {
		t.Error("the invalid address is not restricted")
	}
	if r, _ := RestrictedAddress(netip.MustParseAddr("169.254.169.254")); !strings.Contains(r, "metadata") {
		t.Errorf("169.254.169.254: reason %q does not say metadata", r)
	}
}

func TestDialCheck(t *testing.T) {
	a := secAllow(t,
		"https://api.example.com/**",
		"http://127.0.0.1:*/**",
		"http://[::1]:8080/**",
		"http://169.254.169.254/latest/**",
		"http://**.internal.example/**",
	)
	tests := []struct {
		url, network, addr string
		ok                 bool
	}{
		// public address, allowed URL: passed to the real dial
		{"https://api.example.com/v1", "tcp4", "93.184.216.34:443", true},
		{"https://api.example.com/v1", "tcp6", "[2606:2800:220:1:248:1893:25c8:1946]:443", true},
		{"https://api.example.com/v1", "tcp", "8.8.8.8:443", true},
		// a name that resolves to a restricted address: refused
		{"https://api.example.com/v1", "tcp4", "127.0.0.1:443", false},
		{"https://api.example.com/v1", "tcp4", "10.1.2.3:443", false},
		{"https://api.example.com/v1", "tcp4", "169.254.169.254:443", false},
		{"https://api.example.com/v1", "tcp6", "[::ffff:127.0.0.1]:443", false},
		{"https://api.example.com/v1", "tcp6", "[fd00:ec2::254]:443", false},
		{"https://api.example.com/v1", "tcp4", "100.100.100.200:443", false},
		{"https://api.example.com/v1", "tcp6", "[fe80::1%eth0]:443", false},
		{"http://db.internal.example/x", "tcp4", "10.0.0.5:80", false}, // a name never names an address
		// an IP named by a pattern that matches the URL
		{"http://127.0.0.1:8080/x", "tcp4", "127.0.0.1:8080", true},
		{"http://[::1]:8080/x", "tcp6", "[::1]:8080", true},
		{"http://[::1]:9090/x", "tcp6", "[::1]:9090", false}, // URL not allowed (port)
		{"http://169.254.169.254/latest/meta-data", "tcp4", "169.254.169.254:80", true},
		{"http://169.254.169.254/other", "tcp4", "169.254.169.254:80", false},
		{"http://127.0.0.1:8080/x", "tcp4", "10.0.0.1:8080", false}, // named 127.0.0.1, dialling 10.0.0.1
		// not TCP, unparsable, URL not allowed
		{"https://api.example.com/v1", "udp4", "8.8.8.8:443", false},
		{"https://api.example.com/v1", "unix", "/run/docker.sock", false},
		{"https://api.example.com/v1", "tcp", "api.example.com:443", false},
		{"https://other.example.com/v1", "tcp4", "8.8.8.8:443", false},
	}
	for _, tt := range tests {
		err := checkDial(a, secURL(t, tt.url), tt.network, tt.addr)
		if (err == nil) != tt.ok {
			t.Errorf("checkDial(%s, %s %s) = %v, want ok=%v", tt.url, tt.network, tt.addr, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrAddressRefused) {
			t.Errorf("checkDial(%s, %s): %v does not wrap ErrAddressRefused", tt.url, tt.addr, err)
		}
	}
	// No URL in the dial context: refused even for a public address.
	if err := checkDial(a, nil, "tcp4", "8.8.8.8:443"); !errors.Is(err, ErrAddressRefused) {
		t.Errorf("checkDial without URL = %v", err)
	}
	// An empty allowlist refuses everything.
	if err := checkDial(nil, secURL(t, "https://api.example.com/"), "tcp4", "8.8.8.8:443"); err == nil {
		t.Error("checkDial with a nil allowlist passed")
	}
}

func TestDialControlReadsContextURL(t *testing.T) {
	d := NewDialer(secAllow(t, "http://127.0.0.1:*/**"))
	ctx := WithURL(context.Background(), secURL(t, "http://127.0.0.1:8080/"))
	if err := d.ControlContext(ctx, "tcp4", "127.0.0.1:8080", nil); err != nil {
		t.Errorf("named address refused: %v", err)
	}
	if err := d.ControlContext(context.Background(), "tcp4", "127.0.0.1:8080", nil); !errors.Is(err, ErrAddressRefused) {
		t.Errorf("dial without URL: %v", err)
	}
}

// secUpstream starts a local HTTP server on 127.0.0.1 and counts its requests.
func secUpstream(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func secGet(t *testing.T, c *http.Client, u string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func secWantRefused(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrAddressRefused) {
		t.Fatalf("err = %v, want ErrAddressRefused", err)
	}
	var ae *AddressError
	if !errors.As(err, &ae) || ae.Addr == "" || ae.Reason == "" {
		t.Fatalf("err = %v, want an *AddressError with address and reason", err)
	}
}

func TestDialLocalhostRefused(t *testing.T) {
	srv, hits := secUpstream(t, nil)
	port := secURL(t, srv.URL).Port()
	// localhost resolves to 127.0.0.1 (and maybe ::1): a pattern naming the
	// host name does not unlock loopback.
	a := secAllow(t, "http://localhost:*/**", "http://127.0.0.1:*/other/**")
	c := NewClient(NewTransport(a, time.Second))
	_, err := secGet(t, c, "http://localhost:"+port+"/x")
	secWantRefused(t, err)
	if !strings.Contains(err.Error(), "loopback") {
		t.Errorf("message %q does not say loopback", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the upstream was reached")
	}
}

func TestDialNamedLoopbackAllowed(t *testing.T) {
	srv, hits := secUpstream(t, nil)
	a := secAllow(t, "http://127.0.0.1:*/**")
	c := NewClient(NewTransport(a, time.Second))
	resp, err := secGet(t, c, srv.URL+"/x")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || hits.Load() != 1 {
		t.Fatalf("status %d, hits %d", resp.StatusCode, hits.Load())
	}
}

func TestDialURLNotAllowedRefused(t *testing.T) {
	// The dialer re-checks the URL: a caller that skips Allows still cannot
	// connect.
	srv, hits := secUpstream(t, nil)
	a := secAllow(t, "http://127.0.0.1:*/ok/**")
	c := NewClient(NewTransport(a, time.Second))
	_, err := secGet(t, c, srv.URL+"/not-ok")
	secWantRefused(t, err)
	if hits.Load() != 0 {
		t.Fatal("the upstream was reached")
	}
}

func TestDialTransportWithoutURLRefused(t *testing.T) {
	srv, hits := secUpstream(t, nil)
	tr := NewTransport(secAllow(t, "http://127.0.0.1:*/**"), time.Second)
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	_, err := tr.RoundTrip(req)
	secWantRefused(t, err)
	if hits.Load() != 0 {
		t.Fatal("the upstream was reached")
	}
	// With WithURL, the bare transport works.
	req = req.WithContext(WithURL(context.Background(), req.URL))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestDialDNSRebindingRefused: a public-looking name whose DNS answer is
// 127.0.0.1 is refused even though the URL is allowed and another pattern
// names 127.0.0.1 (for other URLs).
func TestDialDNSRebindingRefused(t *testing.T) {
	srv, hits := secUpstream(t, nil)
	port := secURL(t, srv.URL).Port()
	dnsAddr, _ := testkit.FakeDNS(t, [4]byte{127, 0, 0, 1})
	resolver := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp4", dnsAddr)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if addrs, err := resolver.LookupHost(ctx, "api.rebind.example"); err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.1" {
		t.Fatalf("fake DNS: %v, %v", addrs, err)
	}

	a := secAllow(t, "http://**.rebind.example:*/**", "http://127.0.0.1:*/**")
	d := NewDialer(a)
	d.Resolver = resolver
	tr := NewTransport(a, time.Second)
	tr.DialContext = d.DialContext
	c := NewClient(tr)
	_, err := secGet(t, c, "http://api.rebind.example:"+port+"/v1/chat")
	secWantRefused(t, err)
	if hits.Load() != 0 {
		t.Fatal("the upstream was reached")
	}
	// The same upstream by its named address is reachable.
	if _, err := secGet(t, c, srv.URL+"/v1/chat"); err != nil {
		t.Fatal(err)
	}
}

func TestDialRedirectNotFollowed(t *testing.T) {
	var other atomic.Int64
	srv, _ := secUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/other" {
			other.Add(1)
			return
		}
		http.Redirect(w, r, "/other", http.StatusFound)
	})
	c := NewClient(NewTransport(secAllow(t, "http://127.0.0.1:*/**"), time.Second))
	resp, err := secGet(t, c, srv.URL+"/start")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/other" {
		t.Fatalf("status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if other.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestDialProxyEnvIgnored(t *testing.T) {
	// A proxy in the environment must not carry requests past the address
	// check: the transport has no Proxy function and dials directly.
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { proxied.Add(1) }))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	srv, hits := secUpstream(t, nil)
	tr := NewTransport(secAllow(t, "http://127.0.0.1:*/**"), time.Second)
	if tr.Proxy != nil {
		t.Fatal("Transport.Proxy is set")
	}
	if _, err := secGet(t, NewClient(tr), srv.URL+"/x"); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 || proxied.Load() != 0 {
		t.Fatalf("upstream hits %d, proxy hits %d", hits.Load(), proxied.Load())
	}
}

func TestDialHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, _ := secUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c := NewClient(NewTransport(secAllow(t, "http://127.0.0.1:*/**"), 100*time.Millisecond))
	start := time.Now()
	_, err := secGet(t, c, srv.URL+"/slow")
	var ue *url.Error
	if !errors.As(err, &ue) || !ue.Timeout() {
		t.Fatalf("err = %v, want a *url.Error timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timed out after %v", d)
	}
}

func TestDialTransportSettings(t *testing.T) {
	tr := NewTransport(nil, 0)
	if tr.ResponseHeaderTimeout != DefaultHeaderTimeout {
		t.Errorf("ResponseHeaderTimeout = %v", tr.ResponseHeaderTimeout)
	}
	if tr = NewTransport(nil, 5*time.Second); tr.ResponseHeaderTimeout != 5*time.Second {
		t.Errorf("ResponseHeaderTimeout = %v", tr.ResponseHeaderTimeout)
	}
	if tr.Proxy != nil || !tr.DisableCompression || !tr.ForceAttemptHTTP2 || tr.DialContext == nil {
		t.Errorf("Proxy %v, DisableCompression %v, ForceAttemptHTTP2 %v", tr.Proxy != nil, tr.DisableCompression, tr.ForceAttemptHTTP2)
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.RootCAs != nil || tr.TLSClientConfig.InsecureSkipVerify {
		t.Error("TLS must verify against the system roots")
	}
	if !tr.DisableKeepAlives || tr.MaxResponseHeaderBytes == 0 {
		t.Error("connections kept alive (net/http would retry on them), or no header limit")
	}
	c := NewClient(tr)
	if c.CheckRedirect == nil || c.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Error("CheckRedirect does not stop redirects")
	}
	if c.Timeout != 0 {
		t.Error("client has an overall timeout")
	}
	c.CloseIdleConnections() // reaches the transport without panicking
}
