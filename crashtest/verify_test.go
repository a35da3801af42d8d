package crashtest

// Verification after a restart, through HTTP only: HEAD every stream, read
// every live one from the start, and hold the bytes against the model.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// readOut is a stream read from offset -1 to its tail, page after page.
type readOut struct {
	stored []byte // the stored bytes (JSON: messages each followed by ',')
	tail   uint64
	closed bool // the last page had Stream-Closed: true
	pages  int
}

// storedOfPage turns a read response body into stored bytes: a JSON page is
// '[' + stored without its last ',' + ']'.
func storedOfPage(isJSON bool, body []byte) ([]byte, error) {
	if !isJSON {
		return body, nil
	}
	if len(body) < 2 || body[0] != '[' || body[len(body)-1] != ']' || !json.Valid(body) {
		return nil, fmt.Errorf("JSON read page is not a valid JSON array: %.120q", body)
	}
	if len(body) == 2 {
		return nil, nil
	}
	out := make([]byte, 0, len(body)-1)
	out = append(out, body[1:len(body)-1]...)
	return append(out, ','), nil
}

// readAll reads s from -1, following Stream-Next-Offset until
// Stream-Up-To-Date. It returns the failing response with any error.
func readAll(ctx context.Context, c *http.Client, base string, s *stream, rng *rand.Rand) (readOut, result, error) {
	var out readOut
	off := "-1"
	var pos uint64
	for out.pages = 1; out.pages <= 100000; out.pages++ {
		hdr := []string{}
		if rng != nil && rng.IntN(2) == 0 {
			hdr = append(hdr, "Accept-Encoding", "identity")
		} // else Go asks for gzip and decodes it
		res := do(ctx, c, http.MethodGet, streamURL(base, s.name)+"?offset="+off, nil, hdr...)
		if res.status != http.StatusOK || res.err != nil {
			return out, res, fmt.Errorf("GET offset=%s: %s", off, res)
		}
		if ct := res.h.Get("Content-Type"); ct != s.ct() {
			return out, res, fmt.Errorf("GET offset=%s: Content-Type %q, want %q", off, ct, s.ct())
		}
		next, err := res.next()
		if err != nil {
			return out, res, fmt.Errorf("GET offset=%s: %v", off, err)
		}
		stored, err := storedOfPage(s.json, res.body)
		if err != nil {
			return out, res, fmt.Errorf("GET offset=%s: %v", off, err)
		}
		if next != pos+uint64(len(stored)) {
			return out, res, fmt.Errorf("GET offset=%s: %d stored bytes from %d, but Stream-Next-Offset %d", off, len(stored), pos, next)
		}
		out.stored = append(out.stored, stored...)
		pos = next
		if res.h.Get("Stream-Up-To-Date") == "true" {
			out.tail, out.closed = pos, res.closedHdr()
			return out, res, nil
		}
		if len(stored) == 0 {
			return out, res, fmt.Errorf("GET offset=%s: empty page without Stream-Up-To-Date", off)
		}
		off = fmtOffset(pos)
	}
	return out, result{}, fmt.Errorf("read did not end")
}

// verifier checks the model against a freshly restarted server.
type verifier struct {
	m     *model
	c     *http.Client
	base  string
	round int
	label string // "after the kill of round N", ...

	// Producer requests in flight at the kill: their occurrences in the
	// recovered data (resolved by resending them).
	inflight map[uint64][]occurrence
}

func (v *verifier) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), reqTimeout)
}

func (v *verifier) fail(format string, args ...any) {
	v.m.fail("round %d, %s: "+format, append([]any{v.round, v.label}, args...)...)
}

// run checks everything; the model's mutex is held throughout (no load runs).
func (v *verifier) run() {
	m := v.m
	m.mu.Lock()
	defer m.mu.Unlock()
	v.inflight = map[uint64][]occurrence{}
	v.heads()
	v.deletedStreams()
	for _, s := range m.streams {
		if s.exists == triYes && s.deleted == triNo {
			v.readStream(s)
		} else {
			s.observed = nil
		}
	}
}

