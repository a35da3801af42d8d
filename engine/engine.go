// Package engine is durastream's embeddable log store: streams addressed by
// path, appended to through one group-committed commit log, read as
// zero-copy views, and tailed through a per-stream waiter registry.
//
// Data flow of an append: validate and frame a JSON body before taking the
// stream's lock; under it, check the stream's state and write the bytes into
// the stream's segment (page cache) and a record into the commit log's
// batch; unlock, wait for the group commit to fsync past the record, then
// publish the new tail to readers and wake the stream's waiters.
// Checkpoints later sync the stream files written since the last one and
// let old commit-log segments go. The reasons are in the project's design
// notes (../shared/DESIGN.md beside the repository).
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"golang.org/x/sys/unix"
)

// Engine is an open store. All methods are safe for concurrent use.
type Engine struct {
	dir   string
	opts  Options
	log   *slog.Logger
	clock func() time.Time

	streams *xsync.MapOf[string, *stream]
	nextID  atomic.Uint64
	wal     *wal // nil in memory mode
	store   *storage
	lock    *os.File
	// replaying is set while recovery replays the commit log (before Open
	// returns: no other goroutine runs then); replaySealed says the append
	// record being replayed is recAppendSealed.
	replaying, replaySealed bool

	closed   atomic.Bool
	inflight atomic.Int64  // operations admitted by enter and not yet left
	drained  chan struct{} // signalled when the last one leaves after Close began
	stop     chan struct{}
	bg       sync.WaitGroup
	ckptMu   sync.Mutex    // one checkpoint at a time
	ckptLSN  atomic.Uint64 // replay start of the last checkpoint
	nStreams atomic.Int64
	bufPool  sync.Pool

	storedBytes atomic.Int64

	// evicted: segments made remote whose files wait for a checkpoint
	// past their remote record (tier.go). Guarded by evictMu.
	evictMu sync.Mutex
	evicted []evictedSeg

	// Test hooks (nil outside tests). readLookedUp runs in Read between the
	// stream's lookup and the pinning of its segments: the window in which
	// a delete can free the stream's slab slots under the reader.
	// appendLookedUp runs in Append once it is admitted, before its record
	// is written: the window in which Close can begin.
	// ckptSnapshotted runs in a checkpoint after each stream's snapshot.
	readLookedUp, appendLookedUp, ckptSnapshotted func(path string)
}

// Open opens (creating if needed) the store in dir and recovers it: the last
// checkpoint plus a replay of the commit log after it. In memory mode dir is
// ignored and may be empty.
func Open(dir string, opts *Options) (*Engine, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("engine options: %w", err)
	}
	o := opts.withDefaults()
	e := &Engine{
		dir:     dir,
		opts:    o,
		log:     o.Logger,
		clock:   o.Clock,
		streams: xsync.NewMapOf[string, *stream](),
		stop:    make(chan struct{}),
		drained: make(chan struct{}, 1),
		store:   &storage{fs: o.FS, minSeg: o.MinSegmentSize, maxSeg: o.MaxSegmentSize, max: o.MaxMappedSegments},
	}
	e.bufPool.New = func() any { b := make([]byte, 0, 256); return &b }
	if o.Durability == DurabilitySync {
		if dir == "" {
			return nil, errors.New("engine: a data directory is required in sync mode")
		}
		if err := e.openDir(); err != nil {
			return nil, err
		}
		e.bg.Add(1)
		go e.checkpointLoop()
	}
	e.bg.Add(1)
	go e.expiryLoop()
	return e, nil
}

