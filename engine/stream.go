package engine

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durastream/durastream/index"
)

// Stream lifecycle states.
const (
	stLive        int32 = iota
	stSoftDeleted       // deleted while forks still read its data
	stDeleted
)

// streamMeta is a stream's immutable configuration.
type streamMeta struct {
	contentType string
	json        bool
	ttl         uint64 // seconds; valid when hasTTL
	hasTTL      bool
	expiresAt   int64 // unix nanoseconds; 0: none
	createdAt   int64 // unix nanoseconds

	// Forks.
	source     *stream // nil unless a fork
	forkOffset Offset  // divergence point: bytes below come from source
	reqOffset  *Offset // Stream-Fork-Offset as requested (nil: defaulted)
	reqSub     uint64
}

// producer is the idempotent-producer state of one producer id on a stream.
type producer struct {
	epoch, seq uint64
	lsn        uint64 // commit-log LSN of its last accepted append
}

// stream is one stream. Fields under "writer state" are guarded by mu and
// describe everything written to the commit log, durable or not. Readers
// decide what to return from the atomics under "published", which move after
// the commit, and take mu only to pin the segments holding those bytes (and
// to see a delete that came after their lookup: collectSegment).
type stream struct {
	id   uint64
	path string
	meta *streamMeta

	mu sync.Mutex
	// writer state
	tail      Offset
	closed    bool
	closedBy  *producerTuple // producer request that closed it, if any
	lastLSN   uint64         // LSN of the last commit-log record for this stream
	mseq      string         // last Stream-Seq
	producers map[string]*producer
	data      *streamData // nil until the stream has its own bytes
	forks     int32       // live forks reading this stream's data
	state     int32       // stLive, stSoftDeleted, stDeleted (also atomically readable)
	// delLSN is the LSN of the delete record that made the stream deleted
	// or soft-deleted (0 if that was recovered: durable already). Answers
	// that reveal the delete wait for it (goneAfterDurable).
	delLSN atomic.Uint64
	refEnd Offset // end of the last large append written by reference (fRef)

	// published
	vis        atomic.Uint64 // readable tail
	visClosed  atomic.Bool
	ready      atomic.Bool   // create is durable
	lastAccess atomic.Int64  // unix nanos; reads and writes, not HEAD (sliding TTL)
	refDone    atomic.Uint64 // every by-reference append below this offset is durable
	wake       atomic.Pointer[chan struct{}]
}

type producerTuple struct {
	id         string
	epoch, seq uint64
}

// stateNow reads the lifecycle state without the lock.
func (s *stream) stateNow() int32 { return atomic.LoadInt32(&s.state) }

func (s *stream) setState(v int32) { atomic.StoreInt32(&s.state, v) }

// publish moves the readable tail to at least tail (all bytes below it are
// durable), marks closure if closed, and wakes waiters.
func (s *stream) publish(tail Offset, closed bool) {
	for {
		v := s.vis.Load()
		if v >= uint64(tail) || s.vis.CompareAndSwap(v, uint64(tail)) {
			break
		}
	}
	if closed {
		s.visClosed.Store(true)
	}
	s.notify()
}

// notify wakes every waiter of this stream (and no other): each wait cycle
// shares one channel, closed and dropped here.
func (s *stream) notify() {
	if ch := s.wake.Swap(nil); ch != nil {
		close(*ch)
	}
}

// waitChan returns the channel the next notify closes.
func (s *stream) waitChan() <-chan struct{} {
	for {
		if ch := s.wake.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if s.wake.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// published returns the readable tail and closure, consistently: closure is
// read first, and the tail never moves once a stream is closed.
func (s *stream) published() (Offset, bool) {
	c := s.visClosed.Load()
	return Offset(s.vis.Load()), c
}

// expired reports whether the stream's TTL or expiry has passed at now.
func (s *stream) expired(now time.Time) bool {
	m := s.meta
	if m.expiresAt != 0 && now.UnixNano() >= m.expiresAt {
		return true
	}
	if m.hasTTL {
		last := time.Unix(0, s.lastAccess.Load())
		return now.Sub(last) >= time.Duration(m.ttl)*time.Second
	}
	return false
}

func (s *stream) touch(now time.Time) {
	if s.meta.hasTTL {
		s.lastAccess.Store(now.UnixNano())
	}
}

// streamData is a stream's own stored bytes: segments and their index.
// Guarded by the stream's mu.
type streamData struct {
	segs []*dataSeg
	idx  *index.Index // nil until loaded (lazily, after recovery)
	// idxPartial: replay rebuilt idx without the message boundaries inside
	// remote segments (recovery never waits on object storage): it is
	// dropped after recovery and rebuilt whole at first use.
	idxPartial bool
}

// index returns the loaded index, or nil (no data, or not loaded yet).
func (d *streamData) index() *index.Index {
	if d == nil {
		return nil
	}
	return d.idx
}

// lastSeg returns the newest segment, or nil.
func (d *streamData) lastSeg() *dataSeg {
	if d == nil || len(d.segs) == 0 {
		return nil
	}
	return d.segs[len(d.segs)-1]
}

// isJSON reports whether a content type selects JSON mode:
// application/json, case-insensitive, parameters allowed.
func isJSON(contentType string) bool {
	return strings.EqualFold(mediaType(contentType), "application/json")
}

// MediaType returns the type/subtype part of a content type, trimmed.
func MediaType(ct string) string { return mediaType(ct) }

func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimSpace(ct)
}

// sameMediaType compares content types by media type, case-insensitively.
func sameMediaType(a, b string) bool {
	return strings.EqualFold(mediaType(a), mediaType(b))
}
