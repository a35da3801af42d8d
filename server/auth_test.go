package server_test

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/testkit"
	"github.com/golang-jwt/jwt/v5"
)

const testHMACSecret = "0123456789abcdef0123456789abcdef-test"

// authKeys signs test tokens: HS256 with testHMACSecret, EdDSA with a key
// published in a JWKS file under kid "k1".
type authKeys struct {
	ed   ed5519Key
	jwks string // path of the JWKS file
}

type ed5519Key struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newAuthKeys(t *testing.T) *authKeys {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &authKeys{ed: ed5519Key{pub, priv}, jwks: filepath.Join(t.TempDir(), "jwks.json")}
	set, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(pub)}}})
	if err := os.WriteFile(k.jwks, set, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// hs signs claims with HS256 and secret.
func hs(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k *authKeys) ed25519(t *testing.T, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k.ed.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(ds map[string]any, mod ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "test", "aud": "durastream-test", "exp": time.Now().Add(time.Hour).Unix(), "ds": ds}
	for _, m := range mod {
		m(c)
	}
	return c
}

func newAuthHarness(t *testing.T, k *authKeys) (*harness, *auth.Authenticator) {
	t.Helper()
	cfg := auth.Config{HMACSecret: []byte(testHMACSecret), JWKSFile: k.jwks, Audience: "durastream-test"}
	if err := cfg.Anonymous.ParseGrantFlag("read:public/**"); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	sc := testConfig()
	sc.Auth = a
	return newHarnessWith(t, engine.DurabilityMemory, sc), a
}

var allOps = map[string]any{"read": []string{"**"}, "append": []string{"**"}, "create": []string{"**"}, "delete": []string{"**"}, "ops": true}

// TestAuthTable: every stream operation against every kind of credential,
// with the exact status, the challenge, the stream unchanged after every
// refused write, and nothing created by a refused create.
func TestAuthTable(t *testing.T) {
	k := newAuthKeys(t)
	h, _ := newAuthHarness(t, k)
	admin := "Bearer " + hs(t, testHMACSecret, claims(allOps))
	want(t, h.do("PUT", prefix+"chats/42", "hello", "Content-Type", "text/plain", "Authorization", admin), 201, "admin create")
	want(t, h.do("PUT", prefix+"public/news", "news", "Content-Type", "text/plain", "Authorization", admin), 201, "admin create public")

	type op struct {
		name, method, path, body string
		hdr                      []string
		op                       string // the grant it needs
	}
	ops := []op{
		{"read", "GET", "chats/42?offset=-1", "", nil, "read"},
		{"head", "HEAD", "chats/42", "", nil, "read"},
		{"live", "GET", "chats/42?offset=-1&live=long-poll", "", nil, "read"},
		{"append", "POST", "chats/42", " more", []string{"Content-Type", "text/plain"}, "append"},
		{"close", "POST", "chats/42", "", []string{"Stream-Closed", "true"}, "append"},
		{"create", "PUT", "chats/new", "", []string{"Content-Type", "text/plain"}, "create"},
		{"delete", "DELETE", "chats/42", "", nil, "delete"},
		{"read-missing", "GET", "chats/none?offset=-1", "", nil, "read"},
	}
	ed := func(kid string, c jwt.MapClaims) string { return "Bearer " + k.ed25519(t, kid, c) }
	grant := func(op string, paths ...string) map[string]any { return map[string]any{op: paths} }
	type cred struct {
		name   string
		header func(o op) string
		status int
		reason string
	}
	creds := []cred{
		{"none", func(op) string { return "" }, 401, ""},
		{"expired", func(o op) string {
			return "Bearer " + hs(t, testHMACSecret, claims(grant(o.op, "**"), func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
		}, 401, "token expired"},
		{"not yet valid", func(o op) string {
			return "Bearer " + hs(t, testHMACSecret, claims(grant(o.op, "**"), func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }))
		}, 401, "token not yet valid"},
		{"no exp", func(o op) string {
			return "Bearer " + hs(t, testHMACSecret, claims(grant(o.op, "**"), func(c jwt.MapClaims) { delete(c, "exp") }))
		}, 401, "token has no exp claim"},
		{"bad signature", func(o op) string {
			return "Bearer " + hs(t, testHMACSecret+"-other", claims(grant(o.op, "**")))
		}, 401, "bad signature"},
		{"ed25519 bad signature", func(o op) string {
			tok := k.ed25519(t, "k1", claims(grant(o.op, "**")))
			return "Bearer " + tok[:len(tok)-4] + "AAAA"
		}, 401, "bad signature"},
		{"wrong key id", func(o op) string { return ed("k2", claims(grant(o.op, "**"))) }, 401, "unknown key id"},
		{"wrong audience", func(o op) string {
			return "Bearer " + hs(t, testHMACSecret, claims(grant(o.op, "**"), func(c jwt.MapClaims) { c["aud"] = "another" }))
		}, 401, "wrong audience"},
		{"no audience", func(o op) string {
			return ed("k1", claims(grant(o.op, "**"), func(c jwt.MapClaims) { delete(c, "aud") }))
		}, 401, "token has no aud claim"},
		{"alg none", func(o op) string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(grant(o.op, "**"))).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return "Bearer " + s
		}, 401, "signing algorithm not accepted"},
		{"unknown ds key", func(o op) string {
			return "Bearer " + hs(t, testHMACSecret, claims(map[string]any{"reads": []string{"**"}}))
		}, 401, "malformed ds claim"},
		{"malformed", func(op) string { return "Bearer not.a.jwt" }, 401, "malformed token"},
		{"basic scheme", func(op) string { return "Basic dXNlcjpwYXNz" }, 401, "Authorization must be one Bearer token"},
		{"grant for another path", func(o op) string { return ed("k1", claims(grant(o.op, "chats/43", "chat/**"))) }, 403, ""},
		{"grant for a deeper path", func(o op) string { return ed("k1", claims(grant(o.op, "chats/42/*"))) }, 403, ""},
		{"grant for another op", func(o op) string {
			other := "read"
			if o.op == "read" {
				other = "append"
			}
			return ed("k1", claims(grant(other, "**")))
		}, 403, ""},
		{"granted (HS256)", func(o op) string { return "Bearer " + hs(t, testHMACSecret, claims(grant(o.op, "chats/*"))) }, 0, ""},
		{"granted (EdDSA)", func(o op) string { return ed("k1", claims(grant(o.op, "chats/**"))) }, 0, ""},
	}
	for ci, c := range creds {
		for _, o := range ops {
			path := o.path
			if o.method == "PUT" {
				// Each credential creates its own stream: a refused create
				// must leave nothing, whatever the order of the table.
				path = fmt.Sprintf("%s-%d", o.path, ci)
			}
			hdr := append([]string{}, o.hdr...)
			if v := c.header(o); v != "" {
				hdr = append(hdr, "Authorization", v)
			}
			if c.status == 0 && (o.method == "DELETE" || o.name == "close") {
				continue // granted writes that end the stream are checked below
			}
			r := h.do(o.method, prefix+path, o.body, hdr...)
			what := c.name + " / " + o.name
			if c.status == 0 {
				if r.status >= 400 && !(o.name == "read-missing" && r.status == 404) {
					t.Errorf("%s: status %d (%s)", what, r.status, trunc(r.body))
				}
				if o.method == "PUT" {
					want(t, h.do("HEAD", prefix+path, nil, "Authorization", admin), 200, what+": HEAD after the granted create")
				}
				if o.method == "GET" && r.status == 200 && !strings.HasPrefix(r.get("Cache-Control"), "private") {
					t.Errorf("%s: Cache-Control %q on a read that needed a token", what, r.get("Cache-Control"))
				}
				continue
			}
			if o.method == "PUT" {
				if hr := h.do("HEAD", prefix+path, nil, "Authorization", admin); hr.status != 404 {
					t.Errorf("%s: a refused create (status %d) left %s: HEAD %d, want 404", what, r.status, path, hr.status)
				}
			}
			if r.status != c.status {
				t.Errorf("%s: status %d, want %d (%s)", what, r.status, c.status, trunc(r.body))
				continue
			}
			ch := r.get("WWW-Authenticate")
			if !strings.HasPrefix(ch, "Bearer") || !strings.Contains(ch, c.reason) {
				t.Errorf("%s: WWW-Authenticate %q, want Bearer with %q", what, ch, c.reason)
			}
			if c.status == 403 && !strings.Contains(ch, "insufficient_scope") {
				t.Errorf("%s: WWW-Authenticate %q", what, ch)
			}
		}
	}
	// The refused writes left everything as it was (granted appends added " more").
	got := h.do("GET", prefix+"chats/42?offset=-1", nil, "Authorization", admin)
	want(t, got, 200, "admin read")
	if s := string(got.body); s != "hello more more" { // the two granted appends
		t.Errorf("chats/42 after the table: %q", s)
	}
	if got.get("Stream-Closed") == "true" {
		t.Error("a refused close closed the stream")
	}
	// Granted close and delete.
	want(t, h.do("POST", prefix+"chats/42", nil, "Stream-Closed", "true", "Authorization", "Bearer "+hs(t, testHMACSecret, claims(grant("append", "chats/42")))), 204, "granted close")
	want(t, h.do("DELETE", prefix+"chats/42", nil, "Authorization", ed("k1", claims(grant("delete", "chats/42")))), 204, "granted delete")
}

