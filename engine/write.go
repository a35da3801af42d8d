package engine

import (
	"context"
	"fmt"
	"hash/crc32"
	"strings"
	"sync/atomic"
	"time"

	"github.com/durastream/durastream/segment"
	"github.com/puzpuzpuz/xsync/v3"
)

// DefaultContentType is used when a stream is created without one.
const DefaultContentType = "application/octet-stream"

// CreateOptions configures a new stream.
type CreateOptions struct {
	ContentType string // default DefaultContentType; a fork inherits its source's
	// TTL is a sliding time-to-live in seconds, reset by reads and writes
	// (not by Head). Valid when HasTTL. Exclusive with ExpiresAt.
	TTL    uint64
	HasTTL bool
	// ExpiresAt is an absolute expiry; zero means none.
	ExpiresAt time.Time
	// Closed creates the stream closed: Data is its whole content.
	Closed bool
	// Data is the initial content (JSON streams: a JSON value; `[]` is empty).
	Data []byte

	// ForkFrom makes the stream a fork of the stream at this path.
	ForkFrom string
	// ForkOffset is the divergence point; nil means the source's tail.
	ForkOffset *Offset
	// ForkSubOffset refines the divergence point past ForkOffset: messages
	// for JSON streams, bytes otherwise.
	ForkSubOffset uint64
}

// StreamInfo describes a stream.
type StreamInfo struct {
	Path        string
	ContentType string
	Tail        Offset // next offset (the readable tail)
	Closed      bool
	TTL         uint64 // seconds, when HasTTL
	HasTTL      bool
	ExpiresAt   time.Time
	CreatedAt   time.Time
	ForkedFrom  string // source path, for forks
	ForkOffset  Offset
}

// Create creates a stream. It is idempotent: when a stream with the same
// configuration (content type, TTL/expiry, closure, fork parameters) exists
// it returns its info and created=false; a different configuration is
// ErrConfigMismatch. A soft-deleted stream's path cannot be reused (ErrConfigMismatch).
func (e *Engine) Create(ctx context.Context, path string, o CreateOptions) (StreamInfo, bool, error) {
	if err := e.enter(); err != nil {
		return StreamInfo{}, false, err
	}
	defer e.leave()
	if err := ctx.Err(); err != nil {
		return StreamInfo{}, false, err
	}
	if err := e.checkPath(path); err != nil {
		return StreamInfo{}, false, err
	}
	if o.HasTTL && !o.ExpiresAt.IsZero() {
		return StreamInfo{}, false, fmt.Errorf("%w: TTL and expiry are exclusive", ErrBadTTL)
	}
	if err := checkExpiry(&o); err != nil {
		return StreamInfo{}, false, err
	}
	if o.ForkFrom == "" && (o.ForkOffset != nil || o.ForkSubOffset != 0) {
		return StreamInfo{}, false, fmt.Errorf("%w: fork offset without a fork source", ErrForkOffset)
	}
	for {
		if s, ok := e.streams.Load(path); ok {
			info, retry, err := e.createExisting(ctx, s, &o)
			if !retry {
				return info, false, err
			}
			continue
		}
		info, retry, err := e.createNew(ctx, path, &o)
		if !retry {
			return info, err == nil, err
		}
	}
}

// createExisting answers a create for a path that is taken. retry means the
// stream went away meanwhile.
func (e *Engine) createExisting(ctx context.Context, s *stream, o *CreateOptions) (StreamInfo, bool, error) {
	s.mu.Lock()
	state, lsn, refEnd := s.state, s.lastLSN, s.refEnd
	now := e.clock()
	if state == stLive && s.ready.Load() && s.expired(now) {
		s.mu.Unlock()
		e.expire(s)
		return StreamInfo{}, true, nil
	}
	match := state == stLive && s.closed == o.Closed && e.sameConfig(s, o)
	s.mu.Unlock()
	switch {
	case state == stDeleted:
		return StreamInfo{}, true, nil
	case state == stSoftDeleted:
		return StreamInfo{}, false, e.goneAfterDurable(s, fmt.Errorf("%w: path belongs to a deleted stream that forks still reference", ErrConfigMismatch))
	case !match:
		return StreamInfo{}, false, e.answerDurable(ctx, s, lsn, refEnd, ErrConfigMismatch)
	}
	// The stream may have been created a moment ago and not be durable yet.
	if err := e.durable(ctx, lsn); err != nil {
		return StreamInfo{}, false, err
	}
	s.touch(now)
	return e.info(s), false, nil
}

