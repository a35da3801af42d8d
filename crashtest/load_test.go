package crashtest

// Mixed concurrent load over HTTP. General workers append (JSON and binary,
// some large), create, fork, close (racing appends against the close),
// append-and-close, delete and read; producer workers drive idempotent
// producers. Every answer is recorded in the model; requests without an
// answer (the server was killed) are "maybe" until the next verification.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type load struct {
	m      *model
	c      *http.Client
	base   string
	round  int
	killed atomic.Bool
	wg     sync.WaitGroup

	largeLeft atomic.Int32 // large (by-reference) appends left this round
	names     atomic.Int64

	// Lifecycle operations are paced in time so that every round, whatever
	// its length and the machine's speed, has some of each spread over it.
	createP, closeP, appendCloseP, deleteP, forkP pacer
}

// pacer lets one operation through every `every` (jittered).
type pacer struct {
	next  atomic.Int64
	every time.Duration
}

func (p *pacer) ok(rng *rand.Rand) bool {
	now := time.Now().UnixNano()
	n := p.next.Load()
	if now < n {
		return false
	}
	return p.next.CompareAndSwap(n, now+int64(p.every/2)+rng.Int64N(int64(p.every)))
}

func newLoad(m *model, c *http.Client, base string, round int) *load {
	l := &load{m: m, c: c, base: base, round: round}
	l.largeLeft.Store(3)
	l.createP.every = 40 * time.Millisecond
	l.closeP.every = 80 * time.Millisecond
	l.appendCloseP.every = 120 * time.Millisecond
	l.deleteP.every = 50 * time.Millisecond
	l.forkP.every = 40 * time.Millisecond
	return l
}

func childRNG(rng *rand.Rand) *rand.Rand { return rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())) }

func (l *load) url(s *stream) string { return streamURL(l.base, s.name) }

func (l *load) name(w int, kind string) string {
	return fmt.Sprintf("r%d/w%d/%s%d", l.round, w, kind, l.names.Add(1))
}

// ctx returns the context of one request: usually the normal timeout, for a
// few requests a deadline of a few milliseconds, so that the client gives up
// while the server may still complete the request.
func (l *load) ctx(rng *rand.Rand, shortOneIn int) (context.Context, context.CancelFunc) {
	if shortOneIn > 0 && rng.IntN(shortOneIn) == 0 {
		return context.WithTimeout(context.Background(), time.Duration(rng.IntN(4000))*time.Microsecond)
	}
	return context.WithTimeout(context.Background(), reqTimeout)
}

// worker runs general operations until the server is killed.
func (l *load) worker(w int, seed uint64) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(seed, uint64(w)+1))
	for !l.killed.Load() {
		l.m.mu.Lock()
		open := l.m.pick(isOpen)
		present := l.m.pick(isPresent)
		var closed []*stream
		for _, s := range present {
			if s.closed == triYes {
				closed = append(closed, s)
			}
		}
		l.m.mu.Unlock()
		switch {
		case len(open) < 16 || (len(open) < 40 && l.createP.ok(rng)):
			l.create(rng, w)
		case len(open) > 8 && l.closeP.ok(rng):
			l.closeRace(rng, w, open[rng.IntN(len(open))], false)
		case len(open) > 8 && l.appendCloseP.ok(rng):
			l.closeRace(rng, w, open[rng.IntN(len(open))], true)
		case len(present) > 20 && l.deleteP.ok(rng):
			l.delete(present[rng.IntN(len(present))])
		case len(present) > 0 && l.forkP.ok(rng):
			l.fork(rng, w, present[rng.IntN(len(present))])
		default:
			switch x := rng.IntN(100); {
			case x < 6:
				l.observe(rng, present[rng.IntN(len(present))])
			case x < 8:
				l.longPoll(rng, open[rng.IntN(len(open))])
			case x < 9 && len(closed) > 0:
				l.appendTo(rng, w, closed[rng.IntN(len(closed))], false)
			default:
				l.appendTo(rng, w, open[rng.IntN(len(open))], false)
			}
		}
	}
}

