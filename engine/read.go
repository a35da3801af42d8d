package engine

import (
	"context"
	"net"

	"github.com/durastream/durastream/segment"
)

// ReadOptions bounds a read.
type ReadOptions struct {
	// MaxBytes caps the stored bytes returned; the cut falls on a message
	// boundary for JSON streams (a single larger message is returned whole).
	// Zero means 1 MiB.
	MaxBytes int64
	// End, if not zero, is where the read stops at the latest, whatever
	// was appended since: the pages of one response that serves a range
	// found earlier (Chunk.Tail of its first page) end there. An End past
	// the stream's tail is ErrOffsetPastEnd (it was another stream's tail).
	End Offset
	// OnePass says the caller sends the bytes once and will not reread
	// them soon: Release takes their pages out of the process's mappings
	// (they stay in the page cache), so a reader of a large range does
	// not grow the resident set by every byte it sends.
	OnePass bool
	// Continues, if not zero, is the StreamID of an earlier Chunk whose
	// Next or Tail this read starts at. Such an offset is a message
	// boundary of that stream, so a read of the same stream skips the
	// check that a JSON read starts at one (ErrNotBoundary), which costs a
	// scan of up to a few KiB: long-poll and SSE readers woken by an
	// append set it.
	Continues uint64
	// Housekeeping says the read is not a reader's (a tier uploading a
	// sealed segment): it does not count as an access for the sliding TTL.
	Housekeeping bool
}

// Chunk is the result of a read: zero-copy views of stored bytes. The views
// pin their mappings until Release; the caller must call it once the bytes
// are written out.
type Chunk struct {
	StreamID    uint64 // unique per stream incarnation (for ETags)
	Start       Offset // where the read began
	Next        Offset // where the next read begins
	UpToDate    bool   // Next is the stream's tail
	Closed      bool   // the stream is closed and Next is its final offset
	Tail        Offset // the stream's readable tail when it was read
	TailClosed  bool   // the stream was closed then: Tail is its final offset
	ContentType string
	JSON        bool

	views   []segment.View
	onePass bool
}

var (
	jsonOpen  = []byte{'['}
	jsonClose = []byte{']'}
)

// Len returns the length of the wire body: the stored bytes, or for JSON
// streams the array '[' + messages + ']' (the last stored comma dropped).
func (c *Chunk) Len() int64 {
	n := int64(c.Next - c.Start)
	if c.JSON {
		if n == 0 {
			return 2
		}
		return n + 1
	}
	return n
}

// Data returns the stored bytes [Start, Next) as slices, without framing.
func (c *Chunk) Data() [][]byte {
	out := make([][]byte, 0, len(c.views))
	for _, v := range c.views {
		out = append(out, v.B)
	}
	return out
}

// Buffers returns the wire body as buffers to write in order (net.Buffers
// uses writev where it can). The stored bytes go out unchanged.
func (c *Chunk) Buffers() net.Buffers {
	bufs := make(net.Buffers, 0, len(c.views)+2)
	if c.JSON {
		bufs = append(bufs, jsonOpen)
	}
	for i, v := range c.views {
		b := v.B
		if c.JSON && i == len(c.views)-1 && len(b) > 0 {
			b = b[:len(b)-1] // the trailing comma
		}
		if len(b) > 0 {
			bufs = append(bufs, b)
		}
	}
	if c.JSON {
		bufs = append(bufs, jsonClose)
	}
	return bufs
}

// Bytes returns a copy of the wire body (for tests and small responses).
func (c *Chunk) Bytes() []byte {
	out := make([]byte, 0, c.Len())
	for _, b := range c.Buffers() {
		out = append(out, b...)
	}
	return out
}

// Release unpins the chunk's views. It is safe to call more than once.
func (c *Chunk) Release() {
	for _, v := range c.views {
		if c.onePass {
			v.DropPages()
		}
		v.Release()
	}
	c.views = nil
}

// Head returns a stream's metadata without counting as an access for TTL.
func (e *Engine) Head(path string) (StreamInfo, error) {
	if err := e.enter(); err != nil {
		return StreamInfo{}, err
	}
	defer e.leave()
	s, err := e.lookup(path)
	if err != nil {
		return StreamInfo{}, err
	}
	return e.info(s), nil
}

const defaultReadMax = 1 << 20