// sameConfig compares a create request with an existing stream. Called with s.mu held.
func (e *Engine) sameConfig(s *stream, o *CreateOptions) bool {
	m := s.meta
	if o.ForkFrom != "" || m.source != nil {
		if m.source == nil || m.source.path != o.ForkFrom || m.reqSub != o.ForkSubOffset {
			return false
		}
		if (o.ForkOffset == nil) != (m.reqOffset == nil) || (o.ForkOffset != nil && *o.ForkOffset != *m.reqOffset) {
			return false
		}
		if o.ContentType != "" && !sameMediaType(o.ContentType, m.contentType) {
			return false
		}
		if !o.HasTTL && o.ExpiresAt.IsZero() {
			return true // TTL/expiry were inherited from the source
		}
	} else if !sameMediaType(orDefault(o.ContentType), m.contentType) {
		return false
	}
	return o.HasTTL == m.hasTTL && (!o.HasTTL || o.TTL == m.ttl) && unixNanos(o.ExpiresAt) == m.expiresAt
}

func orDefault(ct string) string {
	if ct == "" {
		return DefaultContentType
	}
	return ct
}

// contentTypes interns content types: a million streams mostly share a
// few, and a type taken from a request header would otherwise keep that
// header's whole line alive. Bounded; rare types are copied instead.
var contentTypes = xsync.NewMapOf[string, string]()

const maxInternedTypes = 1024

func internContentType(ct string) string {
	if v, ok := contentTypes.Load(ct); ok {
		return v
	}
	ct = strings.Clone(ct)
	if contentTypes.Size() < maxInternedTypes {
		v, _ := contentTypes.LoadOrStore(ct, ct)
		return v
	}
	return ct
}

// createNew makes a stream at a free path. retry means another creator won
// the path first.
func (e *Engine) createNew(ctx context.Context, path string, o *CreateOptions) (StreamInfo, bool, error) {
	now := e.clock()
	m := &streamMeta{contentType: internContentType(orDefault(o.ContentType)), hasTTL: o.HasTTL, ttl: o.TTL, expiresAt: unixNanos(o.ExpiresAt), createdAt: now.UnixNano()}
	// A copy: the caller's string may be a slice of a larger buffer (an
	// HTTP request line) that the stream would otherwise keep alive.
	path = strings.Clone(path)
	s := &stream{id: e.nextID.Add(1), path: path, meta: m}
	s.lastAccess.Store(now.UnixNano())
	s.mu.Lock() // held until the create record is written: appends wait behind it
	defer s.mu.Unlock()

	var src *stream
	if o.ForkFrom != "" {
		var err error
		if src, err = e.lookupSource(o.ForkFrom); err != nil {
			return StreamInfo{}, false, err
		}
		// Resolved from published (immutable) data, before taking src.mu:
		// reading it takes that lock.
		if err := e.resolveFork(s, src, o); err != nil {
			return StreamInfo{}, false, err
		}
		// Lock order: a fork before its source. The create record is written
		// under the source's lock so that it is ordered with the source's
		// delete record exactly as the reference count is.
		src.mu.Lock()
		defer src.mu.Unlock()
		if src.state != stLive {
			return StreamInfo{}, false, ErrSourceDeleted
		}
	}
	m.json = isJSON(m.contentType)

	buf := e.getBuf()
	defer e.putBuf(buf)
	data := o.Data
	if m.json && len(data) > 0 {
		framed, _, err := FrameJSON((*buf)[:0], data, true)
		if err != nil {
			return StreamInfo{}, false, err
		}
		*buf = framed
		data = framed
	}
	if int64(len(data)) > e.opts.MaxRecordSize {
		return StreamInfo{}, false, ErrTooLarge
	}

	if _, loaded := e.streams.LoadOrStore(path, s); loaded {
		return StreamInfo{}, true, nil
	}
	s.tail = m.forkOffset
	err := e.writeData(s, s.tail, data)
	written := err == nil
	var lsn uint64
	if err == nil {
		rec := createRec{id: s.id, path: path, contentType: m.contentType, ttl: m.ttl,
			createdAt: now.UnixNano(), forkOffset: uint64(m.forkOffset), reqSub: m.reqSub}
		if o.Closed {
			rec.flags |= fClosed
		}
		if m.hasTTL {
			rec.flags |= fTTL
		}
		if m.expiresAt != 0 {
			rec.flags |= fExpires
			rec.expiresAt = m.expiresAt
		}
		if src != nil {
			rec.flags |= fFork
			rec.forkSrc = src.id
			if m.reqOffset != nil {
				rec.flags |= fForkOff
				rec.reqOffset = uint64(*m.reqOffset)
			}
		}
		meta := e.getBuf()
		*meta = rec.encode((*meta)[:0])
		lsn, err = e.commit(*meta, data)
		e.putBuf(meta)
	}
	if err != nil {
		s.setState(stDeleted)
		e.streams.Compute(path, dropIfSame(s))
		if written {
			e.storedBytes.Add(-int64(len(data)))
		}
		if s.data != nil {
			e.store.drop(s.data.segs)
			e.store.removeFiles(s.id, s.data.segs)
		}
		return StreamInfo{}, false, err
	}
	if src != nil {
		src.forks++
	}
	s.tail += Offset(len(data))
	s.closed = o.Closed
	s.lastLSN = lsn
	e.nStreams.Add(1)

	// Wait for the commit without holding the locks.
	tail, closed := s.tail, s.closed
	s.mu.Unlock()
	if src != nil {
		src.mu.Unlock()
	}
	ready := func() {
		s.publish(tail, closed)
		s.ready.Store(true)
	}
	err = e.durable(ctx, lsn)
	if err != nil && err == ctx.Err() {
		e.finishLater(func(ctx context.Context) error { return e.durable(ctx, lsn) }, ready)
	}
	if src != nil {
		src.mu.Lock()
	}
	s.mu.Lock()
	if err != nil {
		return StreamInfo{}, false, err
	}
	ready()
	return e.info(s), false, nil
}

