package fetch

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/durastream/durastream/pathglob"
)

// ErrBadURL marks an upstream URL that is refused whatever the allowlist says
// (bad scheme, user info, empty or malformed host, an ambiguous path). Callers
// map it to 400; a well-formed URL that no pattern allows is a 403.
var ErrBadURL = errors.New("invalid upstream URL")

// Allowlist is a parsed, immutable list of allow patterns, safe for
// concurrent use. The zero value and nil allow nothing.
type Allowlist struct {
	patterns []pattern
}

// pattern is one parsed allow pattern.
type pattern struct {
	text   string
	scheme string // "http", "https" or "*"
	host   hostPattern
	port   int // 0: the URL scheme's default port; -1: any port
	path   pathglob.Pattern
}

// hostPattern is either an exact IP (ip valid) or DNS labels.
type hostPattern struct {
	ip        netip.Addr
	anyPrefix bool            // a leading "**." (or a host of "**")
	labels    []pathglob.Glob // the labels after the prefix, left to right
}

// ParseAllowlist parses allow patterns (syntax in the package comment).
// Surrounding white space is ignored. An empty list gives an Allowlist that
// allows nothing. The error names the first bad pattern and what is wrong.
func ParseAllowlist(patterns []string) (*Allowlist, error) {
	a := &Allowlist{patterns: make([]pattern, 0, len(patterns))}
	for _, text := range patterns {
		p, err := parsePattern(strings.TrimSpace(text))
		if err != nil {
			return nil, fmt.Errorf("allow pattern %q: %w", text, err)
		}
		a.patterns = append(a.patterns, p)
	}
	return a, nil
}

// Len is the number of patterns; 0 means nothing is allowed.
func (a *Allowlist) Len() int {
	if a == nil {
		return 0
	}
	return len(a.patterns)
}

// Patterns returns the patterns as given, for logs and status pages.
func (a *Allowlist) Patterns() []string {
	if a == nil {
		return nil
	}
	out := make([]string, len(a.patterns))
	for i, p := range a.patterns {
		out[i] = p.text
	}
	return out
}

// Allows reports whether u is a valid upstream URL (see CheckURL) that at
// least one pattern matches.
func (a *Allowlist) Allows(u *url.URL) bool {
	return a.firstMatch(u) != nil
}

// NamesAddress reports whether some pattern that matches u has the exact IP
// literal ip as its host. The dialer uses it to permit a loopback, private or
// metadata address only when the operator spelled that address out for this
// URL. Wildcard and DNS-name patterns never name an address.
func (a *Allowlist) NamesAddress(u *url.URL, ip netip.Addr) bool {
	if a == nil || !ip.IsValid() {
		return false
	}
	n, err := normalize(u)
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for i := range a.patterns {
		p := &a.patterns[i]
		if p.host.ip.IsValid() && p.host.ip == ip && p.match(n) {
			return true
		}
	}
	return false
}

func (a *Allowlist) firstMatch(u *url.URL) *pattern {
	if a == nil || len(a.patterns) == 0 {
		return nil
	}
	n, err := normalize(u)
	if err != nil {
		return nil
	}
	for i := range a.patterns {
		if a.patterns[i].match(n) {
			return &a.patterns[i]
		}
	}
	return nil
}

// CheckURL returns nil when u is acceptable as an upstream URL regardless of
// the allowlist, and otherwise an error wrapping ErrBadURL that says why.
func CheckURL(u *url.URL) error {
	_, err := normalize(u)
	return err
}

// normURL is a URL in the form patterns are matched against.
type normURL struct {
	scheme string
	ip     netip.Addr // valid for an IP-literal host
	labels []string   // DNS labels, lower case, when ip is not valid
	port   int
	segs   []string // decoded path segments; "/" is {""}
}

func badURL(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadURL}, args...)...)
}

func normalize(u *url.URL) (*normURL, error) {
	if u == nil {
		return nil, badURL("no URL")
	}
	n := &normURL{scheme: strings.ToLower(u.Scheme)}
	switch n.scheme {
	case "http":
		n.port = 80
	case "https":
		n.port = 443
	default:
		return nil, badURL("scheme %q is not http or https", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, badURL("not an absolute http(s) URL")
	}
	if u.User != nil {
		return nil, badURL("user info (user:password@) is not allowed")
	}
	// Host.
	host := u.Hostname()
	if host == "" {
		return nil, badURL("empty host")
	}
	if strings.HasPrefix(u.Host, "[") {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return nil, badURL("bad IPv6 literal %q", host)
		}
		n.ip = ip.Unmap()
	} else if ip, err := netip.ParseAddr(host); err == nil {
		if !ip.Is4() {
			return nil, badURL("bad host %q", host)
		}
		n.ip = ip
	} else {
		labels, err := hostLabels(strings.TrimSuffix(strings.ToLower(host), "."))
		if err != nil {
			return nil, badURL("host %q: %v", host, err)
		}
		n.labels = labels
	}
	// Port.
	if ps := u.Port(); ps != "" {
		p, err := strconv.Atoi(ps)
		if err != nil || p < 1 || p > 65535 {
			return nil, badURL("bad port %q", ps)
		}
		n.port = p
	}
	// Path.
	segs, err := pathSegments(u.EscapedPath())
	if err != nil {
		return nil, badURL("path: %v", err)
	}
	n.segs = segs
	return n, nil
}

