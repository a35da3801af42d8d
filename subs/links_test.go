package subs

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
)

// claimed claims pull-wake subscription id and returns its pending streams
// by path.
func (h *harness) claimed(id string) map[string]streamView {
	h.t.Helper()
	out, err := h.m.Claim(id, []byte(`{"worker":"w"}`))
	if err != nil {
		h.t.Fatalf("claim %s: %v", id, err)
	}
	var cl struct{ Streams []streamView }
	json.Unmarshal(out, &cl)
	m := map[string]streamView{}
	for _, v := range cl.Streams {
		m[v.Path] = v
	}
	return m
}

// claimedWake is what a pull-wake claim answers.
type claimedWake struct {
	WakeID     string `json:"wake_id"`
	Generation uint64 `json:"generation"`
	Token      string `json:"token"`
}

// claim claims pull-wake subscription id.
func (h *harness) claim(id string) claimedWake {
	h.t.Helper()
	out, err := h.m.Claim(id, []byte(`{"worker":"w"}`))
	if err != nil {
		h.t.Fatalf("claim %s: %v", id, err)
	}
	var cl claimedWake
	json.Unmarshal(out, &cl)
	return cl
}

// ackDone acks the claimed wake with done: true and the given offsets.
func (h *harness) ackDone(id string, cl claimedWake, offsets map[string]int) ([]byte, *Error) {
	acks := []map[string]string{}
	for p, o := range offsets {
		acks = append(acks, map[string]string{"stream": p, "offset": engine.Offset(o).String()})
	}
	b, _ := json.Marshal(map[string]any{"wake_id": cl.WakeID, "generation": cl.Generation, "done": true, "acks": acks})
	return h.m.Ack(id, cl.Token, b)
}

// wantFromStart fails unless every stream in tails is pending from its
// start to its tail.
func wantFromStart(t *testing.T, got map[string]streamView, tails map[string]int) {
	t.Helper()
	for p, n := range tails {
		v, ok := got[p]
		if !ok || v.AckedOff != engine.Offset(0).String() || v.TailOff != engine.Offset(n).String() {
			t.Errorf("%s: pending %+v (found %v), want all %d bytes of the new stream", p, v, ok, n)
		}
	}
	if len(got) != len(tails) {
		t.Errorf("pending streams %v, want %d", got, len(tails))
	}
}

// TestLinkStartsOverAfterTTLExpiry: streams that expire (which calls
// nobody) and are created again are delivered from their start, although
// the old cursors (10) lie beyond the new tails (7).
func TestLinkStartsOverAfterTTLExpiry(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	h := newHarnessWith(t, func(o *engine.Options) {
		o.Clock = func() time.Time { return time.Unix(0, now.Load()) }
	}, nil)
	h.eng.Create(context.Background(), "wakes", engine.CreateOptions{ContentType: "application/json"})
	for _, p := range []string{"q/a", "x/e"} {
		if err := h.createWith(p, engine.CreateOptions{Data: []byte("0123456789"), HasTTL: true, TTL: 1}); err != nil {
			t.Fatal(err)
		}
	}
	h.put("p1", `{"type":"pull-wake","pattern":"q/*","streams":["x/e"],"wake_stream":"wakes"}`)
	now.Add(int64(2 * time.Second)) // both expire
	h.create("q/a", "new-q-a")
	h.create("x/e", "new-x-e")
	wantFromStart(t, h.claimed("p1"), map[string]int{"q/a": 7, "x/e": 7})
}