// lookupSource finds a fork source by path.
func (e *Engine) lookupSource(path string) (*stream, error) {
	src, err := e.lookup(path)
	switch err {
	case nil:
		return src, nil
	case ErrGone:
		return nil, ErrSourceDeleted
	default:
		return nil, ErrSourceNotFound
	}
}

// resolveFork fills a fork's metadata from its source. Called with s.mu held.
func (e *Engine) resolveFork(s, src *stream, o *CreateOptions) error {
	m, sm := s.meta, src.meta
	if o.ContentType != "" && !sameMediaType(o.ContentType, sm.contentType) {
		return fmt.Errorf("%w: content type differs from the fork source", ErrConfigMismatch)
	}
	m.contentType = sm.contentType
	tail, _ := src.published()
	anchor := tail
	if o.ForkOffset != nil {
		anchor = *o.ForkOffset
		off := *o.ForkOffset
		m.reqOffset = &off
	}
	if anchor > tail {
		return ErrForkOffset
	}
	if sm.json && anchor != tail {
		if err := e.checkBoundary(src, anchor, tail); err != nil {
			return fmt.Errorf("fork offset: %w", err)
		}
	}
	m.reqSub = o.ForkSubOffset
	fork := anchor
	if o.ForkSubOffset > 0 {
		var err error
		if fork, err = e.subOffset(src, anchor, tail, o.ForkSubOffset); err != nil {
			return err
		}
	}
	m.source = src
	m.forkOffset = fork
	// TTL and expiry: a fork that asks for neither inherits its source's.
	if !o.HasTTL && o.ExpiresAt.IsZero() {
		m.hasTTL, m.ttl, m.expiresAt = sm.hasTTL, sm.ttl, sm.expiresAt
	}
	return nil
}

// subOffset resolves a sub-offset past anchor in src: JSON streams count
// messages, others bytes. It may not pass the source's tail.
func (e *Engine) subOffset(src *stream, anchor, tail Offset, sub uint64) (Offset, error) {
	if !src.meta.json {
		if sub > uint64(tail-anchor) {
			return 0, ErrSubOffset
		}
		return anchor + Offset(sub), nil
	}
	pos := anchor
	for range sub {
		end, err := e.messageEnd(src, pos, tail)
		if err != nil {
			return 0, err
		}
		if end < 0 {
			return 0, ErrSubOffset
		}
		pos = Offset(end)
	}
	return pos, nil
}