// create makes a new stream: JSON or binary, sometimes with initial data,
// rarely created closed.
func (l *load) create(rng *rand.Rand, w int) {
	m := l.m
	isJSON := rng.IntN(2) == 0
	typ := map[bool]string{true: "json", false: "bin"}[isJSON]
	withData := rng.IntN(3) == 0
	closed := rng.IntN(25) == 0
	m.mu.Lock()
	s := m.newStream(l.name(w, typ[:1]), isJSON, nil, 0, l.round)
	var r *request
	var body []byte
	if withData {
		r = m.newRequest(s, "create-"+typ, l.round)
		r.close = closed
		if isJSON {
			r.body, r.stored = jsonBody(rng, r.id, 1+rng.IntN(4), w)
		} else {
			r.body = binBody(rng, r.id, 1+rng.IntN(3), 300)
			r.stored = r.body
		}
		body = r.body
	}
	s.closeTried = closed
	m.st.opsSent["create"]++
	m.mu.Unlock()

	hdr := []string{"Content-Type", s.ct()}
	if closed {
		hdr = append(hdr, "Stream-Closed", "true")
	}
	ctx, cancel := l.ctx(rng, 0)
	res := do(ctx, l.c, http.MethodPut, l.url(s), body, hdr...)
	cancel()

	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case res.status == http.StatusCreated:
		s.exists = triYes
		m.st.acked["create"]++
		next, err := res.next()
		if err != nil {
			m.fail("round %d: create %s: 201 with bad Stream-Next-Offset: %v", l.round, s, err)
			return
		}
		var want uint64
		if r != nil {
			want = uint64(len(r.stored))
		}
		if next != want {
			m.fail("round %d: create %s: 201 with Stream-Next-Offset %d, want %d", l.round, s, next, want)
		}
		if ct := res.h.Get("Content-Type"); ct != s.ct() {
			m.fail("round %d: create %s: Content-Type %q, want %q", l.round, s, ct, s.ct())
		}
		if r != nil {
			m.ackAt(r, next, l.round, "create 201")
		} else {
			s.ackedEnds = append(s.ackedEnds, next)
		}
		if closed != res.closedHdr() {
			m.fail("round %d: create %s (Stream-Closed: %v): 201 with Stream-Closed %q", l.round, s, closed, res.h.Get("Stream-Closed"))
		}
		if closed {
			m.ackClose(s, next, "create with Stream-Closed", l.round)
		}
	case res.status == 0 && res.notSent:
		s.exists = triNo
		if r != nil {
			r.status, r.why = rsNever, "create refused at connect"
		}
	case res.status == 0:
		s.exists = triMaybe
		if r != nil {
			r.status, r.why = rsMaybe, fmt.Sprintf("create without answer: %v", res.err)
		}
	default:
		m.fail("round %d: create %s: unexpected %s", l.round, s, res)
		s.exists = triMaybe // HEAD after the restart decides
		if r != nil {
			r.status, r.why = rsMaybe, "create answered "+strconv.Itoa(res.status)
		}
	}
}

// fork creates a fork of src at an offset the server returned for src.
func (l *load) fork(rng *rand.Rand, w int, src *stream) {
	m := l.m
	m.mu.Lock()
	if !src.usable() || len(src.ackedEnds) == 0 {
		m.mu.Unlock()
		return
	}
	off := src.ackedEnds[rng.IntN(len(src.ackedEnds))]
	f := m.newStream(l.name(w, "f"), src.json, src, off, l.round)
	m.st.opsSent["fork"]++
	m.mu.Unlock()

	hdr := []string{"Stream-Forked-From", streamPrefix + src.name, "Stream-Fork-Offset", fmtOffset(off)}
	if rng.IntN(2) == 0 {
		hdr = append(hdr, "Content-Type", src.ct())
	}
	ctx, cancel := l.ctx(rng, 0)
	res := do(ctx, l.c, http.MethodPut, l.url(f), nil, hdr...)
	cancel()

	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case res.status == http.StatusCreated:
		f.exists = triYes
		m.st.acked["fork"]++
		next, err := res.next()
		if err != nil || next != off {
			m.fail("round %d: fork %s of %s at %d: 201 with Stream-Next-Offset %q, want %s", l.round, f, src, off, res.h.Get("Stream-Next-Offset"), fmtOffset(off))
		}
		if res.closedHdr() {
			m.fail("round %d: fork %s of %s: created closed (a fork starts open)", l.round, f, src)
		}
		if ct := res.h.Get("Content-Type"); ct != f.ct() {
			m.fail("round %d: fork %s: Content-Type %q, want %q", l.round, f, ct, f.ct())
		}
		// The source's delete may have been sent after this fork and
		// answered before it: then the server ordered the fork first and
		// the delete was a soft delete. The verifier checks that (410 while
		// this fork lives, its bytes still readable through the fork).
		f.ackedEnds = append(f.ackedEnds, off)
	case res.status == http.StatusNotFound || res.status == http.StatusConflict:
		// The source was deleted (404) or soft-deleted (409) meanwhile.
		f.exists = triNo
		l.m.gone(src, fmt.Sprintf("fork of it answered %d", res.status), l.round)
	case res.status == 0 && res.notSent:
		f.exists = triNo
	case res.status == 0:
		f.exists = triMaybe
	default:
		m.fail("round %d: fork %s of %s at %d: unexpected %s", l.round, f, src, off, res)
		f.exists = triMaybe
	}
}