// Read returns the stream's bytes from `from`: at most MaxBytes of them,
// only durable ones. It counts as an access for the sliding TTL. A JSON
// stream is read from message boundaries only: an offset inside a message
// is ErrNotBoundary.
func (e *Engine) Read(path string, from ReadFrom, o ReadOptions) (*Chunk, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.leave()
	s, err := e.lookup(path)
	if err != nil {
		return nil, err
	}
	if e.readLookedUp != nil {
		e.readLookedUp(path)
	}
	if !o.Housekeeping {
		s.touch(e.clock())
	}
	closed := s.visClosed.Load()
	tail := Offset(s.vis.Load())
	start := from.Offset
	switch from.Kind {
	case FromStart:
		start = 0
	case FromNow:
		start = tail
	}
	end := tail
	if o.End != 0 {
		end = o.End
	}
	if start > end || end > tail {
		return nil, ErrOffsetPastEnd
	}
	if s.meta.json && from.Kind == FromOffset && o.Continues != s.id {
		if err := e.checkBoundary(s, start, tail); err != nil {
			return nil, err
		}
	}
	c := &Chunk{StreamID: s.id, Start: start, Tail: tail, TailClosed: closed,
		ContentType: s.meta.contentType, JSON: s.meta.json, onePass: o.OnePass}
	max := o.MaxBytes
	if max <= 0 {
		max = defaultReadMax
	}
	if uint64(end-start) > uint64(max) {
		if end, err = e.cut(s, start, start+Offset(max), end); err != nil {
			return nil, err
		}
	}
	if c.views, err = e.collect(s, start, end, nil); err != nil {
		c.Release()
		return nil, err
	}
	c.Next = end
	c.UpToDate = end == tail
	c.Closed = closed && end == tail
	return c, nil
}

// cut picks where a read that cannot return everything up to tail stops:
// at limit for byte streams, at the last message boundary at or below limit
// for JSON streams (or after the first message, if that alone is larger).
func (e *Engine) cut(s *stream, start, limit, tail Offset) (Offset, error) {
	if !s.meta.json {
		return limit, nil
	}
	best := start
	pos := e.boundaryBelow(s, start, limit)
	for pos > best || pos == start {
		best = pos
		end, err := e.messageEnd(s, pos, tail)
		if err != nil {
			return 0, err
		}
		if end < 0 || Offset(end) > limit {
			break
		}
		pos = Offset(end)
	}
	if best > start {
		return best, nil
	}
	end, err := e.messageEnd(s, start, tail)
	if err != nil {
		return 0, err
	}
	if end < 0 {
		return tail, nil // cannot happen for well-formed data: return all
	}
	return Offset(end), nil
}

// checkBoundary returns ErrNotBoundary unless off, at most tail, is where a
// message of JSON stream s starts (or its tail): a read from anywhere else
// would answer invalid JSON. The sparse index knows some boundaries (segment
// starts, and append ends about every IndexEvery bytes); from the last one
// at or below off, in the layer of the fork chain that holds off, the
// messages are walked with JSONMessageEnd up to off. The work is bounded by
// the index spacing plus one append; appends never span segments, so
// neither do messages, and a walk that reaches off exactly ends a message.
func (e *Engine) checkBoundary(s *stream, off, tail Offset) error {
	if off == 0 || off >= tail {
		return nil
	}
	l := owner(s, off)
	if l.meta.source != nil && off == l.meta.forkOffset {
		return nil // a fork point; forks of JSON streams start at boundaries
	}
	l.mu.Lock()
	d := l.data
	if l.state == stDeleted {
		l.mu.Unlock()
		return e.goneAfterDurable(l, ErrNotFound) // deleted since the lookup (see collectSegment)
	}
	if d == nil {
		l.mu.Unlock()
		return ErrCorrupt // off is below the tail, so l holds data there
	}
	if err := e.ensureIndex(l); err != nil {
		l.mu.Unlock()
		return err
	}
	en, ok := d.idx.Floor(uint64(off))
	l.mu.Unlock()
	if !ok {
		return ErrCorrupt
	}
	for pos := Offset(en.Off); pos < off; {
		v, err := e.collectSegment(l, pos, off, 0)
		if err != nil {
			return err
		}
		b := v.B
		if len(b) == 0 {
			v.Release()
			return ErrCorrupt
		}
		for len(b) > 0 {
			n := JSONMessageEnd(b)
			if n < 0 {
				v.Release()
				return ErrNotBoundary
			}
			b = b[n:]
		}
		pos += Offset(len(v.B))
		v.Release()
	}
	return nil
}

// owner returns the stream in s's fork chain that stores offset off.
func owner(s *stream, off Offset) *stream {
	for s.meta.source != nil && off < s.meta.forkOffset {
		s = s.meta.source
	}
	return s
}