// AppendOptions qualifies an append.
type AppendOptions struct {
	// ContentType, when set and the body is not empty, must match the
	// stream's media type (ErrContentType).
	ContentType string
	// Seq is the Stream-Seq writer sequence; it must increase strictly
	// (byte-wise) per stream. Empty: none.
	Seq string
	// Producer makes the append idempotent.
	Producer *Producer
	// Close closes the stream after appending (data may be empty).
	Close bool
}

// Producer identifies an idempotent producer's request.
type Producer struct {
	ID    string
	Epoch uint64
	Seq   uint64
}

// AppendResult is the outcome of an append.
type AppendResult struct {
	Tail   Offset // the stream's tail after the append
	Closed bool   // the stream is closed now
	// Duplicate: a producer retry of data already stored, or a repeated
	// close; nothing was appended.
	Duplicate bool
	// ProducerEpoch and ProducerSeq echo the producer's accepted state.
	ProducerEpoch, ProducerSeq uint64
}

// Append adds data to a stream (and/or closes it) and returns after the
// change is durable and visible to readers.
//
// If ctx ends before the append is durable, Append returns ctx.Err() and
// the append's outcome is unknown: it may still become durable and
// visible (a producer retry with the same sequence number resolves it).
// A ctx already done when Append is called changes nothing.
func (e *Engine) Append(ctx context.Context, path string, data []byte, o AppendOptions) (AppendResult, error) {
	if err := e.enter(); err != nil {
		return AppendResult{}, err
	}
	defer e.leave()
	if err := ctx.Err(); err != nil {
		return AppendResult{}, err
	}
	s, err := e.lookup(path)
	if err != nil {
		return AppendResult{}, err
	}
	if e.appendLookedUp != nil {
		e.appendLookedUp(path)
	}
	if len(data) == 0 && !o.Close {
		return AppendResult{}, ErrEmptyAppend
	}
	if o.Producer != nil && o.Producer.ID == "" {
		return AppendResult{}, ErrInvalidProducer
	}
	now := e.clock()
	s.touch(now)

	buf := e.getBuf()
	defer e.putBuf(buf)
	if s.meta.json && len(data) > 0 {
		// Frame before taking the lock: validation is the expensive part.
		framed, _, err := FrameJSON((*buf)[:0], data, false)
		if err != nil {
			// A closed stream or a content-type mismatch takes precedence.
			if perr := e.precheck(ctx, s, len(data) > 0, &o); perr != nil {
				return AppendResult{}, perr
			}
			return AppendResult{}, err
		}
		*buf = framed
		data = framed
	}
	if int64(len(data)) > e.opts.MaxRecordSize {
		return AppendResult{}, ErrTooLarge
	}

	s.mu.Lock()
	res, p, err := e.appendLocked(s, data, &o)
	last, refEnd := s.lastLSN, s.refEnd
	s.mu.Unlock()
	if err != nil {
		return res, e.answerDurable(ctx, s, last, refEnd, err)
	}
	if p.refFile != nil {
		// A large append's bytes are only in its segment: sync them here,
		// in parallel with the group commit of its small record.
		err := p.refFile.SyncRange(p.refPos, p.refLen)
		if err == nil && p.refNewFile {
			err = syncDir(e.opts.FS, e.store.fanDir(s.id))
		}
		if keep := e.opts.LargeAppendCacheBytes; err == nil && keep >= 0 {
			// Drop the bytes one append's length behind the cached window:
			// successive appends walk the window down the segment. (Written
			// with O_DIRECT, only the partial blocks at their ends were cached.)
			if end := p.refPos + p.refLen - keep; end > 0 {
				p.refFile.Evict(max(0, end-p.refLen), min(end, p.refLen))
			}
		}
		p.refFile.Release()
		if err != nil {
			e.wal.fail(fmt.Errorf("sync stream data: %w", err))
			s.notify()
			return AppendResult{}, e.wal.err()
		}
	}
	publish := func() {
		if p.refFile != nil {
			advance(&s.refDone, uint64(res.Tail))
			s.notify()
		}
		if p.lsn != 0 || e.wal == nil {
			s.publish(res.Tail, res.Closed)
		}
	}
	if err := e.stateDurable(ctx, s, p.wait, p.refBefore); err != nil {
		if err == ctx.Err() {
			e.finishLater(func(ctx context.Context) error { return e.stateDurable(ctx, s, p.wait, p.refBefore) }, publish)
		}
		return AppendResult{}, err
	}
	publish()
	return res, nil
}

