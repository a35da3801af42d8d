package subs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/fetch"
)

// Delivery (PROTOCOL.md 7): a subscription with pending work and no wake
// in flight gets a new wake: generation+1, a new wake_id, recorded durably
// first. Webhook: the wake is POSTed, signed; {"done": true} acks its
// snapshot; otherwise the handler calls back within the lease. A failed
// delivery is retried after 1 s, 2 s, ... 60 s (±20 %), the schedule
// recorded. Pull-wake: a wake event is appended to the wake stream;
// workers claim (lease), ack (heartbeat; done releases) or release. An
// expired lease clears the wake, and pending work wakes again.

// clearWake ends the current wake, and cuts its webhook POST if one is
// still waiting for an answer. Called with s.mu.
func (s *sub) clearWake() {
	if err := s.persist(record{Op: "clear", Gen: s.gen}); err != nil {
		s.m.log.Warn("subscriptions: recording the end of a wake failed", "id", s.id, "err", err)
	}
	s.inflight, s.holder, s.leaseUntil, s.snapshot, s.goneThisWake = false, "", time.Time{}, nil, nil
	if s.stopPost != nil {
		s.stopPost()
		s.stopPost = nil
	}
}

// evaluate issues a wake if there is pending work and none in flight, and
// arms the timer for the next deadline. Called with s.mu.
func (s *sub) evaluate() {
	if s.deleted || s.m.ctx.Err() != nil {
		return
	}
	now := time.Now()
	if s.inflight && !s.leaseUntil.IsZero() && !now.Before(s.leaseUntil) {
		s.m.log.Info("subscriptions: lease expired", "id", s.id, "generation", s.gen, "holder", s.holder)
		s.clearWake()
	}
	switch {
	case s.inflight:
		s.arm(s.leaseUntil)
		return
	case !s.nextAt.IsZero() && now.Before(s.nextAt):
		s.arm(s.nextAt)
		return
	}
	pend := s.pending()
	if len(pend) == 0 {
		return
	}
	// Look at the pending streams again before waking for them: one may
	// have expired (which tells nobody) or been created anew.
	for _, v := range pend {
		info, err := s.m.eng.Head(v.Path)
		s.observe(v.Path, s.links[v.Path], info, err)
	}
	if pend = s.pending(); len(pend) > 0 {
		s.issue(pend)
	}
}

// arm sets s's timer to run evaluate at t.
func (s *sub) arm(t time.Time) {
	if t.IsZero() {
		return
	}
	d := time.Until(t)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, func() {
			s.mu.Lock()
			s.evaluate()
			s.mu.Unlock()
		})
		return
	}
	s.timer.Reset(d)
}

// issue starts a new wake for pend. Called with s.mu.
func (s *sub) issue(pend []streamView) {
	gen, wakeID := s.gen+1, newWakeID()
	lease := time.Now().Add(s.cfg.lease())
	if err := s.persist(record{Op: "wake", Gen: gen, WakeID: wakeID, LeaseUntil: ms(lease)}); err != nil {
		s.m.log.Warn("subscriptions: recording a wake failed; retrying", "id", s.id, "err", err)
		s.arm(time.Now().Add(time.Second))
		return
	}
	s.gen, s.wakeID, s.inflight, s.holder, s.leaseUntil = gen, wakeID, true, "", lease
	s.arm(lease)
	switch s.cfg.Type {
	case TypeWebhook:
		s.snapshot = map[string]engine.Offset{}
		for _, p := range pend {
			s.snapshot[p.Path] = parseOff(p.TailOff)
		}
		body, _ := json.Marshal(map[string]any{
			"subscription_id": s.id, "wake_id": wakeID, "generation": gen, "streams": pend,
			"callback_url":   s.baseURL + "__ds/subscriptions/" + s.id + "/callback",
			"callback_token": s.m.sign.token(s.id, gen, wakeID),
		})
		s.m.wg.Add(1)
		go s.deliver(gen, wakeID, body)
	case TypePullWake:
		ev, _ := json.Marshal(map[string]any{"type": "wake", "subscription_id": s.id, "stream": pend[0].Path,
			"generation": gen, "wake_id": wakeID, "ts": time.Now().UnixMilli()})
		if _, err := s.m.eng.Append(context.Background(), s.cfg.WakeStream, ev, engine.AppendOptions{ContentType: "application/json"}); err != nil {
			s.m.log.Warn("subscriptions: writing a wake event failed", "id", s.id, "wake_stream", s.cfg.WakeStream, "err", err)
			return // the lease expires and a new wake is tried
		}
		go s.m.Notify(s.cfg.WakeStream) // (not under s.mu: a pattern may match the wake stream)
	}
}