// openDir locks the directory and recovers its contents.
func (e *Engine) openDir() error {
	e.store.root = filepath.Join(e.dir, "streams")
	for _, d := range []string{e.dir, e.store.root, filepath.Join(e.dir, "wal")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	lf, err := os.OpenFile(filepath.Join(e.dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		return fmt.Errorf("engine: %s is in use by another process: %w", e.dir, err)
	}
	e.lock = lf
	if err := e.store.makeFanDirs(); err != nil {
		lf.Close()
		return fmt.Errorf("engine: %w", err)
	}
	// The directories made above (on a first Open) must survive a power
	// cut with the files later made in them: sync their parents.
	for _, d := range []string{e.store.root, e.dir} {
		if err := syncDir(e.store.fs, d); err != nil {
			lf.Close()
			return fmt.Errorf("engine: sync %s: %w", d, err)
		}
	}
	if e.store.minSeg <= maxSlot {
		sb, err := openSlab(e.store.fs, e.store.root, e.store.minSeg, e.opts.slabFileBytes, e.log)
		if err != nil {
			lf.Close()
			return fmt.Errorf("engine: %w", err)
		}
		e.store.slab = sb
	}
	start := time.Now()
	if err := e.recover(); err != nil {
		e.store.slab.close()
		lf.Close()
		return err
	}
	e.log.Info("engine recovered", "dir", e.dir, "streams", e.nStreams.Load(),
		"wal_lsn", e.wal.written.Load(), "took", time.Since(start))
	return nil
}

// Close stops background work, syncs the commit log, writes a final
// checkpoint and releases the directory. Blocked waiters return ErrEngineClosed.
//
// Close is a barrier: operations in flight when it is called complete (or
// fail as they would have), those that start after it return
// ErrEngineClosed, live Waits return ErrEngineClosed, and once it returns
// no goroutine of the engine runs and nothing is mapped but the views of
// Chunks the caller has not released yet (each unmaps with its Release).
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	e.streams.Range(func(_ string, s *stream) bool { s.notify(); return true })
	for e.inflight.Load() != 0 {
		select {
		case <-e.drained:
		case <-time.After(time.Millisecond):
		}
	}
	close(e.stop)
	e.bg.Wait()
	var err error
	if e.wal != nil {
		if e.wal.err() == nil {
			err = e.checkpoint()
		}
		err = errors.Join(err, e.wal.close())
		e.store.mu.Lock()
		for _, ds := range e.store.ring {
			if ds != nil {
				if f := ds.file.Swap(nil); f != nil {
					f.Close()
				}
			}
		}
		e.store.ring = nil
		e.store.mu.Unlock()
		e.store.slab.close()
		e.lock.Close()
	}
	return err
}

// enter admits an operation, or refuses it once Close has begun. Every
// admitted operation calls leave when done; Close waits for all of them, so
// none runs against a stopped commit log or re-maps a file after Close.
func (e *Engine) enter() error {
	e.inflight.Add(1)
	if e.closed.Load() {
		e.leave()
		return ErrEngineClosed
	}
	return nil
}

func (e *Engine) leave() {
	if e.inflight.Add(-1) == 0 && e.closed.Load() {
		select {
		case e.drained <- struct{}{}:
		default:
		}
	}
}

// Err reports why the engine stopped accepting writes, or nil if it accepts them.
func (e *Engine) Err() error {
	if e.closed.Load() {
		return ErrEngineClosed
	}
	if e.wal != nil {
		return e.wal.err()
	}
	return nil
}

// Now is the engine's clock (Options.Clock), by which TTLs run out: a
// caller that paces its own renewals of a stream uses it too.
func (e *Engine) Now() time.Time { return e.clock() }

// Stats are counters for metrics.
type Stats struct {
	Streams        int64
	CommitLSN      uint64        // durable commit-log position
	Fsyncs         uint64        // commit-log syncs so far
	CommitRecords  uint64        // records committed so far (Records/Fsyncs = mean batch)
	SyncTime       time.Duration // total time spent syncing the commit log
	StoredBytes    int64         // bytes of stream data stored (own data of all streams)
	MappedSegments int
}

// Stats returns current counters.
func (e *Engine) Stats() Stats {
	st := Stats{Streams: e.nStreams.Load(), StoredBytes: e.storedBytes.Load()}
	if e.wal != nil {
		st.CommitLSN = e.wal.synced.Load()
		st.Fsyncs = e.wal.fsyncs.Load()
		st.CommitRecords = e.wal.records.Load()
		st.SyncTime = time.Duration(e.wal.syncNanos.Load())
	}
	e.store.mu.Lock()
	st.MappedSegments = len(e.store.ring)
	e.store.mu.Unlock()
	return st
}

// commit writes one commit-log record and returns its LSN (0 in memory mode).
func (e *Engine) commit(a, b []byte) (uint64, error) {
	if e.wal == nil {
		return 0, nil
	}
	lsn, err := e.wal.write(a, b)
	return lsn, classifyIOErr(err)
}

// durable waits until the record at lsn survives a crash, or ctx ends
// (ctx.Err(): the record may still become durable).
func (e *Engine) durable(ctx context.Context, lsn uint64) error {
	if e.wal == nil || lsn == 0 {
		return nil
	}
	return e.wal.waitDurable(ctx, lsn)
}

// goneAfterDurable returns err, the answer of an operation that found s
// deleted, once the delete record is durable: no answer may reveal a
// delete that a crash could still undo. Never called with s.mu held (the
// committer publishes under it).
func (e *Engine) goneAfterDurable(s *stream, err error) error {
	if derr := e.durable(context.Background(), s.delLSN.Load()); derr != nil {
		return derr
	}
	return err
}

func (e *Engine) getBuf() *[]byte { return e.bufPool.Get().(*[]byte) }

func (e *Engine) putBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		*b = (*b)[:0]
		e.bufPool.Put(b)
	}
}

// checkPath validates a stream path.
func (e *Engine) checkPath(path string) error {
	if path == "" || len(path) > e.opts.MaxPathLen {
		return fmt.Errorf("%w: length must be 1..%d bytes", ErrBadPath, e.opts.MaxPathLen)
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: control character", ErrBadPath)
		}
	}
	return nil
}

// lookup finds a live, created stream for a client operation. Expired
// streams are deleted on the way.
func (e *Engine) lookup(path string) (*stream, error) {
	s, ok := e.streams.Load(path)
	if !ok || !s.ready.Load() {
		return nil, ErrNotFound
	}
	switch s.stateNow() {
	case stSoftDeleted:
		return nil, e.goneAfterDurable(s, ErrGone)
	case stDeleted:
		return nil, e.goneAfterDurable(s, ErrNotFound)
	}
	if s.expired(e.clock()) {
		e.expire(s)
		if s.stateNow() == stSoftDeleted {
			return nil, ErrGone // forks keep it: answer as every later lookup will
		}
		return nil, ErrNotFound
	}
	return s, nil
}

// expire deletes an expired stream in the background of the caller.
func (e *Engine) expire(s *stream) {
	if err := e.deleteStream(context.Background(), s, true); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrGone) {
		e.log.Warn("expire stream", "path", s.path, "err", err)
	}
}

// expiryLoop sweeps expired streams.
func (e *Engine) expiryLoop() {
	defer e.bg.Done()
	t := time.NewTicker(e.opts.ExpiryInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		now := e.clock()
		var due []*stream
		e.streams.Range(func(_ string, s *stream) bool {
			if s.stateNow() == stLive && s.ready.Load() && s.expired(now) {
				due = append(due, s)
			}
			return true
		})
		for _, s := range due {
			e.expire(s)
		}
	}
}