// boundaryBelow returns an indexed message boundary in (start, limit], or
// start if there is none, from the layer of the fork chain that holds limit.
func (e *Engine) boundaryBelow(s *stream, start, limit Offset) Offset {
	l := owner(s, limit-1)
	best := start
	if l.meta.source != nil && l.meta.forkOffset > start && l.meta.forkOffset <= limit {
		best = l.meta.forkOffset
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.data == nil {
		return best
	}
	if err := e.ensureIndex(l); err != nil {
		// The cut falls back to a message-by-message walk from start.
		e.log.Warn("load stream index", "path", l.path, "err", err)
		return best
	}
	if en, ok := l.data.idx.Below(uint64(start), uint64(limit)); ok && Offset(en.Off) > best {
		best = Offset(en.Off)
	}
	return best
}

// messageEnd returns the offset just past the JSON message that starts at
// off, or -1 if there is no complete message before tail.
func (e *Engine) messageEnd(s *stream, off, tail Offset) (int64, error) {
	if off >= tail {
		return -1, nil
	}
	l := owner(s, off)
	limit := tail
	if l != s {
		// Stop at the fork point of the layer above l.
		for c := s; c != l; c = c.meta.source {
			limit = min(limit, c.meta.forkOffset)
		}
	}
	// A local segment is viewed to its end at no cost; a remote one is
	// fetched in windows that double until one holds the message.
	for window := int64(remoteMessageWindow); ; window *= 2 {
		v, err := e.collectSegment(l, off, limit, window)
		if err != nil {
			return 0, err
		}
		n := JSONMessageEnd(v.B)
		short := int64(len(v.B)) == window && off+Offset(window) < limit
		v.Release()
		if n >= 0 {
			return int64(off) + int64(n), nil
		}
		if !short {
			return -1, nil
		}
	}
}

// collect appends views of [from, to) of s, following the fork chain.
func (e *Engine) collect(s *stream, from, to Offset, views []segment.View) ([]segment.View, error) {
	if from >= to {
		return views, nil
	}
	if m := s.meta; m.source != nil && from < m.forkOffset {
		mid := min(to, m.forkOffset)
		var err error
		if views, err = e.collect(m.source, from, mid, views); err != nil {
			return views, err
		}
		from = mid
	}
	for from < to {
		v, err := e.collectSegment(s, from, to, remotePiece)
		if err != nil {
			return views, err
		}
		views = append(views, v)
		from += Offset(len(v.B))
	}
	return views, nil
}

// Reads of remote segments: a catch-up read fetches them in pieces of
// remotePiece bytes (memory per reader stays bounded, and the first byte
// leaves before the rest is fetched); a message's end is looked for in a
// window of remoteMessageWindow bytes, doubled until it holds the message.
const (
	remotePiece         = 1 << 20
	remoteMessageWindow = 64 << 10
)

// collectSegment returns a view of s's own bytes from `from` up to `to` or
// the end of the segment holding `from`, whichever is first; from a remote
// segment, also at most maxRemote bytes (0: no limit), fetched from object
// storage without holding the stream's lock.
//
// A reader looks a stream up before it pins the stream's segments, and a
// delete can come between: remove frees the stream's slab slots and a new
// stream may take them. The state check under s.mu closes that window: a
// delete marks the stream stDeleted under s.mu before it frees anything, and
// a slot pinned here before that is freed only when the view is released.
// So a read answers ErrNotFound or the stream's own bytes, never another's.
func (e *Engine) collectSegment(s *stream, from, to Offset, maxRemote int64) (segment.View, error) {
	s.mu.Lock()
	if s.state == stDeleted {
		s.mu.Unlock()
		return segment.View{}, e.goneAfterDurable(s, ErrNotFound)
	}
	unlock := true
	defer func() {
		if unlock {
			s.mu.Unlock()
		}
	}()
	d := s.data
	if d == nil {
		return segment.View{}, ErrCorrupt
	}
	if err := e.ensureIndex(s); err != nil {
		return segment.View{}, err
	}
	en, ok := d.idx.Floor(uint64(from))
	if !ok {
		return segment.View{}, ErrCorrupt
	}
	i := int(en.Seg)
	for i+1 < len(d.segs) && d.segs[i+1].base <= uint64(from) {
		i++
	}
	ds := d.segs[i]
	segEnd := ds.base + uint64(ds.cap)
	if i+1 < len(d.segs) {
		segEnd = min(segEnd, d.segs[i+1].base)
	}
	n := min(uint64(to), segEnd) - uint64(from)
	if key := ds.remote; key != "" {
		// A remote segment is sealed: its bytes cannot change under the
		// fetch, which runs unlocked so appends never wait on the bucket.
		if maxRemote > 0 {
			n = min(n, uint64(maxRemote))
		}
		pos := int64(uint64(from) - ds.base)
		unlock = false
		s.mu.Unlock()
		return e.readRemote(key, pos, int64(n))
	}
	f, err := e.store.pin(s.id, ds, false)
	if err != nil {
		return segment.View{}, err
	}
	defer f.Release()
	v, ok := f.View(int64(uint64(from)-ds.base), int64(n))
	if !ok {
		return segment.View{}, ErrCorrupt
	}
	return v, nil
}

// Wait blocks until the stream has data past off, is closed, or is deleted
// (ErrNotFound/ErrGone), or ctx ends (ctx.Err()). A fork's waiters wake only
// for the fork's own appends.
func (e *Engine) Wait(ctx context.Context, path string, off Offset) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	s, err := e.lookup(path)
	if err != nil {
		return err
	}
	for {
		ch := s.waitChan()
		if e.closed.Load() {
			return ErrEngineClosed
		}
		switch s.stateNow() {
		case stSoftDeleted:
			return e.goneAfterDurable(s, ErrGone)
		case stDeleted:
			return e.goneAfterDurable(s, ErrNotFound)
		}
		tail, closed := s.published()
		if tail > off || closed {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