// TestAuthPaths: glob and path edge cases, for every operation, with the
// exact status: a malformed path is 400 and the reserved __ds namespace
// 404 whoever asks (no credential is looked at); a pattern's * does not
// reach a deeper path; 401 and 403 come before the 404 of a missing
// stream; and nothing refused changed or created anything.
func TestAuthPaths(t *testing.T) {
	k := newAuthKeys(t)
	h, _ := newAuthHarness(t, k)
	admin := "Bearer " + hs(t, testHMACSecret, claims(allOps))
	want(t, h.do("PUT", prefix+"a/b", "x", "Content-Type", "text/plain", "Authorization", admin), 201, "create a/b")
	// Every operation on a/*: whatever is refused below is refused for the path.
	star := "Bearer " + hs(t, testHMACSecret, claims(map[string]any{
		"read": []string{"a/*"}, "append": []string{"a/*"}, "create": []string{"a/*"}, "delete": []string{"a/*"}}))
	methods := []string{"GET", "HEAD", "PUT", "POST", "DELETE"}
	all := func(status int) map[string]int {
		m := map[string]int{}
		for _, meth := range methods {
			m[meth] = status
		}
		return m
	}
	for _, c := range []struct {
		path   string
		hdr    string
		status map[string]int
	}{
		{"a/b", star, map[string]int{"GET": 200, "HEAD": 200}}, // (writes granted: not run, they would change a/b)
		{"a/..", star, all(400)},
		{"a/../a/b", star, all(400)},
		{"a/%2E%2E/a/b", star, all(400)},
		{"a/./b", star, all(400)},
		{"a//b", star, all(400)},
		{"a%2Fb", star, all(400)},
		{"a%2fb", star, all(400)},
		{"a/b%2Fc", star, all(400)},
		{"a/b/c", star, all(403)},
		{"a", star, all(403)},
		{"__ds/x", admin, all(404)},
		{"__ds/x", "", all(404)},
		{"__ds/x", "Bearer junk", all(404)},
		{"__ds", admin, all(404)},
		{"%5F%5Fds/x", admin, all(404)},
		{"a/missing", "", all(401)},   // no token: 401 before 404
		{"b/missing", star, all(403)}, // no grant: 403 before 404
		{"public/missing", "", map[string]int{"GET": 404, "HEAD": 404, "PUT": 401, "POST": 401, "DELETE": 401}}, // anonymous may read only
		{"public/x", "Bearer junk", all(401)}, // a bad token is refused even where anonymous may read
	} {
		for _, meth := range methods {
			st, ok := c.status[meth]
			if !ok {
				continue
			}
			hdr := []string{"Content-Type", "text/plain"}
			if c.hdr != "" {
				hdr = append(hdr, "Authorization", c.hdr)
			}
			q, body := "", any(nil)
			switch meth {
			case "GET":
				q = "?offset=-1"
			case "POST":
				body = "y"
			}
			if r := h.do(meth, prefix+c.path+q, body, hdr...); r.status != st {
				t.Errorf("%s %s (%s): %d, want %d (%s)", meth, c.path, authName(c.hdr, admin, star), r.status, st, trunc(r.body))
			}
		}
	}
	// Nothing refused created, appended to or deleted anything.
	for _, p := range []string{"a/b/c", "a", "b/missing", "a/missing", "public/missing", "public/x", "__ds/x"} {
		if r := h.do("HEAD", prefix+p, nil, "Authorization", admin); r.status != 404 {
			t.Errorf("HEAD %s after the refusals: %d, want 404", p, r.status)
		}
	}
	if r := h.do("GET", prefix+"a/b?offset=-1", nil, "Authorization", admin); r.status != 200 || string(r.body) != "x" {
		t.Errorf("a/b after the refusals: %d %q, want 200 \"x\"", r.status, r.body)
	}
	// A fork needs create on the new stream and read on its source.
	createOnly := "Bearer " + hs(t, testHMACSecret, claims(map[string]any{"create": []string{"f/*"}}))
	want(t, h.do("PUT", prefix+"f/1", nil, "Content-Type", "text/plain", "Stream-Forked-From", prefix+"a/b", "Authorization", createOnly), 403, "fork without read on the source")
	want(t, h.do("HEAD", prefix+"f/1", nil, "Authorization", admin), 404, "the refused fork created nothing")
	both := "Bearer " + hs(t, testHMACSecret, claims(map[string]any{"create": []string{"f/*"}, "read": []string{"a/b"}}))
	want(t, h.do("PUT", prefix+"f/1", nil, "Content-Type", "text/plain", "Stream-Forked-From", prefix+"a/b", "Authorization", both), 201, "fork with read on the source")
}