// deliver POSTs one webhook wake: after the subscription's previous POST
// is over and a delivery slot is free, if the wake is still current then.
// The POST ends with the wake (clearWake): when its lease expires, the
// next wake's POST does not run beside it.
func (s *sub) deliver(gen uint64, wakeID string, body []byte) {
	defer s.m.wg.Done()
	m := s.m
	s.post.Lock()
	defer s.post.Unlock()
	select {
	case m.sem <- struct{}{}:
		defer func() { <-m.sem }()
	case <-m.ctx.Done():
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.opt.DeliveryTimeout)
	defer cancel()
	s.mu.Lock()
	current := !s.deleted && s.inflight && s.gen == gen && s.wakeID == wakeID
	if current {
		s.stopPost = cancel
	}
	s.mu.Unlock()
	if !current {
		return // replaced while it waited (its lease expired)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "durastream-webhook")
	req.Header.Set("Webhook-Signature", m.sign.signatureHeader(body, time.Now().Unix()))
	resp, err := m.opt.Client.Do(req)
	var done bool
	if err == nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = errors.New("webhook answered " + resp.Status)
		} else {
			var out struct {
				Done bool `json:"done"`
			}
			json.Unmarshal(b, &out)
			done = out.Done
		}
	}
	if m.ctx.Err() != nil {
		return // shutting down: redelivered after the restart
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted || !s.inflight || s.gen != gen || s.wakeID != wakeID {
		return
	}
	if err != nil {
		s.attempts++
		next := time.Now().Add(backoff(s.attempts))
		m.log.Warn("subscriptions: webhook delivery failed; retrying", "id", s.id, "generation", gen,
			"attempt", s.attempts, "next_attempt_at", next, "err", err)
		if perr := s.persist(record{Op: "retry", Attempts: s.attempts, NextAt: ms(next)}); perr == nil {
			s.nextAt = next
		}
		s.clearWake()
		s.evaluate()
		return
	}
	if s.attempts > 0 {
		if s.persist(record{Op: "retry"}) == nil {
			s.attempts, s.nextAt = 0, time.Time{}
		}
	}
	if done {
		s.finish(s.snapshotAcks())
	}
}

// backoff is the wait before delivery attempt n+1: 1 s doubling to 60 s,
// ±20 %.
func backoff(n int) time.Duration {
	d := time.Second << min(n-1, 6)
	d = min(d, 60*time.Second)
	j := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * j)
}

type ack struct {
	Stream string `json:"stream"`
	Offset string `json:"offset"`
}

func (s *sub) snapshotAcks() []ack {
	out := make([]ack, 0, len(s.snapshot))
	for p, o := range s.snapshot {
		out = append(out, ack{p, o.String()})
	}
	return out
}

// applyAcks moves cursors forward. Called with s.mu.
func (s *sub) applyAcks(acks []ack) *Error {
	for _, a := range acks {
		l := s.links[a.Stream]
		if l == nil {
			return badRequest("INVALID_REQUEST", "stream %q is not linked to this subscription", a.Stream)
		}
		o, err := engine.ParseOffset(a.Offset)
		if err != nil {
			return badRequest("INVALID_OFFSET", "offset %q is not an offset", a.Offset)
		}
		if o > l.tail {
			info, herr := s.m.eng.Head(a.Stream)
			s.observe(a.Stream, l, info, herr)
		}
		if s.links[a.Stream] != l || l.fence != 0 && l.fence == s.gen {
			continue // gone, or linked anew during this wake: the ack is for what it was
		}
		if o > l.tail {
			return badRequest("INVALID_OFFSET", "offset %s is beyond the tail of %q", a.Offset, a.Stream)
		}
		if o <= l.acked {
			continue
		}
		if err := s.persist(record{Op: "ack", Path: a.Stream, Acked: a.Offset, Inc: l.inc}); err != nil {
			return internal(err)
		}
		l.acked = o
	}
	return nil
}

// finish applies acks, ends the wake and wakes again if work remains.
// Called with s.mu.
func (s *sub) finish(acks []ack) (bool, *Error) {
	if err := s.applyAcks(acks); err != nil {
		return false, err
	}
	s.clearWake()
	next := len(s.pending()) > 0
	s.evaluate()
	return next, nil
}

// wakeRequest is the body of callback, ack and release.
type wakeRequest struct {
	WakeID     string `json:"wake_id"`
	Generation uint64 `json:"generation"`
	Acks       []ack  `json:"acks"`
	Done       bool   `json:"done"`
}

// checkWake verifies a token and a request against the current wake
// (PROTOCOL.md 7.3); s.mu is held on success.
func (m *Manager) checkWake(id, token string, body []byte, wantType string) (*sub, wakeRequest, *Error) {
	var req wakeRequest
	if err := json.Unmarshal(body, &req); err != nil || req.WakeID == "" {
		return nil, req, badRequest("INVALID_REQUEST", "the body must be {\"wake_id\", \"generation\", ...}")
	}
	s, err := m.locked(id)
	if err != nil {
		return nil, req, err
	}
	if s.cfg.Type != wantType {
		s.mu.Unlock()
		return nil, req, badRequest("INVALID_REQUEST", "not a %s subscription", wantType)
	}
	if token == "" || !m.sign.tokenOK(token, id, req.Generation, req.WakeID) {
		s.mu.Unlock()
		return nil, req, &Error{Status: 401, Code: "INVALID_TOKEN", Message: "the bearer token is not valid for this subscription and wake"}
	}
	if tg, ok := tokenGeneration(token); !ok || tg != s.gen || req.Generation != s.gen || req.WakeID != s.wakeID || !s.inflight {
		s.mu.Unlock()
		return nil, req, errFenced
	}
	return s, req, nil
}