// heads resolves every unknown create, close and delete with HEAD, and checks
// the known ones.
func (v *verifier) heads() {
	for _, s := range v.m.streams {
		if s.exists == triNo {
			continue
		}
		ctx, cancel := v.ctx()
		res := do(ctx, v.c, http.MethodHead, streamURL(v.base, s.name), nil)
		cancel()
		s.headCode = res.status
		switch res.status {
		case http.StatusOK:
			if s.exists == triMaybe {
				s.exists = triYes // the create was durable
			}
			switch {
			case s.deleted == triYes:
				v.fail("stream %s: its delete was acknowledged in round %d, but it exists again (HEAD 200)", s, s.delRound)
			case s.deleted == triMaybe || s.delTried:
				s.deleted, s.delTried = triNo, false // the delete was not durable
			}
			if s.seenGone != "" {
				v.fail("stream %s: the server reported it gone (%s), but after the restart it exists (HEAD 200): a delete was visible before it was durable", s, s.seenGone)
			}
			s.seenGone = ""
			if ct := res.h.Get("Content-Type"); ct != s.ct() {
				v.fail("stream %s: HEAD Content-Type %q, want %q", s, ct, s.ct())
			}
			tail, err := res.next()
			if err != nil {
				v.fail("stream %s: HEAD: %v", s, err)
			}
			s.headTail = tail
			if tail < s.maxAcked {
				v.fail("stream %s: HEAD tail %d is below the acknowledged offset %d", s, tail, s.maxAcked)
			}
			if tail < s.verifiedTail {
				v.fail("stream %s: HEAD tail %d went backwards from %d", s, tail, s.verifiedTail)
			}
			if res.closedHdr() {
				switch {
				case s.closed == triYes && tail != s.final:
					v.fail("stream %s: closed at %d after restart, but the close was acknowledged at %d by %s", s, tail, s.final, s.closedBy)
				case s.closed != triYes:
					if !s.closeTried {
						v.fail("stream %s: closed after restart, but no close was ever sent", s)
					}
					s.closed, s.final, s.closedBy = triYes, tail, fmt.Sprintf("a close without answer, found durable %s", v.label)
				}
				if s.seenClosed != "" && s.seenFinal != tail {
					v.fail("stream %s: the server reported it closed at %d (%s), but after the restart it is closed at %d", s, s.seenFinal, s.seenClosed, tail)
				}
			} else {
				if s.closed == triYes {
					v.fail("stream %s: REOPENED: its close was acknowledged at final offset %d by %s, but after the restart HEAD has no Stream-Closed (tail %d)", s, s.final, s.closedBy, tail)
				} else {
					if s.seenClosed != "" {
						v.fail("stream %s: the server reported it closed at %d (%s), but after the restart it is open (tail %d): a close was visible before it was durable", s, s.seenFinal, s.seenClosed, tail)
					}
					s.closed, s.closeTried = triNo, false
				}
			}
			s.seenClosed = ""
		case http.StatusNotFound, http.StatusGone:
			switch {
			case s.exists == triMaybe:
				if res.status == http.StatusGone {
					v.fail("stream %s: its create had no answer, and it is soft-deleted (410)", s)
				}
				s.exists = triNo // the create was not durable
			case s.deleted == triYes:
			case s.deleted == triMaybe || s.delTried:
				s.deleted, s.delRound = triYes, v.round // the delete was durable
			default:
				v.m.noteLost(s)
				v.fail("stream %s: LOST: HEAD %d after restart, but it was created (%s) and never deleted", s, res.status, v.createdHow(s))
			}
		default:
			v.fail("stream %s: HEAD: unexpected %s", s, res)
		}
	}
}

func (v *verifier) createdHow(s *stream) string {
	if s.src != nil {
		return fmt.Sprintf("fork of %s at %d, round %d", s.src, s.forkOff, s.createRound)
	}
	return fmt.Sprintf("round %d", s.createRound)
}