// buildAppend fills r's body for s.
func (l *load) buildAppend(rng *rand.Rand, w int, r *request) {
	s := r.s
	if s.json {
		r.body, r.stored = jsonBody(rng, r.id, 1+rng.IntN(5), w)
		r.ct = "application/json"
		if rng.IntN(8) == 0 {
			r.ct = "application/json; charset=utf-8"
		}
		return
	}
	if rng.IntN(150) == 0 && l.largeLeft.Add(-1) >= 0 {
		// At least LargeAppendBytes (256 KiB): stored by reference.
		r.body = binRecord(rng, r.id, 0, 1, 256<<10+rng.IntN(128<<10))
	} else {
		r.body = binBody(rng, r.id, 1+rng.IntN(4), 400)
	}
	r.stored = r.body
	r.ct = "application/octet-stream"
}

// appendTo sends a plain (non-producer) append, or append-and-close.
func (l *load) appendTo(rng *rand.Rand, w int, s *stream, closeIt bool) {
	m := l.m
	kind := map[bool]string{true: "json", false: "bin"}[s.json]
	if closeIt {
		kind = "close-" + kind
	}
	m.mu.Lock()
	r := m.newRequest(s, kind, l.round)
	r.close = closeIt
	if closeIt {
		s.closeTried = true
	}
	l.buildAppend(rng, w, r)
	m.mu.Unlock()

	hdr := []string{"Content-Type", r.ct}
	if closeIt {
		hdr = append(hdr, "Stream-Closed", "true")
	}
	ctx, cancel := l.ctx(rng, 60)
	res := do(ctx, l.c, http.MethodPost, l.url(s), r.body, hdr...)
	cancel()

	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case res.status == http.StatusNoContent:
		end, err := res.next()
		if err != nil {
			m.fail("round %d: stream %s: %s: 204 with bad Stream-Next-Offset: %v", l.round, s, r, err)
			r.status, r.why = rsAckedSome, "acknowledged without a usable offset"
			return
		}
		m.ackAt(r, end, l.round, "append 204")
		if closeIt {
			if !res.closedHdr() {
				m.fail("round %d: stream %s: append-and-close acknowledged without Stream-Closed: true (%s)", l.round, s, res)
			}
			m.ackClose(s, end, r.String(), l.round)
		} else if res.closedHdr() {
			m.fail("round %d: stream %s: plain append acknowledged with Stream-Closed: true (%s)", l.round, s, res)
		}
	case res.status == http.StatusConflict && res.closedHdr():
		r.status, r.why = rsNever, "409 Stream-Closed"
		m.st.rejectedClosed++
		if final, err := res.next(); err != nil {
			m.fail("round %d: stream %s: 409 Stream-Closed without a valid Stream-Next-Offset: %v", l.round, s, err)
		} else {
			l.m.sawClosed(s, final, "an append was answered 409 Stream-Closed", l.round)
		}
	case res.status == http.StatusNotFound || res.status == http.StatusGone:
		r.status, r.why = rsNever, fmt.Sprintf("answered %d", res.status)
		l.m.gone(s, fmt.Sprintf("an append was answered %d", res.status), l.round)
	case res.status == 0 && res.notSent:
		r.status, r.why = rsNever, "refused at connect"
	case res.status == 0:
		r.status, r.why = rsMaybe, fmt.Sprintf("no answer: %v", res.err)
	default:
		m.fail("round %d: stream %s: %s: unexpected %s", l.round, s, r, res)
		r.status, r.why = rsMaybe, "answered "+strconv.Itoa(res.status)
	}
}