// Callback serves a webhook handler's callback.
func (m *Manager) Callback(id, token string, body []byte) ([]byte, *Error) {
	s, req, err := m.checkWake(id, token, body, TypeWebhook)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.acknowledge(req)
}

// acknowledge applies a callback's or ack's acks: a heartbeat (the lease
// is extended) unless done, which ends the wake. Called with s.mu.
func (s *sub) acknowledge(req wakeRequest) ([]byte, *Error) {
	if !req.Done {
		if err := s.applyAcks(req.Acks); err != nil {
			return nil, err
		}
		if err := s.extend(); err != nil {
			return nil, err
		}
		return okNext(false), nil
	}
	next, ferr := s.finish(req.Acks)
	if ferr != nil {
		return nil, ferr
	}
	return okNext(next), nil
}

func okNext(next bool) []byte {
	if next {
		return []byte(`{"ok":true,"next_wake":true}`)
	}
	return []byte(`{"ok":true,"next_wake":false}`)
}

// extend renews the lease. Called with s.mu.
func (s *sub) extend() *Error {
	lease := time.Now().Add(s.cfg.lease())
	if err := s.persist(record{Op: "lease", Holder: s.holder, LeaseUntil: ms(lease)}); err != nil {
		return internal(err)
	}
	s.leaseUntil = lease
	s.arm(lease)
	return nil
}

// Claim gives a pull-wake worker the lease.
func (m *Manager) Claim(id string, body []byte) ([]byte, *Error) {
	var in struct {
		Worker string `json:"worker"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Worker == "" || len(in.Worker) > 256 {
		return nil, badRequest("INVALID_REQUEST", `the body must be {"worker": "<name>"}`)
	}
	s, err := m.locked(id)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if s.cfg.Type != TypePullWake {
		return nil, badRequest("INVALID_REQUEST", "not a pull-wake subscription")
	}
	s.evaluate() // an expired lease is cleared first
	if s.holder != "" {
		return nil, &Error{Status: 409, Code: "ALREADY_CLAIMED", Message: "another worker holds the lease",
			Extra: map[string]any{"current_holder": s.holder, "generation": s.gen}}
	}
	lease := time.Now().Add(s.cfg.lease())
	if !s.inflight {
		gen, wakeID := s.gen+1, newWakeID()
		if perr := s.persist(record{Op: "wake", Gen: gen, WakeID: wakeID, Holder: in.Worker, LeaseUntil: ms(lease)}); perr != nil {
			return nil, internal(perr)
		}
		s.gen, s.wakeID, s.inflight = gen, wakeID, true
	} else if perr := s.persist(record{Op: "lease", Holder: in.Worker, LeaseUntil: ms(lease)}); perr != nil {
		return nil, internal(perr)
	}
	s.holder, s.leaseUntil = in.Worker, lease
	s.arm(lease)
	pend := s.pending()
	if pend == nil {
		pend = []streamView{}
	}
	out, _ := json.Marshal(map[string]any{"wake_id": s.wakeID, "generation": s.gen,
		"token": m.sign.token(s.id, s.gen, s.wakeID), "streams": pend, "lease_ttl_ms": s.cfg.LeaseTTLMs})
	return out, nil
}

// Ack serves a pull-wake worker's ack (a heartbeat unless done).
func (m *Manager) Ack(id, token string, body []byte) ([]byte, *Error) {
	s, req, err := m.checkWake(id, token, body, TypePullWake)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if s.holder == "" {
		return nil, errFenced
	}
	return s.acknowledge(req)
}

// Release gives a pull-wake lease back without acking.
func (m *Manager) Release(id, token string, body []byte) *Error {
	s, _, err := m.checkWake(id, token, body, TypePullWake)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.holder == "" {
		return errFenced
	}
	s.clearWake()
	s.evaluate()
	return nil
}

// webhookDialer checks the address actually dialled (after DNS):
// restricted addresses refused, loopback 127.0.0.0/24 and ::1 allowed in
// development mode only.
func webhookDialer(dev bool) *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, Control: func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &fetch.AddressError{Reason: "unparsable address"}
		}
		ip := ap.Addr().Unmap()
		if dev && (ip == netip.IPv6Loopback() || devAddr(ip)) {
			return nil
		}
		if why, bad := fetch.RestrictedAddress(ip); bad {
			return &fetch.AddressError{Reason: "webhook address is " + why}
		}
		return nil
	}}
}

// webhookClient delivers webhooks through d, following no redirects.
func webhookClient(d *net.Dialer, timeout time.Duration) *http.Client {
	tr := &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConnsPerHost: 4,
		IdleConnTimeout: 30 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: timeout}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
