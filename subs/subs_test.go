package subs

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/fetch"
	"github.com/durastream/durastream/pathglob"
)

// receiver is a webhook endpoint that records deliveries and answers with
// status and body chosen by the test.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	status int
	answer string
	ch     chan delivery
}

type delivery struct {
	raw []byte
	sig string
	w   struct {
		SubscriptionID string       `json:"subscription_id"`
		WakeID         string       `json:"wake_id"`
		Generation     uint64       `json:"generation"`
		Streams        []streamView `json:"streams"`
		CallbackURL    string       `json:"callback_url"`
		CallbackToken  string       `json:"callback_token"`
	}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{status: 200, answer: `{}`, ch: make(chan delivery, 64)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var d delivery
		d.raw, _ = io.ReadAll(req.Body)
		d.sig = req.Header.Get("Webhook-Signature")
		json.Unmarshal(d.raw, &d.w)
		r.mu.Lock()
		r.got = append(r.got, d)
		status, answer := r.status, r.answer
		r.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, answer)
		r.ch <- d
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) set(status int, answer string) {
	r.mu.Lock()
	r.status, r.answer = status, answer
	r.mu.Unlock()
}

func (r *receiver) next(t *testing.T, within time.Duration) delivery {
	t.Helper()
	select {
	case d := <-r.ch:
		return d
	case <-time.After(within):
		t.Fatalf("no webhook within %v", within)
		return delivery{}
	}
}

func (r *receiver) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case d := <-r.ch:
		t.Fatalf("unexpected webhook: %s", d.raw)
	case <-time.After(within):
	}
}

type harness struct {
	t   *testing.T
	dir string
	eng *engine.Engine
	m   *Manager
	// Changes to the engine's and the manager's options, or nil.
	engOpt func(*engine.Options)
	mOpt   func(*Options)
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, nil, nil) }

func newHarnessWith(t *testing.T, engOpt func(*engine.Options), mOpt func(*Options)) *harness {
	h := &harness{t: t, dir: t.TempDir(), engOpt: engOpt, mOpt: mOpt}
	h.open()
	t.Cleanup(h.close)
	return h
}

func (h *harness) open() {
	var err error
	eo := engine.Options{Durability: engine.DurabilitySync}
	if h.engOpt != nil {
		h.engOpt(&eo)
	}
	h.eng, err = engine.Open(h.dir, &eo)
	if err != nil {
		h.t.Fatal(err)
	}
	mo := Options{KeyFile: h.dir + "/webhook.key", DevWebhooks: true, DeliveryTimeout: 2 * time.Second}
	if h.mOpt != nil {
		h.mOpt(&mo)
	}
	h.m, err = New(h.eng, mo)
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) close() {
	if h.m != nil {
		h.m.Close()
		h.eng.Close()
		h.m = nil
	}
}

// create makes a stream the way the server does (BeforeCreate, create,
// done, Notify).
func (h *harness) create(p string, data string) {
	h.t.Helper()
	if err := h.createWith(p, engine.CreateOptions{Data: []byte(data)}); err != nil {
		h.t.Fatal(err)
	}
}

// createWith is create with options, returning the error (it may run
// outside the test's goroutine).
func (h *harness) createWith(p string, o engine.CreateOptions) error {
	o.ContentType = "text/plain"
	done := h.m.BeforeCreate(p)
	_, _, err := h.eng.Create(context.Background(), p, o)
	done()
	h.m.Notify(p)
	return err
}

func (h *harness) append(p, data string) engine.Offset {
	h.t.Helper()
	res, err := h.eng.Append(context.Background(), p, []byte(data), engine.AppendOptions{ContentType: "text/plain"})
	if err != nil {
		h.t.Fatal(err)
	}
	h.m.Notify(p)
	return res.Tail
}

func (h *harness) put(id, body string) {
	h.t.Helper()
	if _, _, err := h.m.Put(id, []byte(body), "http://ds.test/v1/stream/", nil); err != nil {
		h.t.Fatalf("put %s: %v", id, err)
	}
}

func (h *harness) get(id string) map[string]any {
	h.t.Helper()
	b, err := h.m.Get(id)
	if err != nil {
		h.t.Fatalf("get %s: %v", id, err)
	}
	var v map[string]any
	json.Unmarshal(b, &v)
	return v
}