// closeRace closes s (close-only, or append-and-close) while 0-3 other
// appends race it.
func (l *load) closeRace(rng *rand.Rand, w int, s *stream, withData bool) {
	var wg sync.WaitGroup
	for range rng.IntN(4) {
		crng := childRNG(rng)
		wg.Go(func() { l.appendTo(crng, w, s, false) })
	}
	crng := childRNG(rng)
	if withData {
		wg.Go(func() { l.appendTo(crng, w, s, true) })
	} else {
		wg.Go(func() { l.closeOnly(crng, s) })
	}
	wg.Wait()
}

func (l *load) closeOnly(rng *rand.Rand, s *stream) {
	m := l.m
	m.mu.Lock()
	s.closeTried = true
	m.st.opsSent["close"]++
	m.mu.Unlock()
	hdr := []string{"Stream-Closed", "true"}
	if rng.IntN(2) == 0 {
		hdr = append(hdr, "Content-Type", s.ct()) // allowed and ignored on an empty body
	}
	ctx, cancel := l.ctx(rng, 0)
	res := do(ctx, l.c, http.MethodPost, l.url(s), nil, hdr...)
	cancel()

	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case res.status == http.StatusNoContent:
		m.st.acked["close"]++
		final, err := res.next()
		if err != nil || !res.closedHdr() {
			m.fail("round %d: stream %s: close acknowledged without Stream-Closed: true and a valid Stream-Next-Offset: %s", l.round, s, res)
			return
		}
		m.ackClose(s, final, "close-only POST", l.round)
	case res.status == http.StatusNotFound || res.status == http.StatusGone:
		l.m.gone(s, fmt.Sprintf("a close was answered %d", res.status), l.round)
	case res.status == 0 && res.notSent:
	case res.status == 0:
		if s.closed != triYes {
			s.closed = triMaybe
		}
	default:
		m.fail("round %d: stream %s: close: unexpected %s", l.round, s, res)
		if s.closed != triYes {
			s.closed = triMaybe
		}
	}
}

func (l *load) delete(s *stream) {
	m := l.m
	m.mu.Lock()
	if !s.usable() {
		m.mu.Unlock()
		return
	}
	s.delTried = true
	m.st.opsSent["delete"]++
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), reqTimeout)
	res := do(ctx, l.c, http.MethodDelete, l.url(s), nil)
	cancel()

	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case res.status == http.StatusNoContent:
		m.st.acked["delete"]++
		s.deleted, s.delRound = triYes, l.round
	case res.status == 0 && res.notSent:
		s.delTried = false
	case res.status == 0:
		s.deleted = triMaybe
	default:
		m.fail("round %d: delete %s: unexpected %s", l.round, s, res)
		s.deleted = triMaybe
	}
}

// observe reads s from the start, as a client would: what it sees must be
// whole records now and still be there after the restart.
func (l *load) observe(rng *rand.Rand, s *stream) {
	ctx, cancel := context.WithTimeout(context.Background(), reqTimeout)
	defer cancel()
	out, res, err := readAll(ctx, l.c, l.base, s, rng)
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		switch {
		case res.status == http.StatusNotFound || res.status == http.StatusGone:
			l.m.gone(s, fmt.Sprintf("a read was answered %d", res.status), l.round)
		case res.status == 0 || l.killed.Load():
			// The server went away mid-read.
		default:
			m.fail("round %d: stream %s: read during load: %v (%s)", l.round, s, err, res)
		}
		return
	}
	if _, err := parseStored(s.json, out.stored, 0); err != nil {
		m.fail("round %d: stream %s: a reader saw data that is not whole records: %v", l.round, s, err)
		return
	}
	if out.closed {
		l.m.sawClosed(s, out.tail, "a read returned Stream-Closed: true", l.round)
	}
	l.addObservation(s, observation{off: 0, data: out.stored, round: l.round})
}

