package engine

// Remote segments: the engine side of an object-storage tier (package
// tier). The engine knows nothing of buckets; it offers
//
//   - Segments: every stream segment, sealed or not, local or remote, for
//     the tier to pick what to upload and what to evict;
//   - EvictSegments: a sealed segment whose bytes are verified in object
//     storage under a key becomes remote, and its local file goes;
//   - AttachRemote: a restore puts a stream's history back as remote
//     segments (disaster recovery onto an empty disk);
//   - SealIdle: the last segment of a stream not appended to for
//     Options.SealAfter is sealed, as an append would seal it;
//   - Options.Remote, through which reads of remote segments are served,
//     and Options.OnRemove, which tells the tier a stream's objects may go.
//
// A segment is sealed once nothing more can be written to it: a later
// segment exists whose first append is durable (an append that failed to
// commit takes its new segment back, and the one before could be written
// again), or the stream's closure, or a seal record (SealIdle), is
// durable. Only durable bytes are ever offered, so an uploaded object
// never holds a byte a crash could take away.
//
// Eviction order is what keeps a crash from losing bytes: (1) the remote
// record is made durable, and from then on reads go to object storage;
// (2) a checkpoint covers it, so no commit-log record that wrote into the
// segment is replayed after a restart (replay writes into local files);
// (3) the local file is removed. (2) is the next regular checkpoint, not
// one of the eviction's own: checkpoints sync every file written since the
// last one, and forcing one per eviction round cost appends a third of
// their throughput. A crash between (1) and (3) leaves a file that
// recovery's orphan sweep removes.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/durastream/durastream/index"
	"github.com/durastream/durastream/segment"
)

// Remote reads the bytes of objects in object storage.
type Remote interface {
	// ReadRange returns the n bytes of object key at off, in memory the
	// caller only reads (it may be shared with other readers). An error
	// means they are not available now; reads answer ErrUnavailable.
	ReadRange(ctx context.Context, key string, off, n int64) ([]byte, error)
}

// ErrUnavailable: the bytes asked for are in object storage, which did not
// answer. Nothing is returned in their place; the read may be retried.
var ErrUnavailable = errors.New("stream data is in object storage, which is unavailable")

// SegmentInfo describes one segment of a stream (Segments).
type SegmentInfo struct {
	Path        string
	StreamID    uint64 // unique per stream incarnation in this engine
	CreatedAt   int64  // the stream's creation, unix nanoseconds
	ContentType string
	Fork        bool // the stream is a fork (its history starts in its source)

	Base Offset
	Len  int64 // durable bytes in the segment
	// Sealed: nothing more will be written to it (see the package comment).
	Sealed bool
	// Final: sealed because the stream is closed; Base+Len is its final offset.
	Final bool
	Slab  bool // in a shared slab file: a small first segment, never evicted
	// FileBytes is what the segment's own local file takes (its preallocated
	// capacity); 0 for slab and remote segments.
	FileBytes int64
	// Remote is the object-storage key of an evicted or attached segment.
	Remote string
	// LastAccess is the stream's last read or write, unix nanoseconds.
	LastAccess int64
	// Deleted: the stream is deleted, but forks still read its bytes
	// (soft-deleted): its objects must stay until OnRemove says so.
	Deleted bool
}

// RemovedStream is a stream removed for good (Options.OnRemove).
type RemovedStream struct {
	Path      string
	StreamID  uint64
	CreatedAt int64
	Remote    []string // keys of its remote segments
}

// RemoteSegment is a segment to attach (AttachRemote) or evict
// (EvictSegments).
type RemoteSegment struct {
	Base Offset
	Len  int64
	Key  string
}

