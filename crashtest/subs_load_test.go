package crashtest

// Subscriptions in the crash torture. At the first start the torture
// creates a pull-wake subscription and a webhook subscription (to a
// receiver in the test process) on subs/*; every round a subscription
// worker appends to subs/<k> streams, claims and acks the pull-wake
// subscription, and the receiver answers webhooks either {"done": true}
// or later with a callback. Kills land in the middle of all of it.
//
// After every restart the verifier checks that:
//   - both subscriptions exist (their creation was acknowledged);
//   - no acknowledged ack is lost: every ack and callback answered 200
//     left acked_offset at or beyond its offset;
//   - no pending work is skipped: every linked stream whose tail is past
//     its cursor is in the next wake: a claim (after the lease of a claim
//     from before the kill expires) and a webhook delivery, which the
//     verifier then acks, so that the next round starts clean.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

const (
	pullSub    = "torture-pull"
	hookSub    = "torture-hook"
	wakeStream = "subs-wake/pool"
)

// subsModel is what was acknowledged about the subscriptions. Guarded by mu.
type subsModel struct {
	mu      sync.Mutex
	created bool
	acked   map[string]map[string]string // subscription -> stream -> highest acknowledged ack offset
	hook    *hookReceiver
	st      struct{ appends, claims, acks, callbacks, hookDone, redelivered, verified int }
}

func newSubsModel() *subsModel {
	sm := &subsModel{acked: map[string]map[string]string{pullSub: {}, hookSub: {}}}
	sm.hook = newHookReceiver(sm)
	return sm
}

func (sm *subsModel) noteAck(sub, stream, off string) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if off > sm.acked[sub][stream] {
		sm.acked[sub][stream] = off
	}
}

// hookReceiver answers webhooks: {"done": true}, or {} and a callback
// shortly after (recorded when it is answered 200). In verify mode it only
// records the wakes.
type hookReceiver struct {
	sm     *subsModel
	srv    *httptest.Server
	mu     sync.Mutex
	verify bool
	wakes  chan hookWake
	client *http.Client
	// offered: the highest tail of each stream offered by a wake since the
	// last restart began, in any mode: a redelivery may come (and be
	// answered done) before the verification looks for it.
	offered map[string]string
}

// restarting starts a new count of what wakes offer.
func (h *hookReceiver) restarting() {
	h.mu.Lock()
	h.offered = map[string]string{}
	h.mu.Unlock()
}

type hookWake struct {
	WakeID     string `json:"wake_id"`
	Generation uint64 `json:"generation"`
	Streams    []struct {
		Path string `json:"path"`
		Tail string `json:"tail_offset"`
	} `json:"streams"`
	CallbackURL   string `json:"callback_url"`
	CallbackToken string `json:"callback_token"`
}

func newHookReceiver(sm *subsModel) *hookReceiver {
	h := &hookReceiver{sm: sm, wakes: make(chan hookWake, 1024), client: &http.Client{Timeout: 5 * time.Second}}
	var n int
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var wk hookWake
		json.Unmarshal(b, &wk)
		h.mu.Lock()
		verify := h.verify
		n++
		sync := n%2 == 0
		for _, s := range wk.Streams {
			if h.offered != nil && s.Tail > h.offered[s.Path] {
				h.offered[s.Path] = s.Tail
			}
		}
		h.mu.Unlock()
		if verify {
			select {
			case h.wakes <- wk:
			default:
			}
			io.WriteString(w, `{}`)
			return
		}
		if sync {
			io.WriteString(w, `{"done":true}`) // acked by the server after this answer: not counted
			sm.mu.Lock()
			sm.st.hookDone++
			sm.mu.Unlock()
			return
		}
		io.WriteString(w, `{}`)
		go h.callback(wk)
	}))
	return h
}

// callback acks a wake's snapshot through its callback URL.
func (h *hookReceiver) callback(wk hookWake) {
	time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
	acks := make([]map[string]string, 0, len(wk.Streams))
	for _, s := range wk.Streams {
		acks = append(acks, map[string]string{"stream": s.Path, "offset": s.Tail})
	}
	body, _ := json.Marshal(map[string]any{"wake_id": wk.WakeID, "generation": wk.Generation, "acks": acks, "done": true})
	res := do(context.Background(), h.client, "POST", wk.CallbackURL, body, "Authorization", "Bearer "+wk.CallbackToken, "Content-Type", "application/json")
	if res.status == http.StatusOK {
		for _, s := range wk.Streams {
			h.sm.noteAck(hookSub, s.Path, s.Tail)
		}
		h.sm.mu.Lock()
		h.sm.st.callbacks++
		h.sm.mu.Unlock()
	}
}