func ackedOf(v map[string]any, p string) string {
	for _, s := range v["streams"].([]any) {
		m := s.(map[string]any)
		if m["path"] == p {
			return m["acked_offset"].(string)
		}
	}
	return ""
}

// verify checks a delivery's signature with the key published in JWKS.
func verify(t *testing.T, jwks []byte, d delivery) {
	t.Helper()
	var set struct {
		Keys []struct{ Kid, X, Crv, Kty string }
	}
	json.Unmarshal(jwks, &set)
	parts := strings.Split(d.sig, ",")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "t=") || !strings.HasPrefix(parts[1], "kid=") || !strings.HasPrefix(parts[2], "ed25519=") {
		t.Fatalf("Webhook-Signature %q", d.sig)
	}
	ts, kid := parts[0][2:], parts[1][4:]
	sig, err := base64.RawURLEncoding.DecodeString(parts[2][8:])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.Kid == kid {
			pub, _ := base64.RawURLEncoding.DecodeString(k.X)
			if !ed25519.Verify(pub, append([]byte(ts+"."), d.raw...), sig) {
				t.Fatal("the webhook signature does not verify with the JWKS key")
			}
			if n, _ := strconv.ParseInt(ts, 10, 64); time.Since(time.Unix(n, 0)).Abs() > time.Minute {
				t.Fatalf("signature timestamp %s", ts)
			}
			return
		}
	}
	t.Fatalf("kid %s not in the JWKS", kid)
}

