package server_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
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
// with the exact status, the challenge, and the stream unchanged after
// every refused write.
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
	for _, c := range creds {
		for _, o := range ops {
			hdr := append([]string{}, o.hdr...)
			if v := c.header(o); v != "" {
				hdr = append(hdr, "Authorization", v)
			}
			if c.status == 0 && (o.method == "DELETE" || o.name == "close") {
				continue // granted writes that end the stream are checked below
			}
			r := h.do(o.method, prefix+o.path, o.body, hdr...)
			what := c.name + " / " + o.name
			if c.status == 0 {
				if r.status >= 400 && !(o.name == "read-missing" && r.status == 404) {
					t.Errorf("%s: status %d (%s)", what, r.status, trunc(r.body))
				}
				if o.method == "GET" && r.status == 200 && !strings.HasPrefix(r.get("Cache-Control"), "private") {
					t.Errorf("%s: Cache-Control %q on a read that needed a token", what, r.get("Cache-Control"))
				}
				continue
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
	want(t, h.do("DELETE", prefix+"chats/new", nil, "Authorization", admin), 204, "chats/new was created by the granted create")
	// Granted close and delete.
	want(t, h.do("POST", prefix+"chats/42", nil, "Stream-Closed", "true", "Authorization", "Bearer "+hs(t, testHMACSecret, claims(grant("append", "chats/42")))), 204, "granted close")
	want(t, h.do("DELETE", prefix+"chats/42", nil, "Authorization", ed("k1", claims(grant("delete", "chats/42")))), 204, "granted delete")
}

// TestAuthPaths: glob and path edge cases.
func TestAuthPaths(t *testing.T) {
	k := newAuthKeys(t)
	h, _ := newAuthHarness(t, k)
	admin := "Bearer " + hs(t, testHMACSecret, claims(allOps))
	want(t, h.do("PUT", prefix+"a/b", "x", "Content-Type", "text/plain", "Authorization", admin), 201, "create a/b")
	star := "Bearer " + hs(t, testHMACSecret, claims(map[string]any{"read": []string{"a/*"}}))
	for _, c := range []struct {
		path   string
		hdr    string
		status int
	}{
		{"a/b?offset=-1", star, 200},
		{"a/..?offset=-1", star, 400},
		{"a/../a/b?offset=-1", star, 400},
		{"a%2Fb?offset=-1", star, 400},
		{"a/b%2Fc?offset=-1", star, 400},
		{"a/b/c?offset=-1", star, 403},
		{"__ds/x?offset=-1", admin, 404},
		{"__ds/x?offset=-1", "", 404},
		{"a/missing?offset=-1", "", 401},           // no token: 401 before 404
		{"b/missing?offset=-1", star, 403},         // no grant: 403 before 404
		{"public/missing?offset=-1", "", 404},      // anonymous read grant: the stream's absence is public
		{"public/x?offset=-1", "Bearer junk", 401}, // a bad token is refused even where anonymous may read
	} {
		var hdr []string
		if c.hdr != "" {
			hdr = []string{"Authorization", c.hdr}
		}
		if r := h.do("GET", prefix+c.path, nil, hdr...); r.status != c.status {
			t.Errorf("GET %s: %d, want %d (%s)", c.path, r.status, c.status, trunc(r.body))
		}
	}
	// A fork needs create on the new stream and read on its source.
	createOnly := "Bearer " + hs(t, testHMACSecret, claims(map[string]any{"create": []string{"f/*"}}))
	want(t, h.do("PUT", prefix+"f/1", nil, "Content-Type", "text/plain", "Stream-Forked-From", prefix+"a/b", "Authorization", createOnly), 403, "fork without read on the source")
	want(t, h.do("HEAD", prefix+"f/1", nil, "Authorization", admin), 404, "the refused fork created nothing")
	both := "Bearer " + hs(t, testHMACSecret, claims(map[string]any{"create": []string{"f/*"}, "read": []string{"a/b"}}))
	want(t, h.do("PUT", prefix+"f/1", nil, "Content-Type", "text/plain", "Stream-Forked-From", prefix+"a/b", "Authorization", both), 201, "fork with read on the source")
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