// TestLinkStartsOverAfterUnnotifiedDelete: the window between a delete and
// the Notify after it (a SIGKILL there), simulated by deleting through the
// engine and restarting. A stream deleted is delivered from its start when
// created again after the restart; one deleted and created again before it
// too, whether the new stream is shorter or longer than the old cursor.
func TestLinkStartsOverAfterUnnotifiedDelete(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.eng.Create(ctx, "wakes", engine.CreateOptions{ContentType: "application/json"})
	for _, p := range []string{"q/a", "q/b", "x/e", "x/f"} {
		h.create(p, "0123456789")
	}
	h.put("p1", `{"type":"pull-wake","pattern":"q/*","streams":["x/e","x/f"],"wake_stream":"wakes"}`)
	for _, p := range []string{"q/a", "q/b", "x/e", "x/f"} {
		if err := h.eng.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range map[string]string{"q/b": "0123456789abcdefghij", "x/f": "short"} {
		if _, _, err := h.eng.Create(ctx, p, engine.CreateOptions{ContentType: "text/plain", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	h.close()
	h.open()
	h.create("q/a", "new-q-a")
	h.create("x/e", "new-x-e")
	wantFromStart(t, h.claimed("p1"), map[string]int{"q/a": 7, "q/b": 20, "x/e": 7, "x/f": 5})
}

// TestLateAckOfDeletedStreamIgnored: an ack of the wake in flight when its
// stream was deleted and created again is for the old stream: it does not
// move the new stream's cursor.
func TestLateAckOfDeletedStreamIgnored(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.eng.Create(ctx, "wakes", engine.CreateOptions{ContentType: "application/json"})
	h.put("p1", `{"type":"pull-wake","pattern":"q/*","wake_stream":"wakes"}`)
	h.create("q/a", "0123456789")
	cl := h.claim("p1")
	if err := h.eng.Delete(ctx, "q/a"); err != nil {
		t.Fatal(err)
	}
	h.m.Notify("q/a")
	h.create("q/a", "0123456789abcdef")
	if out, err := h.ackDone("p1", cl, map[string]int{"q/a": 10}); err != nil || string(out) != `{"ok":true,"next_wake":true}` {
		t.Fatalf("ack: %s %v", out, err)
	}
	wantFromStart(t, h.claimed("p1"), map[string]int{"q/a": 16})
}

// TestAckOfStreamLinkedDuringWake: a stream linked for the first time
// while a wake is in flight has no earlier life an ack could mean: the
// worker's ack for it in that wake is applied, and kept across a restart
// (the crash torture found such acks answered 200 and ignored).
func TestAckOfStreamLinkedDuringWake(t *testing.T) {
	h := newHarness(t)
	h.eng.Create(context.Background(), "wakes", engine.CreateOptions{ContentType: "application/json"})
	h.put("p1", `{"type":"pull-wake","pattern":"q/*","wake_stream":"wakes"}`)
	h.create("q/a", "0123")
	cl := h.claim("p1")
	h.create("q/b", "456789") // linked during the wake
	if out, err := h.ackDone("p1", cl, map[string]int{"q/a": 4, "q/b": 6}); err != nil || string(out) != `{"ok":true,"next_wake":false}` {
		t.Fatalf("ack: %s %v", out, err)
	}
	for _, restart := range []bool{false, true} {
		if restart {
			h.close()
			h.open()
		}
		v := h.get("p1")
		if a, b := ackedOf(v, "q/a"), ackedOf(v, "q/b"); a != engine.Offset(4).String() || b != engine.Offset(6).String() {
			t.Fatalf("restart %v: acked q/a %s, q/b %s; want both at their tails", restart, a, b)
		}
	}
}

// TestSubscriptionCreateRace: a stream created while a new subscription
// has listed the existing streams (and so did not see it) is linked and
// delivered. (The pattern is indexed before the listing: the stream's
// BeforeCreate links it once the subscription's create is done.)
func TestSubscriptionCreateRace(t *testing.T) {
	h := newHarness(t)
	h.eng.Create(context.Background(), "wakes", engine.CreateOptions{ContentType: "application/json"})
	created := make(chan error, 1)
	h.m.afterList = func() {
		go func() { created <- h.createWith("q/new", engine.CreateOptions{Data: []byte("data")}) }()
		// Let it finish if it can: before the fix it did, unseen.
		select {
		case err := <-created:
			created <- err
		case <-time.After(300 * time.Millisecond):
		}
	}
	h.put("p1", `{"type":"pull-wake","pattern":"q/*","wake_stream":"wakes"}`)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	wantFromStart(t, h.claimed("p1"), map[string]int{"q/new": 4})
}

// TestSubscriptionCreateWaitsForStreamCreates: a stream whose BeforeCreate
// ran before the subscription existed, and whose create ends after the
// subscription listed the streams, would be neither linked nor listed; a
// new subscription waits for the creates in flight instead, and so lists
// it (at its tail, as a stream that existed before it).
func TestSubscriptionCreateWaitsForStreamCreates(t *testing.T) {
	h := newHarness(t)
	h.eng.Create(context.Background(), "wakes", engine.CreateOptions{ContentType: "application/json"})
	done := h.m.BeforeCreate("q/b") // links nothing: no subscription yet
	put := make(chan *Error, 1)
	go func() {
		_, _, err := h.m.Put("p1", []byte(`{"type":"pull-wake","pattern":"q/*","wake_stream":"wakes"}`), "http://ds.test/", nil)
		put <- err
	}()
	select {
	case err := <-put:
		put <- err
	case <-time.After(300 * time.Millisecond):
	}
	if _, _, err := h.eng.Create(context.Background(), "q/b", engine.CreateOptions{ContentType: "text/plain", Data: []byte("hist")}); err != nil {
		t.Fatal(err)
	}
	done()
	h.m.Notify("q/b")
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	if got := ackedOf(h.get("p1"), "q/b"); got != engine.Offset(4).String() {
		t.Fatalf("q/b linked at %q, want its tail when the subscription was made", got)
	}
	h.append("q/b", "new")
	if got := h.claimed("p1")["q/b"]; got.AckedOff != engine.Offset(4).String() || got.TailOff != engine.Offset(7).String() {
		t.Fatalf("pending %+v, want the append", got)
	}
}