// Segments calls fn for each segment of each stream, stopping when fn
// returns false. A stream is seen consistently (under its lock); streams
// are visited in no particular order.
func (e *Engine) Segments(fn func(SegmentInfo) bool) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	var out []SegmentInfo
	e.streams.Range(func(_ string, s *stream) bool {
		out = out[:0]
		s.mu.Lock()
		if s.state != stDeleted && s.data != nil {
			vis, synced := s.vis.Load(), e.synced() // one value for Len and Sealed
			last := len(s.data.segs) - 1
			for i, ds := range s.data.segs {
				in := SegmentInfo{Path: s.path, StreamID: s.id, CreatedAt: s.meta.createdAt,
					ContentType: s.meta.contentType, Fork: s.meta.source != nil,
					Base: Offset(ds.base), Len: int64(s.data.segUsed(i, vis)),
					Slab: ds.slab1 != 0, Remote: ds.remote, LastAccess: s.lastAccess.Load(),
					Deleted: s.state == stSoftDeleted}
				in.Sealed = s.sealed(i, vis, synced)
				in.Final = in.Sealed && i == last && s.visClosed.Load()
				if ds.remote != "" {
					in.Sealed = true
				} else if !in.Slab {
					in.FileBytes = ds.cap
				}
				out = append(out, in)
			}
		}
		s.mu.Unlock()
		for _, in := range out {
			if !fn(in) {
				return false
			}
		}
		return true
	})
	return nil
}

// Eviction is a sealed segment of one stream incarnation whose bytes are
// verified in object storage under Key (EvictSegments).
type Eviction struct {
	Path     string
	StreamID uint64
	RemoteSegment
}

// EvictSegments makes sealed segments remote: their bytes are verified in
// object storage under the keys given, reads go there once it returns, and
// their local files go at the next checkpoint. A segment that is not, or no longer, a
// sealed local file segment of that stream incarnation, with that length,
// is skipped. It returns how many segments became remote.
func (e *Engine) EvictSegments(ctx context.Context, evs []Eviction) (int, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.leave()
	if e.opts.Remote == nil || e.wal == nil {
		return 0, errors.New("engine: EvictSegments needs Options.Remote and durability sync")
	}
	type gone struct {
		id uint64
		ds *dataSeg
	}
	var evicted []gone
	var lsn uint64
	var err error
	for _, ev := range evs {
		s, lerr := e.lookup(ev.Path)
		if lerr != nil || s.id != ev.StreamID {
			continue // deleted, or another incarnation of the path
		}
		s.mu.Lock()
		i := s.segAt(uint64(ev.Base))
		if i < 0 || s.state != stLive {
			s.mu.Unlock()
			continue
		}
		ds, vis := s.data.segs[i], s.vis.Load()
		if ds.remote != "" || ds.slab1 != 0 || !s.sealed(i, vis, e.synced()) || int64(s.data.segUsed(i, vis)) != ev.Len || ev.Key == "" {
			s.mu.Unlock()
			continue
		}
		lsn, err = e.commitRec(&remoteRec{id: s.id, base: ds.base, n: uint64(ev.Len), key: ev.Key})
		if err != nil {
			s.mu.Unlock()
			break
		}
		s.lastLSN = lsn
		ds.remote = ev.Key // reads go remote from here: the bytes are the same
		s.mu.Unlock()
		evicted = append(evicted, gone{s.id, ds})
	}
	if len(evicted) == 0 {
		return 0, err
	}
	if derr := e.durable(ctx, lsn); derr != nil {
		return 0, derr // the files stay until a later start sweeps them
	}
	e.evictMu.Lock()
	for _, g := range evicted {
		e.evicted = append(e.evicted, evictedSeg{g.id, g.ds, lsn})
	}
	e.evictMu.Unlock()
	return len(evicted), err
}

// evictedSeg is an evicted segment whose file goes once a checkpoint
// covers lsn, its remote record.
type evictedSeg struct {
	id  uint64
	ds  *dataSeg
	lsn uint64
}

// removeEvicted removes the files of evicted segments whose remote records
// a checkpoint at c0 covers (after it is durable): no replay writes into
// them any more. Open views keep their mappings (store.drop).
func (e *Engine) removeEvicted(c0 uint64) {
	e.evictMu.Lock()
	var due []evictedSeg
	kept := e.evicted[:0]
	for _, g := range e.evicted {
		if g.lsn <= c0 {
			due = append(due, g)
		} else {
			kept = append(kept, g)
		}
	}
	e.evicted = kept
	e.evictMu.Unlock()
	for _, g := range due {
		e.store.drop([]*dataSeg{g.ds})
		if err := os.Remove(e.store.segPath(g.id, g.ds.base)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.log.Warn("remove evicted segment (the next start sweeps it)", "stream", g.id, "base", g.ds.base, "err", err)
		}
	}
}