// finishLater completes in the background an operation whose caller's ctx
// ended while it waited: fn runs once wait succeeds (not if the log fails).
// Close waits for it as for any operation in flight.
func (e *Engine) finishLater(wait func(context.Context) error, fn func()) {
	e.inflight.Add(1) // the caller is in flight, so Close has not drained yet
	go func() {
		defer e.leave()
		if wait(context.Background()) == nil {
			fn()
		}
	}()
}

// pending is what an append must wait for after releasing the stream lock.
type pending struct {
	lsn       uint64 // the new record's LSN (0: none written)
	wait      uint64 // LSN to be durable before answering
	refBefore Offset // by-reference appends below this must be durable first
	// A by-reference append's bytes, to sync before answering.
	refFile        *segment.File
	refPos, refLen int64
	refNewFile     bool // its directory entry must be made durable too
}

// refsDurable waits until every by-reference append of s below off is
// durable. Their appenders sync them concurrently; an answer that depends
// on one (a later append, a duplicate) must not come first, or a crash
// could lose bytes below an acknowledged offset.
func (e *Engine) refsDurable(ctx context.Context, s *stream, off Offset) error {
	for s.refDone.Load() < uint64(off) {
		ch := s.waitChan()
		if s.refDone.Load() >= uint64(off) {
			break
		}
		if e.wal != nil {
			if err := e.wal.err(); err != nil {
				return err
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// advance raises v to at least x.
func advance(v *atomic.Uint64, x uint64) {
	for {
		old := v.Load()
		if old >= x || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// precheck reports the errors that outrank a body's validity.
func (e *Engine) precheck(ctx context.Context, s *stream, hasBody bool, o *AppendOptions) error {
	s.mu.Lock()
	var err error
	if s.closed {
		err = &ClosedError{Final: s.tail}
	} else if hasBody && o.ContentType != "" && !sameMediaType(o.ContentType, s.meta.contentType) {
		err = ErrContentType
	}
	last, refEnd := s.lastLSN, s.refEnd
	s.mu.Unlock()
	if err != nil {
		return e.answerDurable(ctx, s, last, refEnd, err)
	}
	return nil
}

// stateDurable waits until s's records up to lsn and its by-reference
// appends below refEnd are durable.
func (e *Engine) stateDurable(ctx context.Context, s *stream, lsn uint64, refEnd Offset) error {
	if err := e.durable(ctx, lsn); err != nil {
		return err
	}
	return e.refsDurable(ctx, s, refEnd)
}

// answerDurable returns err once the stream state it reveals is durable
// (its last record at lsn, its by-reference appends below refEnd). A
// refusal reports a closure and final offset, a producer's epoch or next
// sequence, which an append may have set a moment ago; answered before that
// append's sync, a crash could take back what the answer told (a 409 for a
// stream that is open again after a restart).
func (e *Engine) answerDurable(ctx context.Context, s *stream, lsn uint64, refEnd Offset, err error) error {
	if derr := e.stateDurable(ctx, s, lsn, refEnd); derr != nil {
		return derr
	}
	return err
}

// appendLocked validates and writes an append. It returns the result, the
// LSN of the new record (0 if none was written) and the LSN to wait for
// before answering. Called with s.mu held.
//
// Checks run in the protocol's precedence: closed stream, content type,
// producer epoch/sequence, Stream-Seq.
func (e *Engine) appendLocked(s *stream, data []byte, o *AppendOptions) (AppendResult, pending, error) {
	pend := pending{refBefore: s.refEnd}
	switch s.state {
	case stSoftDeleted:
		return AppendResult{}, pending{}, ErrGone
	case stDeleted:
		return AppendResult{}, pending{}, ErrNotFound
	}
	p := o.Producer
	if s.closed {
		res := AppendResult{Tail: s.tail, Closed: true, Duplicate: true}
		if p != nil {
			if c := s.closedBy; c != nil && c.id == p.ID && c.epoch == p.Epoch && c.seq == p.Seq {
				res.ProducerEpoch, res.ProducerSeq = p.Epoch, p.Seq
				pend.wait = s.lastLSN
				return res, pend, nil
			}
			return AppendResult{}, pending{}, &ClosedError{Final: s.tail}
		}
		if len(data) == 0 && o.Close {
			pend.wait = s.lastLSN
			return res, pend, nil // closing again is idempotent
		}
		return AppendResult{}, pending{}, &ClosedError{Final: s.tail}
	}
	if len(data) > 0 && o.ContentType != "" && !sameMediaType(o.ContentType, s.meta.contentType) {
		return AppendResult{}, pending{}, ErrContentType
	}
	var prod *producer
	if p != nil {
		prod = s.producers[p.ID]
		switch {
		case prod == nil:
			if p.Seq != 0 {
				return AppendResult{}, pending{}, &SeqGapError{Expected: 0, Received: p.Seq}
			}
		case p.Epoch < prod.epoch:
			return AppendResult{}, pending{}, &StaleEpochError{Current: prod.epoch}
		case p.Epoch > prod.epoch:
			if p.Seq != 0 {
				return AppendResult{}, pending{}, ErrEpochSeq
			}
		case p.Seq <= prod.seq:
			// A retry of something already written: answer once it is durable.
			pend.wait = prod.lsn
			return AppendResult{Tail: s.tail, Duplicate: true, ProducerEpoch: prod.epoch, ProducerSeq: prod.seq}, pend, nil
		case p.Seq > prod.seq+1:
			return AppendResult{}, pending{}, &SeqGapError{Expected: prod.seq + 1, Received: p.Seq}
		}
	}
	if o.Seq != "" && s.mseq != "" && o.Seq <= s.mseq {
		return AppendResult{}, pending{}, ErrSeqRegression
	}

	off := s.tail
	// A large append is only referenced by its record: its appender syncs
	// its bytes, through the pin the store takes here, after s.mu is
	// released.
	ref := e.wal != nil && e.large(len(data))
	fill := e.copyFill(data)
	if ref {
		store := fill
		fill = func(f *segment.File, pos, n int64) (bool, error) {
			ok, err := store(f, pos, n)
			if ok && err == nil {
				f.Acquire() // cannot fail: putData holds a pin
				pend.refFile, pend.refPos, pend.refLen = f, pos, n
				pend.refNewFile = pos == 0 // it starts a segment: a new file
			}
			return ok, err
		}
	}
	_, sealed, err := e.putData(s, off, int64(len(data)), ref, fill)
	if err != nil {
		return AppendResult{}, pending{}, err
	}
	rec := appendRec{id: s.id, offset: uint64(off), sealed: sealed}
	if o.Close {
		rec.flags |= fClosed
	}
	if p != nil {
		rec.flags |= fProducer
		rec.producer, rec.epoch, rec.seq = p.ID, p.Epoch, p.Seq
	}
	if o.Seq != "" {
		rec.flags |= fSeq
		rec.mseq = o.Seq
	}
	tailData := data
	if ref {
		rec.flags |= fRef
		rec.refLen, rec.refCRC = uint64(len(data)), crc32.Checksum(data, castagnoli)
		tailData = nil
	}
	meta := e.getBuf()
	*meta = rec.encode((*meta)[:0])
	lsn, err := e.commit(*meta, tailData)
	e.putBuf(meta)
	if err != nil {
		if pend.refFile != nil {
			pend.refFile.Release()
		}
		e.undoData(s, off, int64(len(data)))
		return AppendResult{}, pending{}, err
	}
	if ref {
		s.refEnd = off + Offset(len(data))
	}
	s.tail += Offset(len(data))
	s.lastLSN = lsn
	if o.Seq != "" {
		s.mseq = o.Seq
	}
	res := AppendResult{Tail: s.tail}
	if p != nil {
		s.setProducer(p.ID, p.Epoch, p.Seq, lsn)
		res.ProducerEpoch, res.ProducerSeq = p.Epoch, p.Seq
	}
	if o.Close {
		s.closed = true
		res.Closed = true
		if p != nil {
			s.closedBy = &producerTuple{id: p.ID, epoch: p.Epoch, seq: p.Seq}
		}
	}
	pend.lsn, pend.wait = lsn, lsn
	return res, pend, nil
}

func (s *stream) setProducer(id string, epoch, seq, lsn uint64) {
	if s.producers == nil {
		s.producers = make(map[string]*producer, 1)
	}
	if p := s.producers[id]; p != nil {
		p.epoch, p.seq, p.lsn = epoch, seq, lsn
		return
	}
	s.producers[id] = &producer{epoch: epoch, seq: seq, lsn: lsn}
}

// Delete deletes a stream. A stream that forks still read becomes
// soft-deleted (ErrGone to clients) until its last fork is deleted.
//
// If ctx ends before the delete is durable, Delete returns ctx.Err() and
// the outcome is unknown (the stream already answers as deleted).
func (e *Engine) Delete(ctx context.Context, path string) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	s, err := e.lookup(path)
	if err != nil {
		return err
	}
	return e.deleteStream(ctx, s, false)
}

// deleteStream writes a delete record for s and, once it is durable, removes
// the stream (or soft-deletes it while forks reference it) and cascades to a
// soft-deleted source whose last fork this was.
func (e *Engine) deleteStream(ctx context.Context, s *stream, expired bool) error {
	s.mu.Lock()
	switch s.state {
	case stSoftDeleted:
		s.mu.Unlock()
		return e.goneAfterDurable(s, ErrGone)
	case stDeleted:
		s.mu.Unlock()
		return e.goneAfterDurable(s, ErrNotFound)
	}
	if expired && !s.expired(e.clock()) {
		s.mu.Unlock()
		return nil // touched meanwhile
	}
	meta := e.getBuf()
	*meta = encodeDelete((*meta)[:0], s.id)
	lsn, err := e.commit(*meta, nil)
	e.putBuf(meta)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.lastLSN = lsn
	s.delLSN.Store(lsn)
	soft := s.forks > 0
	if soft {
		s.setState(stSoftDeleted)
	} else {
		s.setState(stDeleted)
	}
	s.mu.Unlock()
	done := func() {
		s.notify()
		if !soft {
			e.remove(s)
		}
	}
	if err := e.durable(ctx, lsn); err != nil {
		if err == ctx.Err() {
			e.finishLater(func(ctx context.Context) error { return e.durable(ctx, lsn) }, done)
		}
		return err
	}
	done()
	return nil
}

// dropIfSame is a Compute function that deletes the table's entry if it is
// s and leaves any other entry alone. With no entry it stores nothing: a
// function returning (nil, false) there would store a nil stream (which
// recovery's remove of a soft-deleted source, never in the table, did).
func dropIfSame(s *stream) func(old *stream, loaded bool) (*stream, bool) {
	return func(old *stream, loaded bool) (*stream, bool) { return old, !loaded || old == s }
}

// remove drops a hard-deleted stream from the table and its files, and
// releases its fork source, cascading up soft-deleted sources.
func (e *Engine) remove(s *stream) {
	for s != nil {
		e.streams.Compute(s.path, dropIfSame(s))
		e.nStreams.Add(-1)
		s.mu.Lock()
		var segs []*dataSeg
		gone := RemovedStream{Path: s.path, StreamID: s.id, CreatedAt: s.meta.createdAt, Remote: s.remoteKeys()}
		if s.data != nil {
			segs = s.data.segs
			e.store.drop(segs)
			e.storedBytes.Add(-int64(s.tail - s.meta.forkOffset))
			s.data = nil // its slots and files go below
		}
		s.mu.Unlock()
		if err := e.store.removeFiles(s.id, segs); err != nil {
			e.log.Warn("remove stream files", "path", s.path, "err", err)
		}
		if e.opts.OnRemove != nil {
			e.opts.OnRemove(gone)
		}
		src := s.meta.source
		if src == nil {
			return
		}
		src.mu.Lock()
		src.forks--
		last := src.forks == 0 && src.state == stSoftDeleted
		if last {
			src.setState(stDeleted)
		}
		src.mu.Unlock()
		if !last {
			return
		}
		s = src
	}
}

// info returns a stream's published metadata.
func (e *Engine) info(s *stream) StreamInfo {
	tail, closed := s.published()
	m := s.meta
	in := StreamInfo{Path: s.path, ContentType: m.contentType, Tail: tail, Closed: closed,
		TTL: m.ttl, HasTTL: m.hasTTL, ExpiresAt: fromNanos(m.expiresAt), CreatedAt: fromNanos(m.createdAt)}
	if m.source != nil {
		in.ForkedFrom, in.ForkOffset = m.source.path, m.forkOffset
	}
	return in
}