func subURL(base, id string) string { return base + streamPrefix + "__ds/subscriptions/" + id }

// setup creates the wake stream and both subscriptions (once).
func (sm *subsModel) setup(c *http.Client, base string) error {
	ctx := context.Background()
	if r := do(ctx, c, "PUT", streamURL(base, wakeStream), []byte("[]"), "Content-Type", "application/json"); r.status != 201 && r.status != 200 {
		return fmt.Errorf("create the wake stream: %s", r)
	}
	for id, cfg := range map[string]string{
		pullSub: `{"type":"pull-wake","pattern":"subs/*","wake_stream":"` + wakeStream + `","lease_ttl_ms":1000}`,
		hookSub: `{"type":"webhook","pattern":"subs/*","webhook":{"url":"` + sm.hook.srv.URL + `/hook"},"lease_ttl_ms":1000}`,
	} {
		if r := do(ctx, c, "PUT", subURL(base, id), []byte(cfg), "Content-Type", "application/json"); r.status != 201 && r.status != 200 {
			return fmt.Errorf("create subscription %s: %s", id, r)
		}
	}
	sm.mu.Lock()
	sm.created = true
	sm.mu.Unlock()
	return nil
}

// worker appends to subs/* and works the pull-wake subscription until the
// kill.
func (sm *subsModel) worker(l *load, seed uint64) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(seed, 7))
	ctx := context.Background()
	for k := 0; !l.killed.Load(); k++ {
		name := fmt.Sprintf("subs/%d", rng.IntN(8))
		r := do(ctx, l.c, "POST", streamURL(l.base, name), []byte("x"), "Content-Type", "text/plain")
		if r.status == 404 {
			r = do(ctx, l.c, "PUT", streamURL(l.base, name), []byte("x"), "Content-Type", "text/plain")
		}
		if r.status/100 == 2 {
			sm.mu.Lock()
			sm.st.appends++
			sm.mu.Unlock()
		}
		if rng.IntN(3) != 0 {
			continue
		}
		cr := do(ctx, l.c, "POST", subURL(l.base, pullSub)+"/claim", []byte(`{"worker":"torture"}`), "Content-Type", "application/json")
		if cr.status != 200 {
			continue
		}
		sm.mu.Lock()
		sm.st.claims++
		sm.mu.Unlock()
		var cl hookWake
		var tok struct {
			Token string `json:"token"`
		}
		json.Unmarshal(cr.body, &cl)
		json.Unmarshal(cr.body, &tok)
		acks := make([]map[string]string, 0, len(cl.Streams))
		for _, s := range cl.Streams {
			acks = append(acks, map[string]string{"stream": s.Path, "offset": s.Tail})
		}
		body, _ := json.Marshal(map[string]any{"wake_id": cl.WakeID, "generation": cl.Generation, "acks": acks, "done": true})
		ar := do(ctx, l.c, "POST", subURL(l.base, pullSub)+"/ack", body, "Authorization", "Bearer "+tok.Token, "Content-Type", "application/json")
		if ar.status == 200 {
			for _, s := range cl.Streams {
				sm.noteAck(pullSub, s.Path, s.Tail)
			}
			sm.mu.Lock()
			sm.st.acks++
			sm.mu.Unlock()
		}
	}
}

type subView struct {
	Streams []struct {
		Path  string `json:"path"`
		Acked string `json:"acked_offset"`
	} `json:"streams"`
}