// AttachRemote appends remote segments at the tail of a stream that has no
// bytes of its own yet beyond them: a restore from object storage. The
// segments must be contiguous from the stream's tail; their bytes are
// readable once AttachRemote returns.
func (e *Engine) AttachRemote(ctx context.Context, path string, segs []RemoteSegment) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	if e.opts.Remote == nil || e.wal == nil {
		return errors.New("engine: AttachRemote needs Options.Remote and durability sync")
	}
	s, err := e.lookup(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed || s.state != stLive {
		s.mu.Unlock()
		return ErrClosed
	}
	var lsn uint64
	for _, r := range segs {
		if uint64(r.Base) != uint64(s.tail) || r.Len <= 0 || r.Key == "" {
			s.mu.Unlock()
			return fmt.Errorf("engine: attach %q at %d+%d: the stream's tail is %d", r.Key, r.Base, r.Len, s.tail)
		}
		rec := remoteRec{id: s.id, adopt: true, base: uint64(r.Base), n: uint64(r.Len), key: r.Key}
		if lsn, err = e.commitRec(&rec); err != nil {
			s.mu.Unlock()
			return err
		}
		s.lastLSN = lsn
		e.adopt(s, &rec)
	}
	tail := s.tail
	s.mu.Unlock()
	if err := e.durable(ctx, lsn); err != nil {
		return err
	}
	s.publish(tail, false)
	return nil
}

// commitRec writes a remote or seal record to the commit log (not yet
// durable).
func (e *Engine) commitRec(r interface{ encode([]byte) []byte }) (uint64, error) {
	buf := e.getBuf()
	*buf = r.encode((*buf)[:0])
	lsn, err := e.commit(*buf, nil)
	e.putBuf(buf)
	return lsn, err
}

// adopt adds a remote segment at s's tail. Called with s.mu held (or
// during recovery).
func (e *Engine) adopt(s *stream, r *remoteRec) {
	if s.data == nil {
		s.data = &streamData{idx: index.New(e.opts.IndexEvery)}
	}
	d := s.data
	ds := &dataSeg{base: r.base, cap: int64(r.n), ord: uint32(len(d.segs)), slot: -1, remote: r.key}
	d.segs = append(d.segs, ds)
	if d.idx != nil {
		d.idx.Add(index.Entry{Off: r.base, Seg: ds.ord})
		d.idx.Add(index.Entry{Off: r.base + r.n, Seg: ds.ord, Pos: uint32(r.n)})
	}
	s.tail += Offset(r.n)
	e.storedBytes.Add(int64(r.n))
}

// replayRemote applies a remote record during recovery.
func (e *Engine) replayRemote(s *stream, r *remoteRec, lsn uint64) error {
	if r.adopt {
		switch {
		case r.base+r.n <= uint64(s.tail):
			return nil // in the checkpoint already
		case r.base != uint64(s.tail):
			return fmt.Errorf("%w: stream %q: remote segment at %d, tail is %d", ErrCorrupt, s.path, r.base, s.tail)
		}
		e.adopt(s, r)
		return nil
	}
	i := s.segAt(r.base)
	if i < 0 {
		return fmt.Errorf("%w: stream %q: evicted segment at %d is not one of its segments", ErrCorrupt, s.path, r.base)
	}
	s.data.segs[i].remote = r.key
	s.data.segs[i].evictLSN = lsn // its file goes at the next checkpoint (recover)
	return nil
}

// sealed reports whether nothing more can be written to s's segment i: a
// later segment holds durable bytes (an append that failed to commit takes
// its new segment back, and the one before could be written again), or
// the stream's closure is durable, or its seal record (SealIdle) is: the
// stream's last record is at or below synced, the durable commit-log
// position. vis is the readable tail the caller read. Called with s.mu
// held.
func (s *stream) sealed(i int, vis, synced uint64) bool {
	if i+1 < len(s.data.segs) {
		return s.data.segs[i+1].base < vis
	}
	if vis != uint64(s.tail) {
		return false
	}
	return s.visClosed.Load() || s.data.segs[i].sealed && s.lastLSN <= synced
}

// synced is the durable commit-log position (0 in memory mode).
func (e *Engine) synced() uint64 {
	if e.wal == nil {
		return 0
	}
	return e.wal.synced.Load()
}

