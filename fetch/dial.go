package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// ErrAddressRefused marks a connection the dialer refused: the address
// dialled (after DNS) is loopback, private, link-local, metadata or otherwise
// non-public and no allow pattern names it for the URL, or the dial had no
// allowed URL in its context. Errors from the Transport wrap it (through
// *url.Error and *net.OpError); errors.As with *AddressError gives details.
var ErrAddressRefused = errors.New("upstream address refused")

// AddressError is the error the dialer returns for a refused connection.
// Its message holds the reason but not the address: the *net.OpError around
// it names the address, which belongs in the operator's log; a message for
// the client can use Reason alone, so that it does not reveal what an
// internal name resolves to.
type AddressError struct {
	Addr   string // the address dialled, "ip:port" (or as given when unparsable)
	Reason string // why: "loopback address (permitted only by ...)", ...
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("%v: %s", ErrAddressRefused, e.Reason)
}

// Unwrap makes errors.Is(err, ErrAddressRefused) true.
func (e *AddressError) Unwrap() error { return ErrAddressRefused }

type urlKey struct{}

// WithURL returns a context that tells the dialer which upstream URL a
// connection is for, so that it can permit a restricted address named by a
// pattern matching that URL. NewClient sets it from each request; a caller
// using the Transport directly must set it, or every dial is refused.
func WithURL(ctx context.Context, u *url.URL) context.Context {
	return context.WithValue(ctx, urlKey{}, u)
}

func urlFrom(ctx context.Context) *url.URL {
	u, _ := ctx.Value(urlKey{}).(*url.URL)
	return u
}

// DefaultHeaderTimeout is the proxy protocol's recommended wait for upstream
// response headers (PROXY_PROTOCOL.md section 8.1).
const DefaultHeaderTimeout = 60 * time.Second

// NewDialer returns a dialer that refuses, after DNS resolution, every
// address that RestrictedAddress flags unless a allows-matching pattern names
// it (Allowlist.NamesAddress), and every dial whose context carries no URL
// that a allows. The check runs in Control, on the IP and port the socket is
// about to connect to, so it also holds for every address a name resolves to
// and for DNS answers that change between the allowlist check and the dial.
func NewDialer(a *Allowlist) *net.Dialer {
	return &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		ControlContext: func(ctx context.Context, network, address string, _ syscall.RawConn) error {
			return checkDial(a, urlFrom(ctx), network, address)
		},
	}
}

// checkDial is the dialer's decision for one connection attempt.
func checkDial(a *Allowlist, u *url.URL, network, address string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return &AddressError{Addr: address, Reason: "network " + network + " is not allowed"}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &AddressError{Addr: address, Reason: "unparsable address"}
	}
	if u == nil {
		return &AddressError{Addr: address, Reason: "no upstream URL in the dial context (use fetch.WithURL)"}
	}
	if !a.Allows(u) {
		return &AddressError{Addr: address, Reason: "the upstream URL is not allowed"}
	}
	ip := ap.Addr()
	if reason, restricted := RestrictedAddress(ip); restricted {
		if !a.NamesAddress(u, ip) {
			return &AddressError{Addr: address, Reason: reason +
				" (permitted only by an allow pattern whose host is this exact IP literal)"}
		}
	}
	return nil
}

