package crashtest

// The model: everything the clients were told (acknowledged), everything
// whose outcome they do not know (in flight at a kill), and what that
// implies for the stored state after a restart. One mutex guards it all;
// HTTP requests are never made with it held.

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// reqStatus is what the clients know about an append request's outcome.
type reqStatus int

const (
	rsPending   reqStatus = iota // being sent
	rsAcked                      // acknowledged at [start, end)
	rsAckedSome                  // acknowledged (a producer duplicate, 204) at an unknown position: exactly once
	rsMaybe                      // outcome unknown (no response): zero or one time
	rsNever                      // rejected, never sent, or found absent after a restart: must never appear
)

func (s reqStatus) String() string {
	return [...]string{"pending", "acked", "acked-somewhere", "maybe", "never"}[s]
}

// request is one request that carries data (append, append-and-close, create
// with data). Its id is in every message/record of its body.
type request struct {
	id     uint64
	s      *stream
	kind   string // json, bin, prod-json, prod-bin, close-json, ..., create
	body   []byte // as sent
	ct     string // Content-Type sent
	stored []byte // the stored form the server must keep
	status reqStatus
	why    string // for rsNever / rsMaybe: how it got there
	start  uint64
	end    uint64
	round  int // round it was sent in
	close  bool
	// producer requests
	prod         *producer
	epoch, seq   uint64
	verified     bool // counted in the summary once
	ackedAtRound int
	unsent       bool // a producer request refused at connect
}

func (r *request) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "request %d (%s, %d stored bytes, sent in round %d, %s", r.id, r.kind, len(r.stored), r.round, r.status)
	if r.status == rsAcked {
		fmt.Fprintf(&b, " at [%d,%d) = [%s,%s)", r.start, r.end, fmtOffset(r.start), fmtOffset(r.end))
	}
	if r.why != "" {
		fmt.Fprintf(&b, ": %s", r.why)
	}
	if r.prod != nil {
		fmt.Fprintf(&b, "; producer %s epoch %d seq %d", r.prod.id, r.epoch, r.seq)
	}
	if r.close {
		b.WriteString("; with Stream-Closed: true")
	}
	b.WriteString(")")
	return b.String()
}

// tri is a yes/no/unknown lifecycle fact.
type tri int

const (
	triNo tri = iota
	triYes
	triMaybe
)

type stream struct {
	idx     int // creation order: a fork comes after its source
	name    string
	json    bool
	src     *stream // fork source
	forkOff uint64  // fork offset (0 for a plain stream)
	forks   []*stream

	exists      tri // its create was acknowledged / not / unknown
	createRound int

	closeTried bool   // a close was sent (so 409 Stream-Closed is allowed)
	closed     tri    // closure: acknowledged (or seen after restart) / unknown
	final      uint64 // final offset when closed == triYes
	probed     bool   // an append after the close was refused (probeClosed)
	closedBy   string // what acknowledged the close

	delTried bool // a DELETE was sent
	deleted  tri  // delete acknowledged (or seen after restart) / unknown
	delRound int

	// What the server said during load before any close/delete was
	// acknowledged (a 409 Stream-Closed, a 404): it must hold after a restart.
	seenClosed string
	seenFinal  uint64
	seenGone   string

	reqs         []*request // data requests aimed at this stream
	ackedEnds    []uint64   // offsets the server returned for this stream (fork offsets come from here)
	maxAcked     uint64
	verifiedTail uint64 // tail at the last verification: later appends start at or after it

	// Reads made during load: bytes [off, off+len) a reader saw.
	observed []observation

	snap      []byte // stored bytes from the last verification
	snapRound int    // round of snap (0: none)
	snapReqs  int    // len(reqs) when snap was checked
	headTail  uint64 // HEAD tail in this verification
	headCode  int
}

type observation struct {
	off   uint64
	data  []byte
	round int
}

func (s *stream) String() string { return s.name }

// present: created and not (known or possibly) deleted.
func (s *stream) usable() bool {
	return s.exists == triYes && s.deleted == triNo && !s.delTried
}

func (s *stream) ct() string {
	if s.json {
		return "application/json"
	}
	return "application/octet-stream"
}