// addObservation keeps at most a few observations per stream. Called with mu held.
func (l *load) addObservation(s *stream, o observation) {
	if len(o.data) == 0 {
		return
	}
	for i, x := range s.observed {
		if x.off == o.off {
			if len(o.data) > len(x.data) {
				s.observed[i] = o
			}
			return
		}
	}
	if len(s.observed) < 4 {
		s.observed = append(s.observed, o)
	} else {
		s.observed[int(o.off)%4] = o
	}
}

// longPoll waits at an acknowledged offset of s for new data.
func (l *load) longPoll(rng *rand.Rand, s *stream) {
	m := l.m
	m.mu.Lock()
	if len(s.ackedEnds) == 0 {
		m.mu.Unlock()
		return
	}
	off := s.ackedEnds[len(s.ackedEnds)-1-rng.IntN(min(len(s.ackedEnds), 3))]
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res := do(ctx, l.c, http.MethodGet, l.url(s)+"?offset="+fmtOffset(off)+"&live=long-poll", nil)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch res.status {
	case http.StatusOK:
		if res.err != nil {
			return
		}
		stored, err := storedOfPage(s.json, res.body)
		if err == nil {
			_, err = parseStored(s.json, stored, off)
		}
		if err != nil {
			m.fail("round %d: stream %s: a long-poll from %d saw data that is not whole records: %v", l.round, s, off, err)
			return
		}
		if next, err := res.next(); err != nil || next != off+uint64(len(stored)) {
			m.fail("round %d: stream %s: long-poll from %d returned %d stored bytes with Stream-Next-Offset %q", l.round, s, off, len(stored), res.h.Get("Stream-Next-Offset"))
		}
		l.addObservation(s, observation{off: off, data: stored, round: l.round})
	case http.StatusNoContent:
	case http.StatusNotFound, http.StatusGone:
		l.m.gone(s, fmt.Sprintf("a long-poll was answered %d", res.status), l.round)
	case 0:
	default:
		m.fail("round %d: stream %s: long-poll from %d: unexpected %s", l.round, s, off, res)
	}
}

// producerWorker drives one idempotent producer at a time: sequential
// requests (epoch, seq, seq+1, ...); a request without an answer is resent
// with the same (epoch, seq) until it gets one, or, if the server was
// killed, left in flight for the retry after the restart.
func (l *load) producerWorker(pw int, seed uint64) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(seed, uint64(pw)+1000))
	m := l.m
	for !l.killed.Load() {
		m.mu.Lock()
		p := m.prods[pw]
		if p == nil || p.retired {
			open := m.pick(isOpen)
			if len(open) == 0 {
				m.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				continue
			}
			p = &producer{id: fmt.Sprintf("prod-%d-%d", pw, len(m.allProds)), worker: pw, s: open[rng.IntN(len(open))]}
			m.prods[pw] = p
			m.allProds = append(m.allProds, p)
		}
		if p.inflight != nil {
			m.mu.Unlock()
			return // resolved after the restart
		}
		s := p.s
		closeIt := rng.IntN(150) == 0
		kind := map[bool]string{true: "prod-json", false: "prod-bin"}[s.json]
		if closeIt {
			kind += "-close"
			s.closeTried = true
		}
		r := m.newRequest(s, kind, l.round)
		r.prod, r.epoch, r.seq, r.close = p, p.epoch, p.seq, closeIt
		l.buildAppend(rng, 100+pw, r)
		m.mu.Unlock()
		l.sendProducer(rng, r)
	}
}

func producerHeaders(r *request) []string {
	h := []string{"Content-Type", r.ct, "Producer-Id", r.prod.id,
		"Producer-Epoch", strconv.FormatUint(r.epoch, 10), "Producer-Seq", strconv.FormatUint(r.seq, 10)}
	if r.close {
		h = append(h, "Stream-Closed", "true")
	}
	return h
}