// SealIdle seals the last segment of every open stream that holds bytes,
// is older than Options.SealAfter and has no append in flight: an append
// would start a new segment (sealByAge), but a stream not appended to gets
// none, and its last bytes would stay only on the local disk. Each seal is
// a commit-log record (replay lays segments out as they were, as for
// recAppendSealed); later appends start a new segment. It returns how many
// segments it sealed, once their records are durable. A tier calls it
// before each scan.
func (e *Engine) SealIdle(ctx context.Context) (int, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.leave()
	if e.wal == nil || e.opts.SealAfter <= 0 {
		return 0, nil
	}
	now := e.clock().UnixNano()
	n := 0
	var lsn uint64
	var err error
	e.streams.Range(func(_ string, s *stream) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.state != stLive || s.closed || s.data == nil || s.vis.Load() != uint64(s.tail) {
			return true
		}
		ds := s.data.lastSeg()
		if ds == nil || ds.remote != "" || ds.sealed || uint64(s.tail) == ds.base {
			return true
		}
		if ds.created == 0 {
			ds.created = now // loaded at recovery: its age counts from then
			return true
		}
		if now-ds.created < int64(e.opts.SealAfter) {
			return true
		}
		var l uint64
		if l, err = e.commitRec(&sealRec{id: s.id, base: ds.base, n: uint64(s.tail) - ds.base}); err != nil {
			return false
		}
		ds.sealed, s.lastLSN, lsn = true, l, l
		n++
		return true
	})
	if derr := e.durable(ctx, lsn); derr != nil {
		return 0, derr
	}
	return n, err
}

// replaySeal applies a seal record during recovery.
func replaySeal(s *stream, r *sealRec) error {
	i := s.segAt(r.base)
	switch {
	case i >= 0 && s.data.segs[i].sealed:
		return nil // in the checkpoint already
	case i < 0 || i != len(s.data.segs)-1 || r.base+r.n != uint64(s.tail):
		return fmt.Errorf("%w: stream %q: seal record for %d+%d, its last segment does not end there (tail %d)", ErrCorrupt, s.path, r.base, r.n, s.tail)
	}
	s.data.segs[i].sealed = true
	return nil
}

// segAt returns the index of s's segment starting at base, or -1. Called
// with s.mu held.
func (s *stream) segAt(base uint64) int {
	if s.data == nil {
		return -1
	}
	for i, ds := range s.data.segs {
		if ds.base == base {
			return i
		}
	}
	return -1
}

// sealByAge reports whether an append at off should start a new segment
// instead of going into ds, because ds is older than Options.SealAfter.
// The decision is logged (putData reports it and the append's record is
// recAppendSealed) and replay follows the log, not the clock: the layout
// after a restart is the one before it, so the objects a tier uploaded
// stay this stream's segments. Called with s.mu held.
func (e *Engine) sealByAge(ds *dataSeg, off Offset) bool {
	if uint64(off) == ds.base {
		return false
	}
	if e.replaying {
		return e.replaySealed
	}
	if e.opts.SealAfter <= 0 {
		return false
	}
	now := e.clock().UnixNano()
	if ds.created == 0 {
		ds.created = now // loaded at recovery: its age counts from then
		return false
	}
	if now-ds.created < int64(e.opts.SealAfter) {
		return false
	}
	return true
}

// readRemote reads n bytes at pos of a remote segment's object: a view
// of memory the Remote gave (its Release does nothing).
func (e *Engine) readRemote(key string, pos, n int64) (segment.View, error) {
	if e.opts.Remote == nil {
		return segment.View{}, fmt.Errorf("%w: segment %q is remote and this engine has no Remote", ErrCorrupt, key)
	}
	b, err := e.opts.Remote.ReadRange(context.Background(), key, pos, n)
	if err != nil {
		return segment.View{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if int64(len(b)) != n {
		return segment.View{}, fmt.Errorf("%w: %d bytes at %d of %q, want %d", ErrUnavailable, len(b), pos, key, n)
	}
	return segment.View{B: b}, nil
}

// remoteKeys lists the keys of s's remote segments. Called with s.mu held.
func (s *stream) remoteKeys() []string {
	var keys []string
	if s.data != nil {
		for _, ds := range s.data.segs {
			if ds.remote != "" {
				keys = append(keys, ds.remote)
			}
		}
	}
	return keys
}
