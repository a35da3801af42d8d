package fetch

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func secAllow(t testing.TB, patterns ...string) *Allowlist {
	t.Helper()
	a, err := ParseAllowlist(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func secURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

func TestAllowParseErrors(t *testing.T) {
	bad := []string{
		"",
		"   ",
		"api.openai.com/**",                              // no scheme
		"ftp://example.com/**",                           // scheme
		"http*://example.com/**",                         // scheme glob
		"https://example.com",                            // no path
		"https://example.com/**?q=1",                     // query
		"https://example.com/**#f",                       // fragment
		"https://user@example.com/**",                    // user info
		"https://u:p@example.com/**",                     // user info
		"https://example.com:0/**",                       // port range
		"https://example.com:65536/**",                   // port range
		"https://example.com:http/**",                    // port text
		"https://example.com:+80/**",                     // signed port
		"https://example.com:/**",                        // empty port
		"https://example.com:8*/**",                      // port glob
		"https:///**",                                    // empty host
		"https://:443/**",                                // empty host
		"https://a.**.com/**",                            // ** not leading
		"https://x**.com/**",                             // ** inside a label
		"https://10.0.*.*/**",                            // wildcard IP
		"https://*.1/**",                                 // numeric TLD
		"https://example.123/**",                         // numeric TLD
		"https://[::1/**",                                // unclosed bracket
		"https://[*::1]/**",                              // wildcard IPv6
		"https://[10.0.0.1]/**",                          // IPv4 in brackets
		"https://[fe80::1%25eth0]/**",                    // zone
		"https://[::1]x/**",                              // junk after bracket
		"https://::1/**",                                 // IPv6 without brackets
		"https://example..com/**",                        // empty label
		"https://.example.com/**",                        // empty label
		"https://exa mple.com/**",                        // space
		"https://bücher.de/**",                           // not punycode
		"https://example.com/a/**b",                      // ** inside a segment
		"https://example.com/a//b",                       // empty segment
		"https://example.com/../x",                       // dot segment
		"https://example.com/a/./x",                      // dot segment
		"https://example.com/%2e%2e/x",                   // encoded dot segment
		"https://example.com/a%2Fb",                      // encoded slash
		"https://example.com/a%5Cb",                      // encoded backslash
		"https://example.com/a%zz",                       // bad escape
		"https://" + strings.Repeat("a", 64) + ".com/**", // long label
	}
	for _, p := range bad {
		_, err := ParseAllowlist([]string{"https://ok.example.com/**", p})
		if err == nil {
			t.Errorf("ParseAllowlist(%q): no error", p)
			continue
		}
		if !strings.Contains(err.Error(), strings.TrimSpace(p)) && strings.TrimSpace(p) != "" {
			t.Errorf("error %q does not name the pattern %q", err, p)
		}
	}
}

func TestAllowParseValid(t *testing.T) {
	good := []string{
		"https://api.openai.com/v1/**",
		"HTTPS://API.OpenAI.com/v1/**",
		"https://**.openai.com/**",
		"*://api.example.com:*/**",
		"http://127.0.0.1:8080/**",
		"http://[::1]:8080/**",
		"https://[fd00:ec2::254]/latest/*",
		"https://*/**",
		"https://**/**",
		"https://api-*.example.com/v*/chat/*",
		"https://example.com/",
		"https://example.com/a/",
		"https://example.com./x",
		"https://xn--bcher-kva.de/**",
		"https://example.com/%2A",
		"  https://example.com/**  ",
	}
	a, err := ParseAllowlist(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != len(good) || len(a.Patterns()) != len(good) {
		t.Fatalf("Len %d, Patterns %d, want %d", a.Len(), len(a.Patterns()), len(good))
	}
}

func TestAllowEmptyDeniesAll(t *testing.T) {
	u := secURL(t, "https://api.openai.com/v1/chat/completions")
	var nilList *Allowlist
	empty, err := ParseAllowlist(nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*Allowlist{"nil": nilList, "parsed empty": empty, "zero": {}} {
		if a.Allows(u) {
			t.Errorf("%s allowlist allows %s", name, u)
		}
		if a.NamesAddress(u, netip.MustParseAddr("127.0.0.1")) {
			t.Errorf("%s allowlist names an address", name)
		}
		if a.Len() != 0 {
			t.Errorf("%s: Len = %d", name, a.Len())
		}
	}
}

func TestAllowMatch(t *testing.T) {
	tests := []struct {
		pattern string
		url     string
		want    bool
	}{
		// scheme
		{"https://api.openai.com/**", "https://api.openai.com/v1/chat", true},
		{"https://api.openai.com/**", "http://api.openai.com/v1/chat", false},
		{"http://api.openai.com/**", "https://api.openai.com/v1/chat", false},
		{"*://api.openai.com/**", "http://api.openai.com/v1", true},
		{"*://api.openai.com/**", "https://api.openai.com/v1", true},
		{"HTTPS://API.OPENAI.COM/**", "https://api.openai.com/x", true},
		{"https://api.openai.com/**", "HTTPS://API.OpenAI.COM/x", true},

		// host labels
		{"https://*.example.com/**", "https://a.example.com/", true},
		{"https://*.example.com/**", "https://example.com/", false},
		{"https://*.example.com/**", "https://a.b.example.com/", false},
		{"https://*.example.com/**", "https://a.example.com.evil.com/", false},
		{"https://*.example.com/**", "https://aexample.com/", false},
		{"https://api-*.example.com/**", "https://api-eu.example.com/", true},
		{"https://api-*.example.com/**", "https://api-.example.com/", true},
		{"https://api-*.example.com/**", "https://web-eu.example.com/", false},
		{"https://api-*.example.com/**", "https://api-eu.x.example.com/", false},
		{"https://a*b*c.example.com/**", "https://axxbyyc.example.com/", true},
		{"https://a*b*c.example.com/**", "https://axxcyyb.example.com/", false},
		{"https://**.openai.com/**", "https://openai.com/", true},
		{"https://**.openai.com/**", "https://api.openai.com/", true},
		{"https://**.openai.com/**", "https://a.b.c.openai.com/", true},
		{"https://**.openai.com/**", "https://notopenai.com/", false},
		{"https://**.openai.com/**", "https://openai.com.evil.net/", false},
		{"https://**.*.openai.com/**", "https://openai.com/", false},
		{"https://**.*.openai.com/**", "https://x.y.openai.com/", true},
		{"https://*/**", "https://intranet/", true},
		{"https://*/**", "https://a.b/", false},
		{"https://**/**", "https://a.b.c/", true},
		{"https://example.com/**", "https://example.com./x", true}, // trailing dot
		{"https://example.com./**", "https://example.com/x", true},
		{"https://example.com/**", "https://example.com.evil/x", false},
		{"https://xn--bcher-kva.de/**", "https://XN--BCHER-KVA.de/x", true},

		// wildcards never match IP literals
		{"https://*/**", "https://10.0.0.1/", false},
		{"https://**/**", "https://8.8.8.8/", false},
		{"https://**/**", "https://[2606:4700::1111]/", false},
		{"https://*.*.*.*/**", "https://8.8.8.8/", false},
		// exact IP literals
		{"http://127.0.0.1:*/**", "http://127.0.0.1:8080/x", true},
		{"http://127.0.0.1:*/**", "http://127.0.0.2:8080/x", false},
		{"http://127.0.0.1:*/**", "http://[::ffff:127.0.0.1]:8080/x", true}, // mapped form is the same address
		{"http://[::ffff:127.0.0.1]:*/**", "http://127.0.0.1:8080/x", true},
		{"http://[::1]:*/**", "http://[::1]:8080/", true},
		{"http://[::1]:*/**", "http://[0:0:0:0:0:0:0:1]:8080/", true},
		{"http://[::1]:*/**", "http://127.0.0.1:8080/", false},
		{"http://127.0.0.1:*/**", "http://localhost:8080/", false},
		{"http://localhost:*/**", "http://127.0.0.1:8080/", false},

		// ports
		{"https://example.com/**", "https://example.com:443/", true},
		{"https://example.com/**", "https://example.com:8443/", false},
		{"http://example.com/**", "http://example.com:80/", true},
		{"http://example.com/**", "http://example.com:443/", false},
		{"*://example.com/**", "http://example.com:443/", false}, // default port of the URL's scheme
		{"*://example.com/**", "https://example.com:80/", false},
		{"https://example.com:8443/**", "https://example.com:8443/", true},
		{"https://example.com:8443/**", "https://example.com/", false},
		{"https://example.com:443/**", "https://example.com/", true},
		{"https://example.com:*/**", "https://example.com:1/", true},
		{"https://example.com:*/**", "https://example.com/", true},
		{"https://example.com:*/**", "https://example.com:08443/", true},

		// paths
		{"https://example.com/v1/**", "https://example.com/v1", true},
		{"https://example.com/v1/**", "https://example.com/v1/", true},
		{"https://example.com/v1/**", "https://example.com/v1/a/b/c", true},
		{"https://example.com/v1/**", "https://example.com/v1x", false},
		{"https://example.com/v1/**", "https://example.com/v2/v1", false},
		{"https://example.com/v1/**", "https://example.com", false},
		{"https://example.com/**", "https://example.com", true},
		{"https://example.com/", "https://example.com", true},
		{"https://example.com/", "https://example.com/", true},
		{"https://example.com/", "https://example.com/a", false},
		{"https://example.com/v1/", "https://example.com/v1", false},
		{"https://example.com/v1/", "https://example.com/v1/", true},
		{"https://example.com/v1/*", "https://example.com/v1/", true},
		{"https://example.com/v1/*", "https://example.com/v1", false},
		{"https://example.com/v1/*", "https://example.com/v1/chat", true},
		{"https://example.com/v1/*", "https://example.com/v1/chat/x", false},
		{"https://example.com/v1/*/x", "https://example.com/v1/a/x", true},
		{"https://example.com/v1/*/x", "https://example.com/v1/a/b/x", false},
		{"https://example.com/v*/chat", "https://example.com/v2/chat", true},
		{"https://example.com/v*/chat", "https://example.com/x2/chat", false},
		{"https://example.com/**/chat", "https://example.com/chat", true},
		{"https://example.com/**/chat", "https://example.com/a/b/chat", true},
		{"https://example.com/**/chat", "https://example.com/a/b/chat/x", false},
		{"https://example.com/**/a/**/b", "https://example.com/x/a/y/a/z/b", true},
		{"https://example.com/**/a/**/b", "https://example.com/x/a/y/b/z", false},
		{"https://example.com/a/**/b/*", "https://example.com/a/b/b/c", true},
		{"https://example.com/Models/**", "https://example.com/models/x", false}, // paths are case-sensitive
		{"https://example.com/a b/**", "https://example.com/a%20b/x", true},
		{"https://example.com/a%20b/**", "https://example.com/a%20b/x", true},
		{"https://example.com/v1/*", "https://example.com/v1/%41", true},
		{"https://example.com/v1/A", "https://example.com/v1/%41", true}, // decoded before matching
		{"https://example.com/%2A", "https://example.com/x", false},      // %2A is a literal *
		{"https://example.com/%2A", "https://example.com/%2A", true},
		{"https://example.com/%2A", "https://example.com/*", true},

		// queries are never matched
		{"https://example.com/v1/*", "https://example.com/v1/chat?x=/../../admin&y", true},
		{"https://example.com/v1/*", "https://example.com/v1/chat#frag", true},

		// refused URLs, whatever the pattern
		{"https://**/**", "https://user@example.com/", false},
		{"https://**/**", "https://user:pw@example.com/", false},
		{"https://example.com/v1/*", "https://example.com/v1/a%2Fb", false},
		{"https://example.com/v1/**", "https://example.com/v1/a%2Fb", false},
		{"https://example.com/v1/**", "https://example.com/v1/a%2fb", false},
		{"https://example.com/v1/**", "https://example.com/v1/a%5Cb", false},
		{"https://example.com/v1/**", `https://example.com/v1/a\b`, false},
		{"https://example.com/v1/**", "https://example.com/v1/../admin", false},
		{"https://example.com/v1/**", "https://example.com/v1/%2e%2e/admin", false},
		{"https://example.com/v1/**", "https://example.com/v1/%2E%2E/admin", false},
		{"https://example.com/v1/**", "https://example.com/v1/.%2e/admin", false},
		{"https://example.com/v1/**", "https://example.com/v1/..;/admin", false},
		{"https://example.com/v1/**", "https://example.com/v1/..;x=1/admin", false},
		{"https://example.com/v1/**", "https://example.com/v1/./x", false},
		{"https://example.com/v1/**", "https://example.com/v1/x/..", false},
		{"https://example.com/**", "https://example.com/../v1", false},
		{"https://example.com/v1/**", "https://example.com/v1//admin", false},
		{"https://example.com/**", "https://example.com//", false},
		{"https://example.com/v1/**", "https://example.com/v1/a%00b", false},
		{"https://example.com/v1/**", "https://example.com/v1/a%0Ab", false},
		{"https://example.com/v1/**", "https://example.com/v1/...", true}, // not a dot segment
		{"https://example.com/v1/**", "https://example.com/v1/..x", true},
		{"*://**/**", "ftp://example.com/", false},
		{"*://**/**", "file:///etc/passwd", false},
		{"*://**/**", "javascript:alert(1)", false},
		{"*://**/**", "/relative/path", false},
		{"*://**/**", "https:example.com", false},
		{"http://*/**", "http://127.1/", false},
		{"http://*/**", "http://2130706433/", false},
		{"http://*.*/**", "http://0x7f.1/", false},
		{"http://**/**", "http://0x7f000001/", false},
		{"http://**/**", "http://010.0.0.1/", false},
		{"http://**/**", "http://bücher.de/", false},
		{"http://**/**", "http://exa_mple.com/", true},
		{"http://[fe80::1]/**", "http://[fe80::1%25eth0]/", false},
		{"http://**/**", "http://a..b/", false},
	}
	for _, tt := range tests {
		a := secAllow(t, tt.pattern)
		u, err := url.Parse(tt.url)
		if err != nil {
			if tt.want {
				t.Errorf("url.Parse(%q): %v", tt.url, err)
			}
			continue
		}
		if got := a.Allows(u); got != tt.want {
			t.Errorf("pattern %q, URL %q: Allows = %v, want %v", tt.pattern, tt.url, got, tt.want)
		}
	}
}

func TestAllowAnyPatternMatches(t *testing.T) {
	a := secAllow(t, "https://api.openai.com/v1/**", "http://127.0.0.1:8080/**")
	for _, s := range []string{"https://api.openai.com/v1/chat", "http://127.0.0.1:8080/x"} {
		if !a.Allows(secURL(t, s)) {
			t.Errorf("not allowed: %s", s)
		}
	}
	for _, s := range []string{"https://api.openai.com/v2/chat", "http://127.0.0.1:8081/x", "http://127.0.0.1/x"} {
		if a.Allows(secURL(t, s)) {
			t.Errorf("allowed: %s", s)
		}
	}
}

func TestAllowNamesAddress(t *testing.T) {
	a := secAllow(t,
		"http://127.0.0.1:8080/ok/**",
		"http://[::1]:*/**",
		"http://**/**",
		"https://169.254.169.254/latest/**",
	)
	tests := []struct {
		url, ip string
		want    bool
	}{
		{"http://127.0.0.1:8080/ok/x", "127.0.0.1", true},
		{"http://127.0.0.1:8080/ok/x", "::ffff:127.0.0.1", true},
		{"http://127.0.0.1:8080/ok/x", "127.0.0.2", false},  // a different address
		{"http://127.0.0.1:8080/other", "127.0.0.1", false}, // no pattern matches the URL
		{"http://127.0.0.1:9090/ok/x", "127.0.0.1", false},  // port not in the pattern
		{"http://localhost:8080/ok/x", "127.0.0.1", false},  // a host name never names an address
		{"http://example.com/ok/x", "127.0.0.1", false},     // allowed by http://**/** but not named
		{"http://[::1]:1234/x", "::1", true},
		{"http://[::1]:1234/x", "127.0.0.1", false},
		{"https://169.254.169.254/latest/meta-data", "169.254.169.254", true},
		{"https://169.254.169.254/other", "169.254.169.254", false},
		{"http://user@127.0.0.1:8080/ok/x", "127.0.0.1", false}, // refused URL
	}
	for _, tt := range tests {
		if got := a.NamesAddress(secURL(t, tt.url), netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("NamesAddress(%s, %s) = %v, want %v", tt.url, tt.ip, got, tt.want)
		}
	}
	if a.NamesAddress(secURL(t, "http://127.0.0.1:8080/ok/x"), netip.Addr{}) {
		t.Error("NamesAddress with an invalid address = true")
	}
}

func TestAllowCheckURL(t *testing.T) {
	bad := []string{
		"ftp://example.com/",
		"https://user:pw@example.com/",
		"https:///path",
		"https://example.com/a%2Fb",
		"https://example.com/a/../b",
		"https://example.com//b",
		"mailto:x@example.com",
		"http://127.1/",
		"http://example.com:0/",
	}
	for _, s := range bad {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if err := CheckURL(u); !errors.Is(err, ErrBadURL) {
			t.Errorf("CheckURL(%q) = %v, want ErrBadURL", s, err)
		}
	}
	if err := CheckURL(nil); !errors.Is(err, ErrBadURL) {
		t.Errorf("CheckURL(nil) = %v", err)
	}
	for _, s := range []string{"https://example.com", "http://10.0.0.1:8080/a/b/?q=1", "https://[::1]/x/"} {
		if err := CheckURL(secURL(t, s)); err != nil {
			t.Errorf("CheckURL(%q) = %v", s, err)
		}
	}
}

// FuzzAllowlist: parsing and matching never panic; whatever is allowed is a
// well-formed http(s) URL whose path has no dot or encoded-separator
// segments. (pathglob's own fuzz test checks the matcher.)
func FuzzAllowlist(f *testing.F) {
	f.Add("https://**.openai.com/v1/**", "https://api.openai.com/v1/chat")
	f.Add("http://127.0.0.1:*/**/x/*", "http://127.0.0.1:80/a/b/x/y")
	f.Add("*://*-a*.ex.com:8080/a*b/**", "http://x-ay.ex.com:8080/ab/%2e%2e")
	f.Add("https://[::1]/", "https://[::ffff:1.2.3.4]/")
	f.Fuzz(func(t *testing.T, pattern, rawURL string) {
		a, err := ParseAllowlist([]string{pattern})
		if err != nil {
			return
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			return
		}
		allowed := a.Allows(u)
		n, nerr := normalize(u)
		if !allowed {
			return
		}
		if nerr != nil {
			t.Fatalf("allowed a URL that normalize refuses: %v", nerr)
		}
		if u.User != nil || (n.scheme != "http" && n.scheme != "https") {
			t.Fatalf("allowed %q", rawURL)
		}
		for _, s := range n.segs {
			if s == "." || s == ".." || strings.ContainsAny(s, `/\`) {
				t.Fatalf("allowed %q with segment %q", rawURL, s)
			}
		}
	})
}