// authName names a credential in a failure message.
func authName(hdr, admin, star string) string {
	switch hdr {
	case "":
		return "no token"
	case admin:
		return "admin"
	case star:
		return "a/* token"
	}
	return hdr
}

// TestAuthBrowserAndCache: ?token=, signed read URLs, public streams'
// cache headers, and /health and /metrics.
func TestAuthBrowserAndCache(t *testing.T) {
	k := newAuthKeys(t)
	h, a := newAuthHarness(t, k)
	admin := hs(t, testHMACSecret, claims(allOps))
	want(t, h.do("PUT", prefix+"chats/1", "hi", "Content-Type", "text/plain", "Authorization", "Bearer "+admin), 201, "create")
	want(t, h.do("PUT", prefix+"public/1", "pub", "Content-Type", "text/plain", "Authorization", "Bearer "+admin), 201, "create")

	reader := hs(t, testHMACSecret, claims(map[string]any{"read": []string{"chats/1"}}))
	r := h.do("GET", prefix+"chats/1?offset=-1&token="+reader, nil)
	want(t, r, 200, "?token=")
	if cc := r.get("Cache-Control"); !strings.HasPrefix(cc, "private") {
		t.Errorf("token read Cache-Control %q", cc)
	}
	want(t, h.do("GET", prefix+"chats/1?offset=-1&token="+reader+"&token="+reader, nil), 401, "two tokens")

	r = h.do("GET", prefix+"public/1?offset=-1", nil)
	want(t, r, 200, "anonymous read of a public stream")
	if cc := r.get("Cache-Control"); !strings.HasPrefix(cc, "public") {
		t.Errorf("public read Cache-Control %q", cc)
	}
	want(t, h.do("POST", prefix+"public/1", "x", "Content-Type", "text/plain"), 401, "anonymous append to a public stream")

	// Signed URLs: the query that SignReadURL makes.
	q, err := a.SignReadURL("chats/1", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r = h.do("GET", prefix+"chats/1?offset=-1&"+q, nil)
	want(t, r, 200, "signed URL")
	if string(r.body) != "hi" || !strings.HasPrefix(r.get("Cache-Control"), "private") {
		t.Errorf("signed read: %q, Cache-Control %q", r.body, r.get("Cache-Control"))
	}
	want(t, h.do("GET", prefix+"chats/1?offset=-1&live=long-poll&"+q, nil), 200, "signed URL, long-poll")
	want(t, h.do("GET", prefix+"chats/2?offset=-1&"+q, nil), 401, "signed URL on another path")
	want(t, h.do("POST", prefix+"chats/1?"+q, "x", "Content-Type", "text/plain"), 403, "signed URL for an append")
	old, _ := a.SignReadURL("chats/1", time.Now().Add(-time.Second))
	r = h.do("GET", prefix+"chats/1?offset=-1&"+old, nil)
	want(t, r, 401, "expired signed URL")
	if !strings.Contains(r.get("WWW-Authenticate"), "signed URL expired") {
		t.Errorf("expired signed URL challenge %q", r.get("WWW-Authenticate"))
	}
	tampered := strings.Replace(q, "expires=", "expires=1", 1)
	want(t, h.do("GET", prefix+"chats/1?offset=-1&"+tampered, nil), 401, "tampered expiry")

	// /health and /metrics need "ops" on the main listener.
	want(t, h.do("GET", "/health", nil), 401, "health without a token")
	want(t, h.do("GET", "/metrics", nil, "Authorization", "Bearer "+reader), 403, "metrics without ops")
	want(t, h.do("GET", "/metrics", nil, "Authorization", "Bearer "+admin), 200, "metrics with ops")
}

// TestAuthDurableFetch: with access control on, the durablefetch door
// needs a token granting "fetch" on the upstream host/path in
// Durable-Fetch-Token, which never goes upstream; /in-progress and /delete
// too.
func TestAuthDurableFetch(t *testing.T) {
	a, err := auth.New(auth.Config{HMACSecret: []byte(testHMACSecret)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	up := newDFUpstream(t, false, 3, nil)
	h := newDFHarness(t, dfOptions{config: func(c *server.DurableFetchConfig) { c.Auth = a }})
	host := strings.TrimPrefix(up.ts.URL, "http://")
	tok := func(paths ...string) http.Header {
		return http.Header{"Durable-Fetch-Token": {hs(t, testHMACSecret, claims(map[string]any{"fetch": paths}, func(c jwt.MapClaims) { delete(c, "aud") }))}}
	}
	for _, c := range []struct {
		name   string
		hdr    http.Header
		status int
	}{
		{"no token", nil, 401},
		{"bad token", http.Header{"Durable-Fetch-Token": {"junk"}}, 401},
		{"token in Authorization only", http.Header{"Authorization": tok(host + "/**")["Durable-Fetch-Token"]}, 401},
		{"grant for another host", tok("example.com/**"), 403},
		{"grant for another path", tok(host + "/other/*"), 403},
		{"granted", tok(host + "/sse/*"), 200},
	} {
		resp := h.do(nil, "GET", h.url(up, "/sse/1"), nil, c.hdr)
		io.ReadAll(resp.Body)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.status)
		}
		if c.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := up.calls.Load(); n != 1 {
		t.Errorf("the upstream was called %d times; refused requests must not reach it", n)
	}
	if req, _ := up.lastRequest(); req.Header.Get("Durable-Fetch-Token") != "" {
		t.Error("the token went upstream")
	}
	body, _ := json.Marshal(map[string]string{"url": up.ts.URL + "/sse/1"})
	if st, _ := h.post("/in-progress", string(body)); st != 401 {
		t.Errorf("/in-progress without a token: %d", st)
	}
	resp := h.do(nil, "POST", h.ts.URL+"/delete", body, tok(host+"/sse/*"))
	io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Errorf("/delete with a token: %d", resp.StatusCode)
	}
}

// TestAuthIssuer: with an issuer configured, a token from another issuer,
// or with none, is a 401 that says which, for HS256 and JWKS tokens alike,
// and creates nothing; the configured issuer's token is accepted.
func TestAuthIssuer(t *testing.T) {
	k := newAuthKeys(t)
	const issuer = "https://issuer.test"
	a, err := auth.New(auth.Config{HMACSecret: []byte(testHMACSecret), JWKSFile: k.jwks, Issuer: issuer, Audience: "durastream-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	sc := testConfig()
	sc.Auth = a
	h := newHarnessWith(t, engine.DurabilityMemory, sc)
	iss := func(v any) func(jwt.MapClaims) {
		return func(c jwt.MapClaims) {
			if v == nil {
				delete(c, "iss")
			} else {
				c["iss"] = v
			}
		}
	}
	ds := map[string]any{"read": []string{"s/*"}, "create": []string{"s/*"}}
	reader := "Bearer " + hs(t, testHMACSecret, claims(ds, iss(issuer)))
	signers := []struct {
		alg  string
		sign func(jwt.MapClaims) string
	}{
		{"HS256", func(c jwt.MapClaims) string { return hs(t, testHMACSecret, c) }},
		{"EdDSA", func(c jwt.MapClaims) string { return k.ed25519(t, "k1", c) }},
	}
	n := 0
	for _, s := range signers {
		for _, c := range []struct {
			name   string
			mod    func(jwt.MapClaims)
			status int
			reason string
		}{
			{"another issuer", iss("https://other.test"), 401, "wrong issuer"},
			{"issuer in another case", iss("https://ISSUER.test"), 401, "wrong issuer"},
			{"issuer with a trailing slash", iss(issuer + "/"), 401, "wrong issuer"},
			{"no iss", iss(nil), 401, "token has no iss claim"},
			{"empty iss", iss(""), 401, "token has no iss claim"},
			{"iss not a string", iss(42), 401, "malformed token"},
			{"no iss, expired", func(c jwt.MapClaims) { delete(c, "iss"); c["exp"] = time.Now().Add(-time.Hour).Unix() }, 401, "token expired"},
			{"no iss, no exp", func(c jwt.MapClaims) { delete(c, "iss"); delete(c, "exp") }, 401, "token has no exp claim"},
			{"right iss, no aud", func(c jwt.MapClaims) { c["iss"] = issuer; delete(c, "aud") }, 401, "token has no aud claim"},
			{"right iss", iss(issuer), 201, ""},
		} {
			n++
			what, path := s.alg+" / "+c.name, fmt.Sprintf("s/%d", n)
			r := h.do("PUT", prefix+path, nil, "Content-Type", "text/plain", "Authorization", "Bearer "+s.sign(claims(ds, c.mod)))
			if r.status != c.status {
				t.Errorf("%s: %d, want %d (%s)", what, r.status, c.status, trunc(r.body))
			}
			if c.status == 401 {
				if ch := r.get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, `error_description="`+c.reason+`"`) {
					t.Errorf("%s: WWW-Authenticate %q, want invalid_token with %q", what, ch, c.reason)
				}
				if !strings.Contains(string(r.body), c.reason) {
					t.Errorf("%s: body %q lacks %q", what, r.body, c.reason)
				}
				want(t, h.do("HEAD", prefix+path, nil, "Authorization", reader), 404, what+": the refused create created nothing")
			}
		}
	}
}

// TestAuthTokenNotLogged: a credential in the query string (?token=)
// never reaches the server's logs. Nothing logs a query string today; this
// pins it on the requests that do log: a body that arrives too slowly
// (408) and a failed request (5xx), with net/http's own error log in the
// same buffer, as the binary has it. The log lines must be there, or the
// test proves nothing.
func TestAuthTokenNotLogged(t *testing.T) {
	logs := &testkit.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := auth.New(auth.Config{HMACSecret: []byte(testHMACSecret), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Auth, cfg.Logger = a, logger
	cfg.BodyReadTimeout, cfg.BodyMinRate = 300*time.Millisecond, -1
	srv, err := server.New(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	ts.Start()
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(func() {
		srv.Shutdown()
		tr.CloseIdleConnections()
		ts.Close()
		eng.Close() // (closed below already)
	})
	h := &harness{t: t, eng: eng, srv: srv, ts: ts, hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}}

	tok := hs(t, testHMACSecret, claims(map[string]any{"read": []string{"logs/**"}, "append": []string{"logs/**"}, "create": []string{"logs/**"}}))
	secret := tok[strings.LastIndexByte(tok, '.')+1:] // the signature: what makes it a credential
	want(t, h.do("PUT", prefix+"logs/a", "x", "Content-Type", "text/plain", "Authorization", "Bearer "+tok), 201, "create")
	want(t, h.do("GET", prefix+"logs/a?offset=-1&token="+tok, nil), 200, "read with ?token=")
	want(t, h.do("GET", prefix+"logs/a?offset=-1&token="+tok+"x", nil), 401, "read with a bad ?token=")

	// A body that stops arriving: 408, logged.
	c, err := net.Dial("tcp", addrOf(h))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST "+prefix+"logs/a?token="+tok+" HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nx")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("slow body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow body: %d, want 408", resp.StatusCode)
	}

	// A request the server cannot carry out: 503, logged.
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"POST", "PUT"} {
		if r := h.do(m, prefix+"logs/b?token="+tok, "y", "Content-Type", "text/plain"); r.status < 500 {
			t.Fatalf("%s on a closed engine: %d, want 5xx (%s)", m, r.status, trunc(r.body))
		}
	}

	out := logs.String()
	for _, line := range []string{"request body too slow", "request failed"} {
		if !strings.Contains(out, line) {
			t.Errorf("no %q log line: the test shows nothing without it\n%s", line, out)
		}
	}
	if strings.Contains(out, secret) || strings.Contains(out, "token=") {
		t.Errorf("a ?token= credential was logged:\n%s", out)
	}
}