func TestWebhookDoneAutoAcks(t *testing.T) {
	h := newHarness(t)
	rc := newReceiver(t)
	rc.set(200, `{"done":true}`)
	h.create("events/old", "history")
	h.put("s1", `{"type":"webhook","pattern":"events/*","webhook":{"url":"`+rc.srv.URL+`/hook"},"lease_ttl_ms":1000}`)
	rc.none(t, 200*time.Millisecond) // backfilled at the tail: history is not pending
	h.create("events/a", "hello")
	d := rc.next(t, 5*time.Second)
	verify(t, h.m.JWKS(), d)
	if d.w.SubscriptionID != "s1" || len(d.w.Streams) != 1 || d.w.Streams[0].Path != "events/a" || d.w.CallbackURL != "http://ds.test/v1/stream/__ds/subscriptions/s1/callback" {
		t.Fatalf("wake %s", d.raw)
	}
	tail := d.w.Streams[0].TailOff
	for deadline := time.Now().Add(3 * time.Second); ackedOf(h.get("s1"), "events/a") != tail; {
		if time.Now().After(deadline) {
			t.Fatalf("done did not ack the snapshot: %v", h.get("s1"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A new append: a new wake, a new generation.
	h.append("events/a", " again")
	d2 := rc.next(t, 5*time.Second)
	if d2.w.Generation <= d.w.Generation || d2.w.WakeID == d.w.WakeID {
		t.Fatalf("second wake generation %d wake %s after %d %s", d2.w.Generation, d2.w.WakeID, d.w.Generation, d.w.WakeID)
	}
}

func TestWebhookCallbackFencing(t *testing.T) {
	h := newHarness(t)
	rc := newReceiver(t)
	h.put("s1", `{"type":"webhook","pattern":"events/*","webhook":{"url":"`+rc.srv.URL+`"},"lease_ttl_ms":1000}`)
	h.put("s2", `{"type":"webhook","pattern":"events/*","webhook":{"url":"`+rc.srv.URL+`"},"lease_ttl_ms":1000}`)
	h.create("events/a", "x")
	ds := map[string]delivery{}
	for range 2 {
		d := rc.next(t, 5*time.Second)
		ds[d.w.SubscriptionID] = d
	}
	d := ds["s1"]
	body := func(gen uint64, wake string, done bool) []byte {
		b, _ := json.Marshal(map[string]any{"wake_id": wake, "generation": gen, "done": done,
			"acks": []map[string]string{{"stream": "events/a", "offset": d.w.Streams[0].TailOff}}})
		return b
	}
	// Another subscription's token is never valid here.
	if _, err := h.m.Callback("s1", ds["s2"].w.CallbackToken, body(d.w.Generation, d.w.WakeID, true)); err == nil || err.Status != 401 {
		t.Fatalf("s2's token on s1: %v", err)
	}
	if _, err := h.m.Callback("s1", "g1.forged", body(d.w.Generation, d.w.WakeID, true)); err == nil || err.Status != 401 {
		t.Fatalf("forged token: %v", err)
	}
	// A heartbeat, then done.
	if out, err := h.m.Callback("s1", d.w.CallbackToken, body(d.w.Generation, d.w.WakeID, false)); err != nil || string(out) != `{"ok":true,"next_wake":false}` {
		t.Fatalf("heartbeat: %s %v", out, err)
	}
	if out, err := h.m.Callback("s1", d.w.CallbackToken, body(d.w.Generation, d.w.WakeID, true)); err != nil || string(out) != `{"ok":true,"next_wake":false}` {
		t.Fatalf("done: %s %v", out, err)
	}
	if _, err := h.m.Callback("s1", d.w.CallbackToken, body(d.w.Generation, d.w.WakeID, true)); err == nil || err.Code != "FENCED" {
		t.Fatalf("replayed callback: %v, want FENCED", err)
	}
	if got := ackedOf(h.get("s1"), "events/a"); got != d.w.Streams[0].TailOff {
		t.Fatalf("acked %s", got)
	}
	// A deleted subscription's callbacks fail and move nothing.
	if err := h.m.Delete("s2"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Callback("s2", ds["s2"].w.CallbackToken, body(ds["s2"].w.Generation, ds["s2"].w.WakeID, true)); err == nil || err.Status != 404 {
		t.Fatalf("callback of a deleted subscription: %v", err)
	}
}

func TestWebhookLeaseExpiryRewakes(t *testing.T) {
	h := newHarness(t)
	rc := newReceiver(t) // answers {} and never calls back
	h.put("s1", `{"type":"webhook","pattern":"events/*","webhook":{"url":"`+rc.srv.URL+`"},"lease_ttl_ms":1000}`)
	h.create("events/a", "x")
	d1 := rc.next(t, 5*time.Second)
	start := time.Now()
	d2 := rc.next(t, 5*time.Second)
	if el := time.Since(start); el < 800*time.Millisecond || d2.w.Generation != d1.w.Generation+1 {
		t.Fatalf("re-wake after %v, generation %d after %d", el, d2.w.Generation, d1.w.Generation)
	}
	// The expired wake's token is fenced.
	b, _ := json.Marshal(map[string]any{"wake_id": d1.w.WakeID, "generation": d1.w.Generation, "done": true})
	if _, err := h.m.Callback("s1", d1.w.CallbackToken, b); err == nil || err.Code != "FENCED" {
		t.Fatalf("expired wake's callback: %v", err)
	}
}

// TestWebhookRetryScheduleSurvivesRestart: a failing receiver makes the
// subscription failed with a persisted next attempt; after a restart the
// schedule holds (no immediate redelivery), and a recovered receiver gets
// the wake and the status returns to active.
func TestWebhookRetryScheduleSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	rc := newReceiver(t)
	rc.set(500, "down")
	h.put("s1", `{"type":"webhook","pattern":"events/*","webhook":{"url":"`+rc.srv.URL+`"}}`)
	h.create("events/a", "x")
	rc.next(t, 5*time.Second)
	rc.next(t, 5*time.Second) // the retry after ~1 s
	v := h.get("s1")
	if v["status"] != "failed" || v["next_attempt_at"] == nil {
		t.Fatalf("after failures: status %v next_attempt_at %v", v["status"], v["next_attempt_at"])
	}
	next, _ := time.Parse(time.RFC3339Nano, v["next_attempt_at"].(string))
	h.close()
	rc.set(200, `{"done":true}`)
	h.open()
	if v := h.get("s1"); v["status"] != "failed" || v["next_attempt_at"] == nil {
		t.Fatalf("after the restart: %v", v)
	}
	d := rc.next(t, 10*time.Second)
	if now := time.Now(); now.Before(next.Add(-50 * time.Millisecond)) {
		t.Fatalf("redelivered at %v, before the persisted next attempt %v", now, next)
	}
	verify(t, h.m.JWKS(), d)
	for deadline := time.Now().Add(3 * time.Second); h.get("s1")["status"] != "active"; {
		if time.Now().After(deadline) {
			t.Fatalf("status after a delivery: %v", h.get("s1")["status"])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPullWake(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.eng.Create(ctx, "wake/pool", engine.CreateOptions{ContentType: "application/json"})
	h.put("p1", `{"type":"pull-wake","pattern":"events/*","wake_stream":"wake/pool","lease_ttl_ms":1000}`)
	h.create("events/a", "x")
	waitWakes := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; {
			c, err := h.eng.Read("wake/pool", engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var evs []map[string]any
			json.Unmarshal(c.Bytes(), &evs)
			c.Release()
			if len(evs) >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d wake events, want %d", len(evs), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitWakes(1)
	out, err := h.m.Claim("p1", []byte(`{"worker":"w1"}`))
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		WakeID     string       `json:"wake_id"`
		Generation uint64       `json:"generation"`
		Token      string       `json:"token"`
		Streams    []streamView `json:"streams"`
	}
	json.Unmarshal(out, &cl)
	if _, err := h.m.Claim("p1", []byte(`{"worker":"w2"}`)); err == nil || err.Code != "ALREADY_CLAIMED" || err.Extra["current_holder"] != "w1" {
		t.Fatalf("second claim: %v", err)
	}
	ackBody := func(done bool) []byte {
		b, _ := json.Marshal(map[string]any{"wake_id": cl.WakeID, "generation": cl.Generation, "done": done,
			"acks": []map[string]string{{"stream": "events/a", "offset": cl.Streams[0].TailOff}}})
		return b
	}
	if _, err := h.m.Ack("p1", cl.Token, ackBody(false)); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if out, err := h.m.Ack("p1", cl.Token, ackBody(true)); err != nil || string(out) != `{"ok":true,"next_wake":false}` {
		t.Fatalf("ack done: %s %v", out, err)
	}
	if _, err := h.m.Ack("p1", cl.Token, ackBody(true)); err == nil || err.Code != "FENCED" {
		t.Fatalf("stale ack: %v", err)
	}
	// A lease that expires clears the holder and wakes again.
	h.append("events/a", "y")
	waitWakes(2)
	out, err = h.m.Claim("p1", []byte(`{"worker":"w1"}`))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(out, &cl)
	time.Sleep(1200 * time.Millisecond)
	waitWakes(3) // the pending work woke again
	if err := h.m.Release("p1", cl.Token, ackBody(false)); err == nil || err.Code != "FENCED" {
		t.Fatalf("release after the lease expired: %v", err)
	}
	out, err = h.m.Claim("p1", []byte(`{"worker":"w2"}`))
	if err != nil {
		t.Fatalf("claim after expiry: %v", err)
	}
	json.Unmarshal(out, &cl)
	if err := h.m.Release("p1", cl.Token, ackBody(false)); err != nil {
		t.Fatalf("release: %v", err)
	}
}

// TestStateSurvivesRestart: links, cursors and generations come back.
func TestStateSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	rc := newReceiver(t)
	rc.set(200, `{"done":true}`)
	h.put("s1", `{"type":"webhook","pattern":"events/**","streams":["manual/x"],"webhook":{"url":"`+rc.srv.URL+`"}}`)
	h.create("events/a/b", "x")
	d := rc.next(t, 5*time.Second)
	for deadline := time.Now().Add(3 * time.Second); ackedOf(h.get("s1"), "events/a/b") != d.w.Streams[0].TailOff; {
		if time.Now().After(deadline) {
			t.Fatal("not acked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := h.get("s1")
	h.close()
	h.open()
	after := h.get("s1")
	for _, k := range []string{"streams", "generation", "pattern", "webhook"} {
		bj, _ := json.Marshal(before[k])
		aj, _ := json.Marshal(after[k])
		if string(bj) != string(aj) {
			t.Errorf("%s: %s before the restart, %s after", k, bj, aj)
		}
	}
	rc.none(t, 300*time.Millisecond) // nothing pending: no wake
	// Re-confirming the same configuration is 200, another is 409.
	if _, created, err := h.m.Put("s1", []byte(`{"type":"webhook","pattern":"events/**","streams":["manual/x"],"webhook":{"url":"`+rc.srv.URL+`"}}`), "", nil); err != nil || created {
		t.Fatalf("re-confirm: %v %v", created, err)
	}
	if _, _, err := h.m.Put("s1", []byte(`{"type":"webhook","pattern":"events/*","webhook":{"url":"`+rc.srv.URL+`"}}`), "", nil); err == nil || err.Status != 409 {
		t.Fatalf("other config: %v", err)
	}
}

func TestCheckWebhookURL(t *testing.T) {
	for _, c := range []struct {
		url string
		dev bool
		ok  bool
	}{
		{"https://hooks.example.com/x", false, true},
		{"http://hooks.example.com/x", false, false},
		{"http://localhost:8080/x", false, false},
		{"http://localhost:8080/x", true, true},
		{"http://127.0.0.5/x", true, true},
		{"http://127.0.1.1/x", true, false},
		{"https://127.0.0.1/x", false, false},
		{"https://10.0.0.1/x", true, false},
		{"https://192.168.1.1/x", false, false},
		{"https://169.254.169.254/latest", false, false},
		{"https://[::1]/x", false, false},
		{"https://[fd00::1]/x", false, false},
		{"https://user:pw@example.com/x", false, false},
		{"ftp://example.com/x", false, false},
		{"/relative", false, false},
	} {
		if err := CheckWebhookURL(c.url, c.dev); (err == nil) != c.ok {
			t.Errorf("CheckWebhookURL(%q, dev=%v) = %v", c.url, c.dev, err)
		}
	}
}

// TestWebhookDialerChecksResolvedAddress: a name that resolves to a
// loopback address (localhost here) passes the URL check as a name, but
// the dialer refuses the address it resolves to.
func TestWebhookDialerChecksResolvedAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	_, err := webhookClient(webhookDialer(false), 2*time.Second).Get("http://localhost:" + port + "/")
	if !errors.Is(err, fetch.ErrAddressRefused) {
		t.Fatalf("production client to localhost: %v, want a refused address", err)
	}
	resp, err := webhookClient(webhookDialer(true), 2*time.Second).Get("http://localhost:" + port + "/")
	if err != nil {
		t.Fatalf("development client to localhost: %v", err)
	}
	resp.Body.Close()
	// Redirects are not followed.
	red := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/", http.StatusFound))
	defer red.Close()
	resp, err = webhookClient(webhookDialer(true), 2*time.Second).Get(red.URL)
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect: %v", err)
	}
	resp.Body.Close()
}

// TestIndexAgainstScan: the pattern trie finds exactly what matching every
// pattern would.
func TestIndexAgainstScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	segs := []string{"a", "b", "ab", "*", "**", "a*", "*b"}
	var idx trie
	type entry struct {
		p pathglob.Pattern
		s *sub
	}
	var all []entry
	for i := range 300 {
		n := 1 + rng.IntN(4)
		var parts []string
		for range n {
			parts = append(parts, segs[rng.IntN(len(segs))])
		}
		raw := strings.Join(parts, "/")
		p, err := pathglob.Parse(raw)
		if err != nil {
			continue
		}
		s := &sub{id: strconv.Itoa(i)}
		idx.add(p, parts, s)
		all = append(all, entry{p, s})
	}
	names := []string{"a", "b", "ab", "ba", "abb"}
	for range 2000 {
		n := 1 + rng.IntN(5)
		var parts []string
		for range n {
			parts = append(parts, names[rng.IntN(len(names))])
		}
		got := map[*sub]struct{}{}
		idx.match(parts, 0, got)
		for _, e := range all {
			_, in := got[e.s]
			if e.p.Match(parts) != in {
				t.Fatalf("path %v: index %v, pattern says %v", parts, in, e.p.Match(parts))
			}
		}
	}
}

// TestAckThatCompactsSurvivesRestart: an ack whose record is the one that
// makes the state stream due for compaction is in the state after a
// restart (the snapshot was once taken after the append and before the
// ack was applied in memory, then the old log deleted: the ack was lost).
func TestAckThatCompactsSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	h.put("p1", `{"type":"pull-wake","pattern":"q/*","wake_stream":"wakes/p1"}`)
	h.create("q/a", "")
	var tails []engine.Offset
	for i := range 4 {
		tails = append(tails, h.append("q/a", fmt.Sprintf("m%d;", i)))
	}
	h.m.mu.Lock()
	s := h.m.subs["p1"]
	h.m.mu.Unlock()
	for i, tail := range tails {
		s.mu.Lock()
		s.records = compactEvery - 1 + i%2 // this ack, or the one before, reaches the limit
		err := s.applyAcks([]ack{{Stream: "q/a", Offset: tail.String()}})
		s.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	want := tails[len(tails)-1].String()
	h.close()
	h.open()
	if got := ackedOf(h.get("p1"), "q/a"); got != want {
		t.Fatalf("acked offset %s after a restart, want %s (acked before it)", got, want)
	}
}
