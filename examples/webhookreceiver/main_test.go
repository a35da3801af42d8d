package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/subs"
)

// TestVerifyRealDelivery: a delivery from a real server verifies with the
// server's JWKS; a changed body, an old timestamp or an unknown kid do not.
func TestVerifyRealDelivery(t *testing.T) {
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	m, err := subs.New(eng, subs.Options{DevWebhooks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	srv, err := server.New(eng, server.Config{Subscriptions: m})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	type got struct {
		header string
		body   []byte
	}
	ch := make(chan got, 4)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- got{r.Header.Get("Webhook-Signature"), b}
		io.WriteString(w, `{"done":true}`)
	}))
	defer rc.Close()
	put := func(path, ct, body string) {
		req, _ := http.NewRequest("PUT", ts.URL+"/v1/stream/"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("PUT %s: %v %v", path, resp.Status, err)
		}
		resp.Body.Close()
	}
	put("__ds/subscriptions/demo", "application/json", `{"type":"webhook","pattern":"chat/*","webhook":{"url":"`+rc.URL+`"}}`)
	put("chat/1", "text/plain", "hello")
	var d got
	select {
	case d = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	jwks := ts.URL + "/v1/stream/__ds/jwks.json"
	if err := verify(jwks, d.header, d.body, time.Now()); err != nil {
		t.Fatalf("a genuine delivery: %v", err)
	}
	if err := verify(jwks, d.header, append(d.body, ' '), time.Now()); err == nil {
		t.Error("a changed body verified")
	}
	if err := verify(jwks, d.header, d.body, time.Now().Add(time.Hour)); err == nil {
		t.Error("an old delivery verified")
	}
	if err := verify(jwks, strings.Replace(d.header, "kid=ds_", "kid=xx_", 1), d.body, time.Now()); err == nil {
		t.Error("an unknown kid verified")
	}
}