// deletedStreams: a deleted stream answers 410 while a fork still reads it,
// 404 once none does.
func (v *verifier) deletedStreams() {
	for _, s := range v.m.streams {
		if s.exists != triYes || s.deleted != triYes {
			continue
		}
		want := http.StatusNotFound
		if s.alive() {
			want = http.StatusGone
		}
		ctx, cancel := v.ctx()
		res := do(ctx, v.c, http.MethodGet, streamURL(v.base, s.name)+"?offset=-1", nil)
		cancel()
		if s.headCode != want || res.status != want {
			var forks []string
			for _, f := range s.forks {
				forks = append(forks, fmt.Sprintf("%s(exists %d, deleted %d, alive %v)", f, f.exists, f.deleted, f.alive()))
			}
			v.fail("stream %s (delete acknowledged in round %d): HEAD %d, GET %d, want %d; forks %v", s, s.delRound, s.headCode, res.status, want, forks)
		}
		v.m.st.deletedChecks++
	}
}

// readStream reads s and checks it against the model.
func (v *verifier) readStream(s *stream) {
	m := v.m
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	out, res, err := readAll(ctx, v.c, v.base, s, nil)
	cancel()
	if err != nil {
		v.fail("stream %s: read: %v (%s)", s, err, res)
		return
	}
	b := out.stored
	if out.tail != s.headTail {
		v.fail("stream %s: read ends at %d, HEAD said %d", s, out.tail, s.headTail)
	}
	if out.closed != (s.closed == triYes) {
		v.fail("stream %s: last read page Stream-Closed %v, HEAD closed %v", s, out.closed, s.closed == triYes)
	}
	if s.closed == triYes && uint64(len(b)) != s.final {
		v.fail("stream %s: closed at final offset %d (%s), but holds %d bytes", s, s.final, s.closedBy, len(b))
	}

	// Observations made during load must still be there.
	for _, o := range s.observed {
		m.st.observations++
		if o.off+uint64(len(o.data)) > uint64(len(b)) {
			v.fail("stream %s: a reader saw [%d,%d) in round %d, but after the restart the stream ends at %d: visible data was lost",
				s, o.off, o.off+uint64(len(o.data)), o.round, len(b))
		} else if !bytes.Equal(b[o.off:o.off+uint64(len(o.data))], o.data) {
			v.fail("stream %s: a reader saw different bytes at [%d,%d) in round %d than are there after the restart",
				s, o.off, o.off+uint64(len(o.data)), o.round)
		}
	}
	s.observed = nil

	// Fork prefix: the source's bytes below the fork offset.
	if s.src != nil {
		src := s.src
		switch {
		case uint64(len(b)) < s.forkOff:
			v.fail("fork %s of %s at %d: holds only %d bytes", s, src, s.forkOff, len(b))
		case src.snapRound > 0 && uint64(len(src.snap)) >= s.forkOff:
			if !bytes.Equal(b[:s.forkOff], src.snap[:s.forkOff]) {
				i := firstDiff(b, src.snap)
				v.fail("fork %s of %s at %d: inherited bytes differ from the source's (snapshot of round %d) at offset %d", s, src, s.forkOff, src.snapRound, i)
			}
		case src.snapRound == v.round:
			v.fail("fork %s of %s at %d: the source holds only %d bytes", s, src, s.forkOff, len(src.snap))
		}
	}

	fast := s.snap != nil && bytes.Equal(b, s.snap) && s.snapReqs == len(s.reqs)
	if !fast {
		v.checkData(s, b)
	}
	s.snap, s.snapRound, s.snapReqs = b, v.round, len(s.reqs)
	s.verifiedTail = uint64(len(b))
	// The tail HEAD returned is an offset the server gave out: forks and
	// long-polls may use it.
	if n := len(s.ackedEnds); n == 0 || s.ackedEnds[n-1] != s.verifiedTail {
		s.ackedEnds = append(s.ackedEnds, s.verifiedTail)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// checkData parses s's bytes into requests and checks every one: known,
// byte-exact, where it was acknowledged, at most once; every acknowledged
// request present; unanswered requests resolved.
func (v *verifier) checkData(s *stream, b []byte) {
	m := v.m
	occs, err := parseStored(s.json, b, 0)
	if err != nil {
		v.fail("stream %s: the stored data is not whole records (half-written append?): %v", s, err)
	}
	// limit[x]: below which offset s holds x's data (x in s's fork chain).
	limit := map[*stream]uint64{}
	lim := uint64(math.MaxUint64)
	for x := s; x != nil; x = x.src {
		limit[x] = lim
		lim = min(lim, x.forkOff)
	}
	seen := map[uint64][]occurrence{}
	for _, o := range occs {
		r := m.reqs[o.q]
		if r == nil {
			v.fail("stream %s: [%d,%d) holds request %d, which no client sent", s, o.start, o.end, o.q)
			continue
		}
		seen[o.q] = append(seen[o.q], o)
		xl, ok := limit[r.s]
		switch {
		case !ok:
			v.fail("stream %s: [%d,%d) holds %s of stream %s", s, o.start, o.end, r, r.s)
			continue
		case r.s == s && o.start < s.forkOff, o.end > xl:
			v.fail("stream %s: [%d,%d) holds %s outside its stream's range", s, o.start, o.end, r)
		}
		if !bytes.Equal(b[o.start:o.end], r.stored) {
			v.fail("stream %s: [%d,%d) holds request %d, but its bytes differ from what was sent (%s)", s, o.start, o.end, o.q, r)
		}
		switch r.status {
		case rsAcked:
			if o.start != r.start || o.end != r.end {
				v.fail("stream %s: %s found at [%d,%d) instead", s, r, o.start, o.end)
			}
		case rsNever:
			v.fail("stream %s: data that must not be there: %s found at [%d,%d)", s, r, o.start, o.end)
		case rsPending:
			v.fail("stream %s: %s still pending during verification", s, r)
		}
	}
	for q, os := range seen {
		if len(os) > 1 {
			v.m.st.duplicated++
			v.fail("stream %s: DUPLICATE: %s appears %d times, at %v", s, m.reqs[q], len(os), os)
		}
	}
	// Every acknowledged request of s, and of its sources below the fork
	// offsets, must be there.
	for x := s; x != nil; x = x.src {
		for _, r := range x.reqs {
			must := r.status == rsAcked || r.status == rsAckedSome
			if x != s {
				must = r.status == rsAcked && r.end <= limit[x]
			}
			if !must {
				continue
			}
			m.st.verifyChecks++
			if len(seen[r.id]) == 0 {
				v.m.noteLost(r)
				v.fail("stream %s: LOST: acknowledged %s is not in the stream (%d bytes) after the restart", s, r, len(b))
				continue
			}
			if x == s && !r.verified {
				r.verified = true
				m.st.verifiedByKind[r.kind]++
			}
		}
	}
	// Resolve s's own unanswered requests, now that the server restarted.
	for _, r := range s.reqs {
		os := seen[r.id]
		switch r.status {
		case rsAckedSome:
			if len(os) == 1 {
				r.status, r.start, r.end = rsAcked, os[0].start, os[0].end
			}
		case rsMaybe:
			if r.prod != nil && r.prod.inflight == r {
				v.inflight[r.id] = os // resolved by resending it
				continue
			}
			if len(os) == 1 {
				r.status, r.start, r.end = rsAcked, os[0].start, os[0].end
				r.why += fmt.Sprintf("; found durable %s", v.label)
				m.st.maybePresent++
			} else if len(os) == 0 {
				r.status = rsNever
				r.why += fmt.Sprintf("; absent %s", v.label)
				m.st.maybeAbsent++
			}
		}
	}
}

// resolveInflight resends every producer request that was in flight at the
// kill, with the same (epoch, seq), and checks the answer against what the
// recovered data holds: 204 if and only if it is there once, 200 if and
// only if it is not there (and then it is appended once).
func (v *verifier) resolveInflight() {
	m := v.m
	m.mu.Lock()
	var todo []*request
	for _, p := range m.allProds {
		if p.inflight != nil {
			todo = append(todo, p.inflight)
		}
	}
	m.mu.Unlock()
	for _, r := range todo {
		m.mu.Lock()
		s := r.s
		os, read := v.inflight[r.id]
		if s.exists != triYes || s.deleted != triNo || !read {
			r.prod.inflight, r.prod.retired = nil, true
			m.st.inflightGone++
			m.mu.Unlock()
			continue
		}
		if r.close {
			// heads() cleared closeTried if the close was not durable;
			// this resend sends it again.
			s.closeTried = true
		}
		m.mu.Unlock()

		ctx, cancel := v.ctx()
		res := do(ctx, v.c, http.MethodPost, streamURL(v.base, s.name), r.body, producerHeaders(r)...)
		cancel()

		m.mu.Lock()
		was := r.String()
		out := m.recordProducer(r, res, !r.unsent, v.round)
		switch out {
		case "new":
			if len(os) > 0 {
				v.m.st.duplicated++
				v.fail("stream %s: DUPLICATE: %s was durable (found at [%d,%d) after the restart), but its retry was appended again: %s",
					s, was, os[0].start, os[0].end, res)
			}
			if r.unsent {
				m.st.unsentRetried++
			} else {
				m.st.inflightReapp++
			}
		case "dup":
			switch {
			case r.unsent:
				v.fail("stream %s: %s was refused at connect, but its retry was answered 204 duplicate", s, was)
			case len(os) != 1:
				v.m.noteLost(r)
				v.fail("stream %s: LOST: the retry of %s was answered 204 (duplicate: already stored), but the recovered stream holds it %d times", s, was, len(os))
			default:
				r.status, r.start, r.end = rsAcked, os[0].start, os[0].end
				if r.close && (s.closed != triYes || s.final != r.end) {
					v.fail("stream %s: the retry of closing %s was answered 204, but the stream is not closed at its end (closed %v at %d)", s, r, s.closed == triYes, s.final)
				}
			}
			m.st.inflightDurable++
		case "closed", "gone":
			m.st.inflightClosed++
			if len(os) == 1 {
				r.status, r.start, r.end = rsAcked, os[0].start, os[0].end
			} else if len(os) == 0 {
				r.status = rsNever
			}
		}
		m.mu.Unlock()
	}
}

// producerChecks resends acknowledged producer requests: a duplicate gets
// 204 and leaves the tail alone (409 Stream-Closed if another request closed
// the stream); a request from an epoch the producer has since left gets 403.
func (v *verifier) producerChecks(rng *rand.Rand) {
	m := v.m
	m.mu.Lock()
	var ps []*producer
	for i := len(m.allProds) - 1; i >= 0 && len(ps) < 40; i-- {
		p := m.allProds[i]
		if p.inflight == nil && len(p.acked) > 0 && p.s.exists == triYes && p.s.deleted == triNo {
			ps = append(ps, p)
		}
	}
	m.mu.Unlock()
	for _, p := range ps {
		s := p.s
		tail, ok := v.headTail(s)
		if !ok {
			continue
		}
		m.mu.Lock()
		last := p.acked[len(p.acked)-1]
		picks := []*request{last}
		if len(p.acked) > 1 {
			picks = append(picks, p.acked[rng.IntN(len(p.acked)-1)])
		}
		closed, final, closedBy := s.closed == triYes, s.final, s.closedBy
		m.mu.Unlock()
		for _, r := range picks {
			ctx, cancel := v.ctx()
			res := do(ctx, v.c, http.MethodPost, streamURL(v.base, s.name), r.body, producerHeaders(r)...)
			cancel()
			m.mu.Lock()
			m.st.dupChecks++
			next, nerr := res.next()
			switch {
			case closed && !(r == last && r.close):
				// Only the request that closed the stream is a duplicate.
				if res.status != http.StatusConflict || !res.closedHdr() || nerr != nil || next != final {
					v.fail("stream %s (closed at %d by %s): resending acknowledged %s: got %s, want 409 Stream-Closed at %d", s, final, closedBy, r, res, final)
				}
			default:
				e, _ := res.uintHdr("Producer-Epoch")
				q, _ := res.uintHdr("Producer-Seq")
				if res.status != http.StatusNoContent || nerr != nil || next != tail || e != p.epoch || q != last.seq || res.closedHdr() != closed {
					v.fail("stream %s: resending acknowledged %s: got %s; want 204 duplicate, Stream-Next-Offset %d (unchanged), Producer-Epoch %d, Producer-Seq %d (highest accepted)",
						s, r, res, tail, p.epoch, last.seq)
				}
			}
			m.mu.Unlock()
		}
		if after, ok := v.headTail(s); ok && after != tail {
			v.fail("stream %s: resending acknowledged producer requests moved the tail from %d to %d", s, tail, after)
		}
		m.mu.Lock()
		old := p.prevEpoch
		p.prevEpoch = nil
		m.mu.Unlock()
		if old != nil {
			ctx, cancel := v.ctx()
			res := do(ctx, v.c, http.MethodPost, streamURL(v.base, s.name), old.body, producerHeaders(old)...)
			cancel()
			m.mu.Lock()
			m.st.staleChecks++
			e, _ := res.uintHdr("Producer-Epoch")
			switch {
			case closed:
				if res.status != http.StatusConflict || !res.closedHdr() {
					v.fail("stream %s (closed): resending %s from an earlier epoch: got %s, want 409 Stream-Closed", s, old, res)
				}
			case res.status != http.StatusForbidden || e != p.epoch:
				v.fail("stream %s: resending %s from epoch %d after epoch %d: got %s, want 403 with Producer-Epoch %d", s, old, old.epoch, p.epoch, res, p.epoch)
			}
			m.mu.Unlock()
			if after, ok := v.headTail(s); ok && after != tail {
				v.fail("stream %s: a fenced request moved the tail from %d to %d", s, tail, after)
			}
		}
	}
}

func (v *verifier) headTail(s *stream) (uint64, bool) {
	ctx, cancel := v.ctx()
	res := do(ctx, v.c, http.MethodHead, streamURL(v.base, s.name), nil)
	cancel()
	if res.status != http.StatusOK {
		v.m.mu.Lock()
		v.fail("stream %s: HEAD: %s", s, res)
		v.m.mu.Unlock()
		return 0, false
	}
	t, err := res.next()
	if err != nil {
		v.m.mu.Lock()
		v.fail("stream %s: HEAD: %v", s, err)
		v.m.mu.Unlock()
		return 0, false
	}
	return t, true
}

// probeClosed appends to closed streams (each newly closed one, and a sample
// of the others): 409 with Stream-Closed: true and the final offset; the
// data must never appear. (HEAD checks every closed stream every round.)
func (v *verifier) probeClosed(rng *rand.Rand) {
	m := v.m
	m.mu.Lock()
	var closed, old []*stream
	for _, s := range m.streams {
		if s.exists == triYes && s.deleted == triNo && s.closed == triYes {
			if s.probed {
				old = append(old, s)
			} else {
				s.probed = true
				closed = append(closed, s)
			}
		}
	}
	rng.Shuffle(len(old), func(i, j int) { old[i], old[j] = old[j], old[i] })
	closed = append(closed, old[:min(len(old), 20)]...)
	m.mu.Unlock()
	for _, s := range closed {
		m.mu.Lock()
		r := m.newRequest(s, "probe", v.round)
		if s.json {
			r.body, r.stored = jsonBody(rng, r.id, 1, 0)
		} else {
			r.body = binBody(rng, r.id, 1, 40)
			r.stored = r.body
		}
		r.ct = s.ct()
		m.mu.Unlock()
		ctx, cancel := v.ctx()
		res := do(ctx, v.c, http.MethodPost, streamURL(v.base, s.name), r.body, "Content-Type", r.ct)
		cancel()
		m.mu.Lock()
		m.st.closedProbes++
		next, err := res.next()
		switch {
		case res.status == http.StatusConflict && res.closedHdr() && err == nil && next == s.final:
			r.status, r.why = rsNever, "probe of a closed stream answered 409"
		case res.status == http.StatusNoContent:
			v.fail("stream %s: REOPENED: closed at %d by %s, but a new append was acknowledged: %s", s, s.final, s.closedBy, res)
			if err == nil {
				m.ackAt(r, next, v.round, "probe 204")
			}
		default:
			v.fail("stream %s (closed at %d by %s): append: got %s, want 409 Stream-Closed: true, Stream-Next-Offset %d", s, s.final, s.closedBy, res, s.final)
			r.status, r.why = rsMaybe, "probe answered "+strconv.Itoa(res.status)
		}
		m.mu.Unlock()
	}
}
