package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/pathglob"
	"github.com/golang-jwt/jwt/v5"
)

type edKey struct {
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newEdKey(t *testing.T, kid string) edKey {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return edKey{kid, priv, pub}
}

func (k edKey) jwk() map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": k.kid, "alg": "EdDSA", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(k.pub)}
}

func (k edKey) sign(t *testing.T, ds map[string]any) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "ds": ds})
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwksServer serves a key set the test changes, or fails.
type jwksServer struct {
	mu   sync.Mutex
	keys []edKey
	down bool
	srv  *httptest.Server
}

func newJWKSServer(keys ...edKey) *jwksServer {
	j := &jwksServer{keys: keys}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var set []any
		for _, k := range j.keys {
			set = append(set, k.jwk())
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	return j
}

func (j *jwksServer) set(down bool, keys ...edKey) {
	j.mu.Lock()
	j.keys, j.down = keys, down
	j.mu.Unlock()
}

// syncBuf is a log destination the refresh goroutine writes to.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestJWKSRotation: a key added to the set is accepted after a refresh, a
// removed one stops being accepted (even though a token signed with it was
// cached), and an unreachable JWKS URL keeps the last good set and logs.
func TestJWKSRotation(t *testing.T) {
	a1, b := newEdKey(t, "a1"), newEdKey(t, "b")
	js := newJWKSServer(a1)
	defer js.srv.Close()
	logs := &syncBuf{}
	au, err := New(Config{JWKSURL: js.srv.URL, JWKSRefresh: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer au.Close()
	ds := map[string]any{"read": []string{"x"}}
	ta, tb := a1.sign(t, ds), b.sign(t, ds)
	if _, err := au.Verify(ta); err != nil {
		t.Fatalf("key a1: %v", err)
	}
	if _, err := au.Verify(tb); err != errUnknownKey {
		t.Fatalf("key b before it is published: %v", err)
	}
	js.set(false, a1, b)
	eventually(t, "key b accepted after a refresh", func() bool { _, err := au.Verify(tb); return err == nil })
	js.set(false, b)
	eventually(t, "key a1 refused after its removal", func() bool { _, err := au.Verify(ta); return err == errUnknownKey })

	js.set(true, b)
	eventually(t, "the failed refresh is logged", func() bool { return strings.Contains(logs.String(), "JWKS refresh failed") })
	if _, err := au.Verify(tb); err != nil {
		t.Fatalf("the last good set was dropped when the URL failed: %v", err)
	}
	js.srv.Close() // unreachable
	time.Sleep(150 * time.Millisecond)
	if _, err := au.Verify(b.sign(t, ds)); err != nil {
		t.Fatalf("unreachable JWKS: the last good set is not kept: %v", err)
	}
}

func TestJWKSStartFails(t *testing.T) {
	js := newJWKSServer()
	js.set(true)
	defer js.srv.Close()
	if _, err := New(Config{JWKSURL: js.srv.URL}); err == nil {
		t.Fatal("New succeeded without a key set")
	}
}

// TestVerifyCache: a verified token is answered from the cache; an
// expired one is not.
func TestVerifyCache(t *testing.T) {
	now := time.Now()
	secret := []byte(strings.Repeat("s", 32))
	au, err := New(Config{HMACSecret: secret, Leeway: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": now.Add(time.Minute).Unix(),
		"ds": map[string]any{"append": []string{"logs/**"}}}).SignedString(secret)
	g, err := au.Verify(tok)
	if err != nil || !g.Allows(OpAppend, "logs/a/b") || g.Allows(OpRead, "logs/a") {
		t.Fatalf("verify: %v", err)
	}
	if c, ok := au.cache.Load(tok); !ok || c.grants != g {
		t.Fatal("not cached")
	}
	g2, _ := au.Verify(tok)
	if g2 != g {
		t.Fatal("a cached token was verified again")
	}
	now = now.Add(2 * time.Minute)
	if _, err := au.Verify(tok); err != errExpired {
		t.Fatalf("after exp: %v", err)
	}
}

func TestGrants(t *testing.T) {
	g, err := ParseClaim([]byte(`{"read":["chats/*","/pub/**"],"create":["__ds/x/*"],"delete":["**"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op   Op
		path string
		want bool
	}{
		{OpRead, "chats/1", true}, {OpRead, "chats/1/2", false}, {OpRead, "chats", false},
		{OpRead, "pub", true}, {OpRead, "pub/a/b", true}, {OpAppend, "chats/1", false},
		{OpDelete, "anything/at/all", true}, {OpDelete, "__ds/x/1", false},
		{OpCreate, "__ds/x/1", true},
	} {
		if got := g.Allows(c.op, c.path); got != c.want {
			t.Errorf("%s %s: %v", c.op, c.path, got)
		}
	}
	for _, bad := range []string{`{"read":["a/../b"]}`, `{"read":["a//b"]}`, `{"read":["a%2Fb"]}`, `{"reed":["a"]}`, `{"read":"a"}`, `{"read":["a**"]}`} {
		if _, err := ParseClaim([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	var c Claim
	for _, bad := range []string{"read", "write:a", "read:", "read:a/../b"} {
		if err := c.ParseGrantFlag(bad); err == nil {
			t.Errorf("grant flag %q accepted", bad)
		}
	}
}

// FuzzToken: token verification and claim parsing never panic, and only
// a token signed with the secret verifies.
func FuzzToken(f *testing.F) {
	secret := []byte(strings.Repeat("k", 32))
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": 4102444800, "ds": map[string]any{"read": []string{"a/*"}}}).SignedString(secret)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	au, err := New(Config{HMACSecret: secret})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		g, err := au.Verify(tok)
		// The signature covers header.payload: nothing else verifies.
		if i := strings.LastIndexByte(tok, '.'); err == nil && (i < 0 || !strings.HasPrefix(good, tok[:i+1])) {
			t.Fatalf("forged token verified: %q", tok)
		}
		_ = g.Allows(OpRead, "a/b")
	})
}

// FuzzGrants: claim parsing and matching never panic; a granted path is
// never in __ds unless a pattern spells __ds out.
func FuzzGrants(f *testing.F) {
	f.Add(`{"read":["a/*","**"],"append":["x/**/y"]}`, "a/b")
	f.Add(`{"delete":["**"]}`, "__ds/x")
	f.Fuzz(func(t *testing.T, claim, path string) {
		g, err := ParseClaim([]byte(claim))
		if err != nil {
			return
		}
		for op := range numOps {
			if g.Allows(op, path) && (path == "__ds" || strings.HasPrefix(path, "__ds/")) && !strings.Contains(claim, "__ds") {
				t.Fatalf("%s granted on %q by %s", op, path, claim)
			}
		}
	})
}

// BenchmarkVerify: a cached token (the common case: a client sends the
// same token on every request) against a signature check each time.
func BenchmarkVerify(b *testing.B) {
	secret := []byte(strings.Repeat("k", 32))
	mk := func(i int) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "n": i,
			"ds": map[string]any{"append": []string{"logs/**"}}}).SignedString(secret)
		return s
	}
	au, err := New(Config{HMACSecret: secret})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cached", func(b *testing.B) {
		tok := mk(0)
		for b.Loop() {
			if _, err := au.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached-hs256", func(b *testing.B) {
		toks := make([]string, 4096)
		for i := range toks {
			toks[i] = mk(i + 1)
		}
		i := 0
		for b.Loop() {
			au.cache.Clear()
			if _, err := au.Verify(toks[i%len(toks)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// hangingJWKS is a JWKS URL that serves keys until hang is set, and then
// accepts each request and never answers it: no headers at all, or (body)
// headers and the start of a body.
func hangingJWKS(t *testing.T, body bool, keys ...edKey) (srv *httptest.Server, hang *atomic.Bool) {
	hang = new(atomic.Bool)
	release := make(chan struct{})
	good := newJWKSServer(keys...)
	t.Cleanup(good.srv.Close)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hang.Load() {
			good.srv.Config.Handler.ServeHTTP(w, r)
			return
		}
		if body {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, `{"keys": [`)
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // (runs first)
	return srv, hang
}

// TestJWKSHangs: a JWKS URL that never answers, or stops halfway through
// the body, holds nothing up longer than JWKSTimeout: the start fails in
// time, a refresh gives up and keeps the last good set, a token naming an
// unknown key is refused in time, and Close does not wait for the fetch.
func TestJWKSHangs(t *testing.T) {
	const timeout = 500 * time.Millisecond
	for _, body := range []bool{false, true} {
		name := "no answer"
		if body {
			name = "body stops"
		}
		t.Run(name+"/start", func(t *testing.T) {
			srv, hang := hangingJWKS(t, body)
			hang.Store(true)
			start := time.Now()
			_, err := New(Config{JWKSURL: srv.URL, JWKSTimeout: timeout})
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "JWKS") {
				t.Fatalf("New with a JWKS URL that hangs: %v", err)
			}
			if took < timeout || took > timeout+2*time.Second {
				t.Errorf("New gave up after %v; JWKSTimeout is %v", took, timeout)
			}
		})
		t.Run(name+"/refresh", func(t *testing.T) {
			k, other := newEdKey(t, "k"), newEdKey(t, "other")
			srv, hang := hangingJWKS(t, body, k)
			logs := &syncBuf{}
			au, err := New(Config{JWKSURL: srv.URL, JWKSTimeout: timeout, JWKSRefresh: time.Hour,
				Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer au.Close()
			var n atomic.Int64
			token := func(k edKey) string { // a new one each time: not from the cache
				return k.sign(t, map[string]any{"read": []string{fmt.Sprint("x/", n.Add(1))}})
			}
			if _, err := au.Verify(token(k)); err != nil {
				t.Fatalf("before the hang: %v", err)
			}
			hang.Store(true)
			// A token naming an unknown key id asks for a refresh (the last
			// one is old enough) and waits for it, but not past JWKSTimeout.
			ask := func() error {
				au.keys.last.Store(time.Now().Add(-time.Minute).UnixNano())
				_, err := au.Verify(token(other))
				return err
			}
			start := time.Now()
			if err := ask(); err != errUnknownKey {
				t.Fatalf("unknown key id during the hang: %v", err)
			}
			if took := time.Since(start); took > timeout+time.Second {
				t.Errorf("a token with an unknown key id waited %v; JWKSTimeout is %v", took, timeout)
			}
			eventually(t, "the hanging refresh gives up and says so", func() bool {
				return strings.Contains(logs.String(), "JWKS refresh failed")
			})
			if took := time.Since(start); took < timeout {
				t.Errorf("the refresh failed after %v, before JWKSTimeout (%v): it did not hang\n%s", took, timeout, logs)
			}
			// The last good set is kept, and answers at once while another
			// refresh hangs.
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Go(func() { ask() })
			time.Sleep(timeout / 4)
			start = time.Now()
			if _, err := au.Verify(token(k)); err != nil {
				t.Fatalf("a key of the last good set after a refresh hung: %v", err)
			}
			if took := time.Since(start); took > timeout/2 {
				t.Errorf("a known key waited %v for a hanging refresh", took)
			}
			// Close does not wait for the hanging fetch.
			wg.Go(func() { ask() })
			time.Sleep(timeout / 4)
			start = time.Now()
			au.Close()
			if took := time.Since(start); took > timeout/2 {
				t.Errorf("Close took %v during a hanging refresh", took)
			}
		})
	}
}

// Grants.Covers: a grant for every path a pattern can match, with the
// reserved __ds namespace covered only when spelled out.
func TestGrantsCovers(t *testing.T) {
	g, err := Claim{Read: []string{"logs/**", "chat/*/msgs", "**"}, Append: []string{"__ds/**"}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op      Op
		pattern string
		want    bool
	}{
		{OpRead, "logs/**", true},
		{OpRead, "logs/*/x", true},
		{OpRead, "chat/*/msgs", true},
		{OpRead, "chat/**", true},       // by **
		{OpRead, "__ds/subs/*", false},  // ** does not spell __ds out
		{OpAppend, "__ds/subs/*", true}, // __ds/** does
		{OpAppend, "logs/*", false},     // another op
		{OpDelete, "logs/*", false},
	} {
		q, err := pathglob.Parse(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Covers(c.op, q); got != c.want {
			t.Errorf("%s %s: covered %v, want %v", c.op, c.pattern, got, c.want)
		}
	}
	narrow, _ := Claim{Read: []string{"logs/*"}}.Compile()
	q, _ := pathglob.Parse("logs/**")
	if narrow.Covers(OpRead, q) {
		t.Error("logs/* covers logs/**")
	}
	var none *Grants
	if none.Covers(OpRead, q) {
		t.Error("nil grants cover something")
	}
}

// Authenticator.Covers counts the anonymous grants (a subscription on
// public/* needs no token where anyone may read public/**), then the
// request's token; a malformed or missing credential covers nothing more.
func TestAuthenticatorCovers(t *testing.T) {
	secret := bytes.Repeat([]byte("k"), 32)
	au, err := New(Config{HMACSecret: secret, Anonymous: Claim{Read: []string{"public/**"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer au.Close()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(),
		"ds": map[string]any{"read": []string{"logs/**"}}}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		pattern, auth string
		want          bool
	}{
		{"public/*", "", true},
		{"logs/*", "", false},
		{"logs/*", "Bearer " + tok, true},
		{"public/**", "Bearer " + tok, true},
		{"other/*", "Bearer " + tok, false},
		{"logs/*", "Bearer not-a-token", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		q, _ := pathglob.Parse(c.pattern)
		if got := au.Covers(r, OpRead, q); got != c.want {
			t.Errorf("%s with %q: covered %v, want %v", c.pattern, c.auth, got, c.want)
		}
	}
}