func (l *load) sendProducer(rng *rand.Rand, r *request) {
	m := l.m
	retried := false
	for attempt := 0; ; attempt++ {
		ctx, cancel := l.ctx(rng, 20)
		if attempt > 0 {
			ctx, cancel = context.WithTimeout(context.Background(), reqTimeout)
		}
		res := do(ctx, l.c, http.MethodPost, l.url(r.s), r.body, producerHeaders(r)...)
		cancel()
		if res.status == 0 {
			m.mu.Lock()
			if l.killed.Load() || attempt >= 5 {
				if !l.killed.Load() {
					m.fail("round %d: %s: no answer after %d attempts while the server was up: %v", l.round, r, attempt+1, res.err)
				}
				r.status, r.why = rsMaybe, fmt.Sprintf("in flight at the kill: %v", res.err)
				if res.notSent && !retried {
					r.why = "refused at connect (never sent)"
					r.unsent = true
				}
				r.prod.inflight = r
				m.mu.Unlock()
				return
			}
			m.mu.Unlock()
			retried = true
			continue
		}
		m.mu.Lock()
		out := l.m.recordProducer(r, res, retried, l.round)
		if retried {
			switch out {
			case "new":
				m.st.midRetryNew++
			case "dup":
				m.st.midRetryDup++
			}
		}
		m.mu.Unlock()
		return
	}
}

// recordProducer records the answer to a producer request; retried says an
// earlier attempt got no answer (so the server may have applied it). It
// returns "new" (200), "dup" (204), "closed", "gone" or "error". Called with
// mu held.
func (m *model) recordProducer(r *request, res result, retried bool, round int) string {
	p, s := r.prod, r.s
	p.inflight = nil
	checkEcho := func() {
		e, ok1 := res.uintHdr("Producer-Epoch")
		q, ok2 := res.uintHdr("Producer-Seq")
		if !ok1 || !ok2 || e != r.epoch || q != r.seq {
			m.fail("round %d: stream %s: %s answered %s: want Producer-Epoch %d, Producer-Seq %d", round, s, r, res, r.epoch, r.seq)
		}
	}
	switch {
	case res.status == http.StatusOK:
		checkEcho()
		end, err := res.next()
		if err != nil {
			m.fail("round %d: stream %s: %s: 200 with bad Stream-Next-Offset: %v", round, s, r, err)
			r.status = rsAckedSome
		} else {
			m.ackAt(r, end, round, "producer 200")
		}
		if r.close != res.closedHdr() {
			m.fail("round %d: stream %s: %s answered %s: Stream-Closed does not match the request", round, s, r, res)
		}
		if r.close && err == nil {
			m.ackClose(s, end, r.String(), round)
			p.retired = true
		}
		p.acked = append(p.acked, r)
		p.seq = r.seq + 1
		return "new"
	case res.status == http.StatusNoContent:
		if !retried {
			m.fail("round %d: stream %s: %s was sent once and answered 204 (duplicate): %s", round, s, r, res)
		}
		checkEcho()
		r.status, r.why = rsAckedSome, "retry answered 204 duplicate"
		if r.close {
			if !res.closedHdr() {
				m.fail("round %d: stream %s: duplicate of closing %s answered without Stream-Closed: %s", round, s, r, res)
			}
			// Its position (ending at the final offset) is learned from the
			// data at the next verification, like any duplicate's.
			if final, err := res.next(); err == nil {
				m.ackClose(s, final, r.String(), round)
			}
			p.retired = true
		}
		p.acked = append(p.acked, r)
		p.seq = r.seq + 1
		m.st.acked[r.kind+"(dup)"]++
		return "dup"
	case res.status == http.StatusConflict && res.closedHdr():
		r.status, r.why = rsNever, "409 Stream-Closed"
		if retried {
			r.status, r.why = rsMaybe, "an attempt without answer, then 409 Stream-Closed"
		}
		p.retired = true
		m.st.rejectedClosed++
		if final, err := res.next(); err == nil {
			m.sawClosed(s, final, "a producer append was answered 409 Stream-Closed", round)
		}
		return "closed"
	case res.status == http.StatusNotFound || res.status == http.StatusGone:
		r.status, r.why = rsNever, fmt.Sprintf("answered %d", res.status)
		if retried {
			r.status, r.why = rsMaybe, fmt.Sprintf("an attempt without answer, then %d", res.status)
		}
		p.retired = true
		m.gone(s, fmt.Sprintf("a producer append was answered %d", res.status), round)
		return "gone"
	default:
		m.fail("round %d: stream %s: %s: unexpected %s", round, s, r, res)
		r.status, r.why = rsMaybe, "answered "+strconv.Itoa(res.status)
		p.retired = true
		return "error"
	}
}