// ancestorOf reports whether a is s or in s's fork chain.
func (s *stream) hasAncestor(a *stream) bool {
	for x := s; x != nil; x = x.src {
		if x == a {
			return true
		}
	}
	return false
}

// alive: the stream's data is still kept (it exists and is not deleted, or is
// deleted but a live fork still reads it). A deleted stream that is alive is
// soft-deleted (410); one that is not is gone (404).
func (s *stream) alive() bool {
	if s.exists != triYes {
		return false
	}
	if s.deleted == triNo {
		return true
	}
	for _, f := range s.forks {
		if f.alive() {
			return true
		}
	}
	return false
}

type producer struct {
	id     string
	worker int
	s      *stream
	epoch  uint64
	seq    uint64 // next seq to send
	acked  []*request
	// prevEpoch is an acknowledged request from an earlier epoch: resending
	// it must be fenced (403).
	prevEpoch *request
	inflight  *request // sent, no answer (the server was killed): resend after restart
	retired   bool     // its stream was closed or deleted
}

type stats struct {
	rounds, kills, graceful         int
	recoveryMax, recoveryTotal      time.Duration
	verifiedByKind                  map[string]int // acknowledged requests verified, by kind
	verifyChecks                    int            // acknowledged requests checked (every round)
	creates, forks, closes, deletes int            // acknowledged lifecycle ops verified after restart
	appendCloses                    int
	inflightDurable, inflightReapp  int // producer requests in flight at a kill: retry was 204 / 200
	inflightClosed, inflightGone    int // ... stream closed / deleted meanwhile
	unsentRetried                   int // producer requests refused at connect: retry appended them
	midRetryDup, midRetryNew        int // producer requests retried after a client timeout
	maybePresent, maybeAbsent       int // non-producer requests without an answer: found / not found
	dupChecks, staleChecks          int // producer duplicate (204) and stale-epoch (403) checks
	closedProbes, rejectedClosed    int // appends to closed streams: probes after restart / during load
	deletedChecks                   int
	observations                    int // reads during load later checked against the recovered data
	lost, duplicated                int // acknowledged requests and streams found missing (each once); requests stored twice
	opsSent                         map[string]int
	acked                           map[string]int
	fetch                           fetchStats
}

type model struct {
	mu       sync.Mutex
	streams  []*stream
	byName   map[string]*stream
	reqs     map[uint64]*request
	nextID   uint64
	prods    []*producer // current producer of each producer worker
	allProds []*producer
	fetches  []*fetchRec // durable fetches (fetch_load_test.go)
	st       stats

	failMu   sync.Mutex
	failures []string
	onFail   func(string)

	lostSeen map[any]bool // requests and streams counted in st.lost
}

func newModel() *model {
	return &model{
		byName: map[string]*stream{},
		reqs:   map[uint64]*request{},
		st: stats{verifiedByKind: map[string]int{}, opsSent: map[string]int{},
			acked: map[string]int{}},
	}
}

func (m *model) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	m.failMu.Lock()
	m.failures = append(m.failures, msg)
	m.failMu.Unlock()
	if m.onFail != nil {
		m.onFail(msg)
	}
}

func (m *model) nFailures() int {
	m.failMu.Lock()
	defer m.failMu.Unlock()
	return len(m.failures)
}

// noteLost counts an acknowledged request or stream found missing, once
// however many checks find it. Called with mu held.
func (m *model) noteLost(x any) {
	if m.lostSeen == nil {
		m.lostSeen = map[any]bool{}
	}
	if !m.lostSeen[x] {
		m.lostSeen[x] = true
		m.st.lost++
	}
}

// newStream adds a stream whose create is about to be sent. Called with mu held.
func (m *model) newStream(name string, isJSON bool, src *stream, forkOff uint64, round int) *stream {
	s := &stream{idx: len(m.streams), name: name, json: isJSON, src: src, forkOff: forkOff,
		exists: triMaybe, createRound: round, verifiedTail: forkOff}
	m.streams = append(m.streams, s)
	m.byName[name] = s
	if src != nil {
		src.forks = append(src.forks, s)
	}
	return s
}

