package server_test

// The subscription APIs over HTTP: the JWKS endpoint, the grants that what
// a subscription watches needs, fork sources that name the reserved
// namespace, and a stream deleted and created again through the server.

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/subs"
	"github.com/golang-jwt/jwt/v5"
)

const subsSecret = "subs-test-secret-0123456789abcdef-0123"

// newSubsHarness is a server with subscriptions (development webhooks
// allowed) and, when a is not nil, access control.
func newSubsHarness(t *testing.T, a *auth.Authenticator) *harness {
	t.Helper()
	dir := t.TempDir()
	eng, err := engine.Open(dir, &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		t.Fatal(err)
	}
	m, err := subs.New(eng, subs.Options{DevWebhooks: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Subscriptions, cfg.Auth = m, a
	srv, err := server.New(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	tr := &http.Transport{}
	t.Cleanup(func() {
		srv.Shutdown()
		tr.CloseIdleConnections()
		ts.Close()
		m.Close()
		eng.Close()
	})
	return &harness{t: t, eng: eng, srv: srv, ts: ts, hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// subsAuth is access control with HS256 tokens signed by subsSecret.
func subsAuth(t *testing.T) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(auth.Config{HMACSecret: []byte(subsSecret)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// subsToken is a bearer token granting ds.
func subsToken(t *testing.T, ds map[string]any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "t", "exp": time.Now().Add(time.Hour).Unix(), "ds": ds}).
		SignedString([]byte(subsSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSubJWKSHeaders(t *testing.T) {
	for _, withAuth := range []bool{false, true} {
		var a *auth.Authenticator
		if withAuth {
			a = subsAuth(t)
		}
		h := newSubsHarness(t, a)
		r := h.do("GET", "__ds/jwks.json", nil)
		want(t, r, 200, "GET jwks.json")
		if ct, cc := r.get("Content-Type"), r.get("Cache-Control"); ct != "application/jwk-set+json" || cc != "public, max-age=300" {
			t.Fatalf("auth %v: Content-Type %q, Cache-Control %q", withAuth, ct, cc)
		}
		var set struct {
			Keys []struct{ Kty, Crv, Kid, Alg, X string }
		}
		if err := json.Unmarshal(r.body, &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Crv != "Ed25519" || !strings.HasPrefix(set.Keys[0].Kid, "ds_") {
			t.Fatalf("auth %v: JWKS %s (%v)", withAuth, r.body, err)
		}
		if r := h.do("HEAD", "__ds/jwks.json", nil); r.status != 200 || r.get("Content-Type") != "application/jwk-set+json" || r.get("Cache-Control") != "public, max-age=300" {
			t.Fatalf("auth %v: HEAD %d %v", withAuth, r.status, r.hdr)
		}
	}
}

// TestForkSourceValidated: Stream-Forked-From follows the rules of a stream
// path in a URL; a fork of a subscription's state stream (__ds/subs/...)
// would expose its configuration.
func TestForkSourceValidated(t *testing.T) {
	h := newSubsHarness(t, nil)
	h.create("src", "text/plain", []byte("data"))
	h.create("wake/a", "application/json", nil)
	want(t, h.do("PUT", "__ds/subscriptions/s1", `{"type":"pull-wake","pattern":"src","wake_stream":"wake/a"}`,
		"Content-Type", "application/json"), 201, "PUT subscription")
	for i, src := range []string{
		prefix + "__ds/subs/s1/1",
		"__ds/subs/s1/1",
		"/__ds/subs/s1/1",
		prefix + "%5F%5Fds/subs/s1/1",
		prefix + "__ds",
		prefix + "a%2Fsrc",
		prefix + "x/../src",
		prefix + "./src",
		prefix + "/src",
		prefix + "%2e%2e/src",
		"http://other.example" + prefix + "__ds/subs/s1/1",
		prefix + "%zz",
	} {
		name := "fork" + string(rune('a'+i))
		r := h.do("PUT", name, nil, "Stream-Forked-From", src) // (the source's content type)
		if r.status != 400 || len(r.body) == 0 {
			t.Errorf("fork of %q: %d %q, want 400 with a message", src, r.status, r.body)
		}
		if _, err := h.eng.Head(name); err == nil {
			t.Errorf("fork of %q was created", src)
		}
	}
	for i, src := range []string{prefix + "src", "src", "/src", "http://other.example" + prefix + "src"} {
		want(t, h.do("PUT", "ok"+string(rune('a'+i)), nil, "Content-Type", "text/plain", "Stream-Forked-From", src), 201, "fork of "+src)
	}
}

// TestSubGrants: with access control on, a subscription needs, beyond its
// own grant, append on its wake stream, read on each explicit stream, and
// a read grant covering all its pattern can match; adding streams needs
// read on them.
func TestSubGrants(t *testing.T) {
	h := newSubsHarness(t, subsAuth(t))
	ctl := []string{"__ds/subscriptions/*"}
	tok := func(ds map[string]any) string {
		ds["create"] = ctl
		return "Bearer " + subsToken(t, ds)
	}
	put := func(id, body, token string) *result {
		return h.do("PUT", "__ds/subscriptions/"+id, body, "Content-Type", "application/json", "Authorization", token)
	}
	refused := func(r *result, what, why string) {
		t.Helper()
		if r.status != 403 || !strings.Contains(string(r.body), why) || !strings.Contains(r.get("WWW-Authenticate"), "insufficient_scope") {
			t.Fatalf("%s: %d %s (WWW-Authenticate %q), want 403 naming %q", what, r.status, r.body, r.get("WWW-Authenticate"), why)
		}
	}
	pull := func(pattern string) string {
		return `{"type":"pull-wake","pattern":"` + pattern + `","wake_stream":"wake/a"}`
	}
	onlyCtl := tok(map[string]any{})
	wakeOnly := tok(map[string]any{"append": []string{"wake/**"}})
	logsOne := tok(map[string]any{"append": []string{"wake/**"}, "read": []string{"logs/*"}})
	logsAll := tok(map[string]any{"append": []string{"wake/**"}, "read": []string{"logs/**"}})
	secret := tok(map[string]any{"append": []string{"wake/**"}, "read": []string{"logs/**", "secret/*"}})

	refused(put("s1", pull("logs/**"), onlyCtl), "no append on the wake stream", "append on wake/a")
	refused(put("s1", pull("logs/**"), wakeOnly), "no read at all", "logs/**")
	refused(put("s1", pull("logs/**"), logsOne), "read logs/* for logs/**", "logs/**")
	refused(put("s1", pull("**"), logsAll), "read logs/** for **", "**")
	refused(put("s1", `{"type":"pull-wake","pattern":"logs/*","streams":["secret/x"],"wake_stream":"wake/a"}`, logsAll),
		"an explicit stream without read", "read on secret/x")
	refused(put("s1", `{"type":"webhook","pattern":"**","webhook":{"url":"http://127.0.0.1:9/hook"}}`, logsAll),
		"a webhook subscription's pattern", "**")

	want(t, put("s1", pull("logs/*"), logsOne), 201, "read logs/* for logs/*")
	want(t, put("s2", pull("logs/**"), logsAll), 201, "read logs/** for logs/**")
	want(t, put("s3", pull("logs/app-*/x/**"), logsAll), 201, "read logs/** for logs/app-*/x/**")
	want(t, put("s4", `{"type":"pull-wake","pattern":"logs/*","streams":["secret/x"],"wake_stream":"wake/a"}`, secret), 201, "explicit stream with read")
	want(t, put("s5", `{"type":"webhook","pattern":"logs/**","webhook":{"url":"http://127.0.0.1:9/hook"}}`, logsAll), 201, "webhook")
	// A token in the query string counts too.
	want(t, h.do("PUT", "__ds/subscriptions/s6?token="+strings.TrimPrefix(logsAll, "Bearer "), pull("logs/**"),
		"Content-Type", "application/json"), 201, "token in the query")
	// Re-confirming needs the same grants.
	refused(put("s2", pull("logs/**"), logsOne), "re-confirm without the grants", "logs/**")
	want(t, put("s2", pull("logs/**"), logsAll), 200, "re-confirm")

	add := func(token, streams string) *result {
		return h.do("POST", "__ds/subscriptions/s2/streams", `{"streams":`+streams+`}`, "Content-Type", "application/json", "Authorization", token)
	}
	refused(add(logsAll, `["logs/a","secret/y"]`), "adding a stream without read", "read on secret/y")
	want(t, add(secret, `["logs/a","secret/y"]`), 204, "adding streams with read")
}

// TestSubGrantsOpenMode: without access control a subscription may watch
// anything, as before.
func TestSubGrantsOpenMode(t *testing.T) {
	h := newSubsHarness(t, nil)
	want(t, h.do("PUT", "__ds/subscriptions/s1", `{"type":"pull-wake","pattern":"**","streams":["secret/x"],"wake_stream":"wake/a"}`,
		"Content-Type", "application/json"), 201, "PUT")
	want(t, h.do("POST", "__ds/subscriptions/s1/streams", `{"streams":["other/y"]}`, "Content-Type", "application/json"), 204, "POST streams")
}

// TestSubStreamRecreatedOverHTTP: a stream deleted and created again
// through the server, shorter than the cursor was, is pending from its
// start.
func TestSubStreamRecreatedOverHTTP(t *testing.T) {
	h := newSubsHarness(t, nil)
	h.create("wake/a", "application/json", nil)
	h.create("q/a", "text/plain", []byte("0123456789"))
	want(t, h.do("PUT", "__ds/subscriptions/s1", `{"type":"pull-wake","pattern":"q/*","wake_stream":"wake/a"}`,
		"Content-Type", "application/json"), 201, "PUT subscription")
	want(t, h.do("DELETE", "q/a", nil), 204, "DELETE")
	h.create("q/a", "text/plain", []byte("short"))
	r := h.do("POST", "__ds/subscriptions/s1/claim", `{"worker":"w"}`, "Content-Type", "application/json")
	want(t, r, 200, "claim")
	var cl struct {
		Streams []struct {
			Path        string
			AckedOffset string `json:"acked_offset"`
			TailOffset  string `json:"tail_offset"`
		}
	}
	json.Unmarshal(r.body, &cl)
	if len(cl.Streams) != 1 || cl.Streams[0].AckedOffset != engine.Offset(0).String() || cl.Streams[0].TailOffset != engine.Offset(5).String() {
		t.Fatalf("claim: %s, want q/a pending from its start", r.body)
	}
}