// hostLabels splits a lower-case DNS name into labels, refusing what is not
// a plain ASCII host name or would be read as a number by some resolvers.
func hostLabels(host string) ([]string, error) {
	if host == "" {
		return nil, errors.New("empty host")
	}
	if len(host) > 253 {
		return nil, errors.New("host name too long")
	}
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" {
			return nil, errors.New("empty label")
		}
		if len(l) > 63 {
			return nil, errors.New("label longer than 63 bytes")
		}
		for i := 0; i < len(l); i++ {
			if !isHostChar(l[i]) {
				if l[i] >= 0x80 {
					return nil, errors.New("non-ASCII host (use punycode, xn--...)")
				}
				return nil, fmt.Errorf("character %q not allowed in a host name", l[i])
			}
		}
	}
	// inet_aton-style forms (127.1, 0x7f000001, 2130706433) are not IP
	// literals to Go but a libc resolver may read them as addresses; no real
	// top-level domain is numeric, so refuse them outright.
	if numericLabel(labels[len(labels)-1]) {
		return nil, errors.New("numeric host that is not a plain IP literal")
	}
	return labels, nil
}

func isHostChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// numericLabel reports whether l is all decimal digits or a 0x hex number.
func numericLabel(l string) bool {
	if strings.HasPrefix(l, "0x") {
		l = l[2:]
		if l == "" {
			return true
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// pathSegments splits an escaped URL path into decoded segments, refusing
// paths whose meaning could differ between us and the upstream.
func pathSegments(p string) ([]string, error) {
	if p == "" {
		p = "/"
	}
	if p[0] != '/' {
		return nil, errors.New("path does not start with /")
	}
	raw := strings.Split(p[1:], "/")
	segs := make([]string, len(raw))
	for i, r := range raw {
		s, err := url.PathUnescape(r)
		if err != nil {
			return nil, fmt.Errorf("bad escape in %q", r)
		}
		if s == "" && i != len(raw)-1 {
			return nil, errors.New("empty segment (//)")
		}
		if strings.ContainsAny(s, `/\`) {
			return nil, fmt.Errorf("segment %q contains an encoded / or \\", r)
		}
		for j := 0; j < len(s); j++ {
			if s[j] < 0x20 || s[j] == 0x7f {
				return nil, fmt.Errorf("segment %q contains a control character", r)
			}
		}
		base, _, _ := strings.Cut(s, ";")
		if base == "." || base == ".." {
			return nil, fmt.Errorf("dot segment %q", r)
		}
		segs[i] = s
	}
	return segs, nil
}

// match reports whether the normalized URL n matches p.
func (p *pattern) match(n *normURL) bool {
	if p.scheme != "*" && p.scheme != n.scheme {
		return false
	}
	switch {
	case p.port == -1:
	case p.port == 0:
		if n.port != defaultPort(n.scheme) {
			return false
		}
	default:
		if n.port != p.port {
			return false
		}
	}
	if !p.host.match(n) {
		return false
	}
	return p.path.Match(n.segs)
}

func defaultPort(scheme string) int {
	if scheme == "https" {
		return 443
	}
	return 80
}

func (h *hostPattern) match(n *normURL) bool {
	if h.ip.IsValid() || n.ip.IsValid() {
		return h.ip.IsValid() && h.ip == n.ip
	}
	if len(n.labels) < len(h.labels) || !h.anyPrefix && len(n.labels) != len(h.labels) {
		return false
	}
	tail := n.labels[len(n.labels)-len(h.labels):]
	for i, g := range h.labels {
		if !g.Match(tail[i]) {
			return false
		}
	}
	return len(n.labels) > 0
}

func parsePattern(s string) (pattern, error) {
	p := pattern{text: s}
	if s == "" {
		return p, errors.New("empty pattern")
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return p, errors.New("missing scheme:// (use http://, https:// or *://)")
	}
	p.scheme = strings.ToLower(scheme)
	if p.scheme != "http" && p.scheme != "https" && p.scheme != "*" {
		return p, fmt.Errorf("scheme %q is not http, https or *", scheme)
	}
	if strings.ContainsAny(rest, "?#") {
		return p, errors.New("query and fragment are not matched; remove them")
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return p, errors.New("missing path (use /** for any path)")
	}
	authority, path := rest[:slash], rest[slash:]
	if strings.Contains(authority, "@") {
		return p, errors.New("user info is not allowed")
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return p, err
	}
	if p.host, err = parseHostPattern(host); err != nil {
		return p, err
	}
	switch port {
	case "":
		p.port = 0
	case "*":
		p.port = -1
	default:
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return p, fmt.Errorf("bad port %q (a number 1-65535 or *)", port)
		}
		p.port = n
	}
	if p.path, err = parsePathPattern(path); err != nil {
		return p, err
	}
	return p, nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostPort(a string) (host, port string, err error) {
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", errors.New("missing ] in IPv6 host")
		}
		host, rest := a[:end+1], a[end+1:]
		if rest == "" {
			return host, "", nil
		}
		if rest[0] != ':' || len(rest) == 1 {
			return "", "", fmt.Errorf("bad text %q after IPv6 host", rest)
		}
		return host, rest[1:], nil
	}
	host, port, ok := strings.Cut(a, ":")
	if ok && port == "" {
		return "", "", errors.New("empty port")
	}
	if strings.Contains(port, ":") {
		return "", "", errors.New("IPv6 hosts must be in brackets")
	}
	return host, port, nil
}

func parseHostPattern(h string) (hostPattern, error) {
	var hp hostPattern
	if h == "" {
		return hp, errors.New("empty host")
	}
	if strings.HasPrefix(h, "[") {
		inner := h[1 : len(h)-1]
		ip, err := netip.ParseAddr(inner)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return hp, fmt.Errorf("bad IPv6 literal %q (wildcards are not allowed in IP hosts)", inner)
		}
		hp.ip = ip.Unmap()
		return hp, nil
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		hp.ip = ip
		return hp, nil
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "**" {
		hp.anyPrefix = true
		return hp, nil
	}
	if rest, ok := strings.CutPrefix(h, "**."); ok {
		hp.anyPrefix = true
		h = rest
	}
	labels := strings.Split(h, ".")
	ipLike, digits := true, false // only digits and *, with some digit
	for _, l := range labels {
		if l == "" {
			return hp, fmt.Errorf("empty label in host %q", h)
		}
		if len(l) > 63 {
			return hp, errors.New("host label longer than 63 bytes")
		}
		if strings.Contains(l, "**") {
			return hp, fmt.Errorf("** is only allowed as the first label (**.example.com), not in %q", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if c == '*' {
				continue
			}
			if !isHostChar(c) {
				if c >= 0x80 {
					return hp, errors.New("non-ASCII host (use punycode, xn--...)")
				}
				return hp, fmt.Errorf("character %q not allowed in a host", c)
			}
			if c >= '0' && c <= '9' {
				digits = true
			} else {
				ipLike = false
			}
		}
		hp.labels = append(hp.labels, pathglob.ParseGlob(l))
	}
	if ipLike && digits {
		return hp, fmt.Errorf("host %q looks like a wildcard or malformed IP address; IP hosts must be exact literals", h)
	}
	if last := labels[len(labels)-1]; !strings.Contains(last, "*") && numericLabel(last) {
		return hp, fmt.Errorf("host %q ends in a numeric label and would never match", h)
	}
	return hp, nil
}

func parsePathPattern(path string) (pathglob.Pattern, error) {
	raw := strings.Split(path[1:], "/")
	segs := make(pathglob.Pattern, 0, len(raw))
	for i, r := range raw {
		if r == "" && i != len(raw)-1 {
			return nil, errors.New("empty path segment (//)")
		}
		seg, err := pathglob.ParseSegment(r)
		if err != nil {
			return nil, err
		}
		for j, part := range seg.Glob {
			d, err := url.PathUnescape(part)
			if err != nil {
				return nil, fmt.Errorf("bad escape in path segment %q", r)
			}
			if strings.ContainsAny(d, `/\`) {
				return nil, fmt.Errorf("path segment %q decodes to contain / or \\", r)
			}
			seg.Glob[j] = d
		}
		if seg.Glob.Literal() {
			if base, _, _ := strings.Cut(seg.Glob[0], ";"); base == "." || base == ".." {
				return nil, fmt.Errorf("dot segment %q in path", r)
			}
		}
		segs = append(segs, seg)
	}
	return segs, nil
}