// Restricted ranges beyond what netip's predicates cover. Sources: the IANA
// IPv4 and IPv6 special-purpose address registries and cloud metadata docs.
var (
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, ... (also link-local)
		netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata (also link-local)
		netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6 (also ULA)
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud (also CGNAT)
		netip.MustParseAddr("168.63.129.16"),   // Azure WireServer (a public-looking address)
		netip.MustParseAddr("192.0.0.192"),     // Oracle Cloud legacy metadata
	}
	restrictedPrefixes = []struct {
		p      netip.Prefix
		reason string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" address"}, // 0.x dials reach the local host on Linux
		{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT) address"},
		{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment address"},
		{netip.MustParsePrefix("192.0.2.0/24"), "documentation address"},
		{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking address"},
		{netip.MustParsePrefix("198.51.100.0/24"), "documentation address"},
		{netip.MustParsePrefix("203.0.113.0/24"), "documentation address"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved address"}, // includes broadcast
		{netip.MustParsePrefix("::/96"), "IPv4-compatible IPv6 address"},
		{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 address"},
		{netip.MustParsePrefix("100::/64"), "discard-only address"},
		{netip.MustParsePrefix("2001::/32"), "Teredo address"},
		{netip.MustParsePrefix("2001:db8::/32"), "documentation address"},
		{netip.MustParsePrefix("fec0::/10"), "site-local address"},
	}
	nat64WKP  = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// RestrictedAddress reports whether ip is an address a fetch must not reach
// unless an allow pattern names it, and why: loopback, private (RFC 1918,
// fc00::/7), link-local (169.254/16, fe80::/10), unspecified, multicast,
// CGNAT (100.64/10), other special-purpose ranges that are not globally
// reachable, cloud metadata endpoints, and the IPv4-mapped, NAT64 (64:ff9b::/96)
// and 6to4 (2002::/16) forms of a restricted IPv4 address.
func RestrictedAddress(ip netip.Addr) (reason string, restricted bool) {
	if !ip.IsValid() {
		return "invalid address", true
	}
	ip = ip.WithZone("")
	if ip.Is4In6() {
		if r, bad := RestrictedAddress(ip.Unmap()); bad {
			return "IPv4-mapped " + r, true
		}
		return "", false
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return "cloud metadata address", true
		}
	}
	switch {
	case ip.IsUnspecified():
		return "unspecified address", true
	case ip.IsLoopback():
		return "loopback address", true
	case ip.IsPrivate():
		return "private address", true
	case ip.IsLinkLocalUnicast():
		return "link-local address", true
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast address", true
	}
	for _, r := range restrictedPrefixes {
		if r.p.Contains(ip) {
			return r.reason, true
		}
	}
	if ip.Is6() {
		b := ip.As16()
		var v4 [4]byte
		switch {
		case nat64WKP.Contains(ip):
			copy(v4[:], b[12:16])
			if r, bad := RestrictedAddress(netip.AddrFrom4(v4)); bad {
				return "NAT64 form of a " + r, true
			}
		case sixToFour.Contains(ip):
			copy(v4[:], b[2:6])
			if r, bad := RestrictedAddress(netip.AddrFrom4(v4)); bad {
				return "6to4 form of a " + r, true
			}
		}
	}
	return "", false
}

// NewTransport returns the http.Transport for upstream requests:
//
//   - dials through NewDialer(a), so restricted addresses are refused after
//     DNS resolution unless a names them;
//   - no proxy: Proxy is nil and HTTP_PROXY/HTTPS_PROXY are ignored, since
//     connecting through a proxy would take the address check out of our
//     hands;
//   - TLS verifies against the system roots (on Linux Go also reads
//     SSL_CERT_FILE and SSL_CERT_DIR, which is how to trust a private CA),
//     TLS 1.2 at least, HTTP/2 when the upstream offers it;
//   - ResponseHeaderTimeout is headerTimeout (DefaultHeaderTimeout when <= 0):
//     the wait for response headers after the request is written; a timeout
//     surfaces as a *url.Error whose Timeout() is true;
//   - compression is left to the caller (DisableCompression): with the
//     Accept-Encoding: identity that UpstreamRequestHeader sets, the stored
//     bytes are the plain body;
//   - response headers are capped at 64 KiB; idle connections are bounded.
//
// Use it through NewClient, which tells the dialer each request's URL.
func NewTransport(a *Allowlist, headerTimeout time.Duration) *http.Transport {
	if headerTimeout <= 0 {
		headerTimeout = DefaultHeaderTimeout
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           NewDialer(a).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
		// One connection per upstream request: net/http sends a GET
		// (or any request with an Idempotency-Key) again on a new
		// connection when a kept-alive one fails before the answer, and
		// an upstream request is made once, never retried. (A fetch
		// streams for long; a new connection per fetch costs little.)
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true,
	}
}

// NewClient returns the client for upstream requests over t. Redirects are
// never followed: CheckRedirect returns http.ErrUseLastResponse, so a 3xx
// comes back as the response and the caller refuses it
// (REDIRECT_NOT_ALLOWED). The client has no overall timeout (a fetch may
// stream for hours); bound waits with the request context. Each request's
// URL is put in its context (WithURL) for the dialer.
func NewClient(t *http.Transport) *http.Client {
	return &http.Client{
		Transport: urlTransport{t},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// urlTransport puts each request's URL into its context for the dialer.
type urlTransport struct{ t *http.Transport }

func (u urlTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return u.t.RoundTrip(req.WithContext(WithURL(req.Context(), req.URL)))
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach t.
func (u urlTransport) CloseIdleConnections() { u.t.CloseIdleConnections() }