// newRequest registers a data request. Called with mu held.
func (m *model) newRequest(s *stream, kind string, round int) *request {
	m.nextID++
	r := &request{id: m.nextID, s: s, kind: kind, round: round}
	m.reqs[r.id] = r
	s.reqs = append(s.reqs, r)
	m.st.opsSent[kind]++
	return r
}

// ackAt records that r was acknowledged with end offset end. Called with mu held.
func (m *model) ackAt(r *request, end uint64, round int, how string) {
	s := r.s
	n := uint64(len(r.stored))
	if end < n {
		m.fail("round %d: stream %s: %s acknowledged with Stream-Next-Offset %d, less than its %d stored bytes", round, s, r, end, n)
		r.status, r.why = rsAckedSome, "acknowledged at an impossible offset"
		return
	}
	start := end - n
	if start < s.verifiedTail {
		m.fail("round %d: stream %s: offsets went backwards: %s acknowledged at [%d,%d) (%s), but the stream's tail was already %d after the last restart",
			round, s, r, start, end, how, s.verifiedTail)
	}
	if start < s.forkOff {
		m.fail("round %d: stream %s: %s acknowledged at [%d,%d), below the fork offset %d", round, s, r, start, end, s.forkOff)
	}
	if s.closed == triYes && end > s.final && !(r.close && end == s.final) {
		m.fail("round %d: stream %s: %s acknowledged at [%d,%d) (%s), past the final offset %d of the close acknowledged by %s",
			round, s, r, start, end, how, s.final, s.closedBy)
	}
	r.status, r.start, r.end, r.why = rsAcked, start, end, how
	r.ackedAtRound = round
	s.ackedEnds = append(s.ackedEnds, end)
	s.maxAcked = max(s.maxAcked, end)
	m.st.acked[r.kind]++
}

// ackClose records an acknowledged close at final. Called with mu held.
func (m *model) ackClose(s *stream, final uint64, by string, round int) {
	if s.closed == triYes {
		if final != s.final {
			m.fail("round %d: stream %s: close acknowledged at final offset %d by %s, but %s acknowledged it at %d",
				round, s, final, by, s.closedBy, s.final)
		}
		return
	}
	s.closed, s.final, s.closedBy = triYes, final, fmt.Sprintf("%s (round %d)", by, round)
	for _, r := range s.reqs {
		if r.status == rsAcked && r.end > final {
			m.fail("round %d: stream %s: close acknowledged at final offset %d by %s, but %s was acknowledged past it",
				round, s, final, by, r)
		}
	}
}

// openStreams returns the streams appends may target. Called with mu held.
func (m *model) pick(filter func(*stream) bool) []*stream {
	var out []*stream
	for _, s := range m.streams {
		if filter(s) {
			out = append(out, s)
		}
	}
	return out
}

func isOpen(s *stream) bool    { return s.usable() && s.closed == triNo && !s.closeTried }
func isPresent(s *stream) bool { return s.usable() }

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// gone records that the server said s does not exist (404/410) or that it
// is deleted. Called with mu held.
func (m *model) gone(s *stream, how string, round int) {
	if !s.delTried {
		m.fail("round %d: stream %s: %s, but it was never deleted", round, s, how)
		return
	}
	if s.deleted != triYes && s.seenGone == "" {
		s.seenGone = fmt.Sprintf("%s in round %d before its delete was acknowledged", how, round)
	}
}

// sawClosed records that the server said s is closed at final. Called with mu held.
func (m *model) sawClosed(s *stream, final uint64, how string, round int) {
	if !s.closeTried {
		m.fail("round %d: stream %s: %s, but no close was ever sent", round, s, how)
		return
	}
	if s.closed == triYes {
		if final != s.final {
			m.fail("round %d: stream %s: %s at final offset %d, but the close was acknowledged at %d by %s", round, s, how, final, s.final, s.closedBy)
		}
		return
	}
	if s.seenClosed == "" {
		s.seenClosed, s.seenFinal = fmt.Sprintf("%s in round %d before any close was acknowledged", how, round), final
	}
}