// verify runs the checks after a restart (see the file comment).
func (sm *subsModel) verify(v *verifier) {
	sm.mu.Lock()
	created := sm.created
	acked := map[string]map[string]string{}
	for id, m := range sm.acked {
		acked[id] = map[string]string{}
		for k, o := range m {
			acked[id][k] = o
		}
	}
	sm.mu.Unlock()
	if !created {
		return
	}
	ctx := context.Background()
	tails := func(id string) (map[string]string, map[string]string, bool) {
		r := do(ctx, v.c, "GET", subURL(v.base, id), nil)
		if r.status != 200 {
			v.fail("subscription %s: GET after a restart: %s", id, r)
			v.m.noteLost(id)
			return nil, nil, false
		}
		var sv subView
		json.Unmarshal(r.body, &sv)
		cursor, tail := map[string]string{}, map[string]string{}
		for _, s := range sv.Streams {
			cursor[s.Path] = s.Acked
			if h := do(ctx, v.c, "HEAD", streamURL(v.base, s.Path), nil); h.status == 200 {
				tail[s.Path] = h.h.Get("Stream-Next-Offset")
			}
		}
		return cursor, tail, true
	}
	for _, id := range []string{pullSub, hookSub} {
		cursor, tail, ok := tails(id)
		if !ok {
			continue
		}
		for stream, off := range acked[id] {
			if cursor[stream] < off {
				v.fail("subscription %s: stream %s: an ack to %s was answered 200, the cursor is %q after the restart", id, stream, off, cursor[stream])
				v.m.noteLost(id + "/" + stream)
			}
		}
		pending := map[string]string{}
		for p, t := range tail {
			if t > cursor[p] {
				pending[p] = t
			}
		}
		sm.mu.Lock()
		sm.st.verified++
		sm.mu.Unlock()
		if len(pending) == 0 {
			continue
		}
		if id == pullSub {
			sm.redeliverPull(v, pending)
		} else {
			sm.redeliverHook(v, pending)
		}
	}
}

// redeliverPull claims (waiting out a claim from before the kill) and
// checks the wake covers the pending streams, then acks them.
func (sm *subsModel) redeliverPull(v *verifier, pending map[string]string) {
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Second); ; {
		cr := do(ctx, v.c, "POST", subURL(v.base, pullSub)+"/claim", []byte(`{"worker":"verifier"}`), "Content-Type", "application/json")
		if cr.status == 409 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond) // the lease of a claim from before the kill
			continue
		}
		if cr.status != 200 {
			v.fail("subscription %s: claim after a restart: %s", pullSub, cr)
			return
		}
		var cl hookWake
		var tok struct {
			Token string `json:"token"`
		}
		json.Unmarshal(cr.body, &cl)
		json.Unmarshal(cr.body, &tok)
		got := map[string]string{}
		for _, s := range cl.Streams {
			got[s.Path] = s.Tail
		}
		for p, t := range pending {
			if got[p] < t {
				v.fail("subscription %s: stream %s has pending work to %s, the claim after the restart offers %q: skipped", pullSub, p, t, got[p])
			}
		}
		acks := make([]map[string]string, 0, len(cl.Streams))
		for _, s := range cl.Streams {
			acks = append(acks, map[string]string{"stream": s.Path, "offset": s.Tail})
		}
		body, _ := json.Marshal(map[string]any{"wake_id": cl.WakeID, "generation": cl.Generation, "acks": acks, "done": true})
		ar := do(ctx, v.c, "POST", subURL(v.base, pullSub)+"/ack", body, "Authorization", "Bearer "+tok.Token, "Content-Type", "application/json")
		if ar.status != 200 {
			v.fail("subscription %s: ack after a restart: %s", pullSub, ar)
			return
		}
		for _, s := range cl.Streams {
			sm.noteAck(pullSub, s.Path, s.Tail)
		}
		sm.mu.Lock()
		sm.st.redelivered++
		sm.mu.Unlock()
		return
	}
}

// redeliverHook waits for webhook wakes until the pending streams were all
// offered, acking each wake by callback.
func (sm *subsModel) redeliverHook(v *verifier, pending map[string]string) {
	h := sm.hook
	offered := map[string]string{}
	h.mu.Lock()
	h.verify = true
	for p, t := range h.offered { // offered since the restart, before this wait
		offered[p] = t
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.verify = false
		h.mu.Unlock()
	}()
	deadline := time.After(8 * time.Second)
	for {
		missing := false
		for p, t := range pending {
			if offered[p] < t {
				missing = true
			}
		}
		if !missing {
			sm.mu.Lock()
			sm.st.redelivered++
			sm.mu.Unlock()
			return
		}
		select {
		case wk := <-h.wakes:
			for _, s := range wk.Streams {
				if s.Tail > offered[s.Path] {
					offered[s.Path] = s.Tail
				}
			}
			h.callback(wk)
		case <-deadline:
			v.fail("subscription %s: pending work %v not redelivered within 8 s after a restart (offered %v)", hookSub, pending, offered)
			return
		}
	}
}

func (sm *subsModel) String() string {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	s := sm.st
	return fmt.Sprintf("appends %d, pull-wake claims %d and acks %d, webhook callbacks %d and done answers %d; verified %d times, pending work redelivered after a restart %d times",
		s.appends, s.claims, s.acks, s.callbacks, s.hookDone, s.verified, s.redelivered)
}
