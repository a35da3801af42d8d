package engine

import (
	"context"
	"errors"
	"fmt"
	"github.com/durastream/durastream/vfs"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durastream/durastream/segment"
)

// The commit log (WAL) is shared by all streams. Its positions are LSNs: a
// segment whose base LSN is b covers [b, b+cap), and the next segment's base
// is b+cap. Segment files are named by their base LSN.
//
// Writers frame their record into an in-memory batch under mu, in LSN order,
// and then wait in waitDurable. One committer goroutine takes the batch,
// writes it to the active segment with one pwrite, syncs, and advances
// synced, releasing every waiter at or below it: the batch is whatever
// arrived during the previous sync, with no timer on the hot path, and an
// append costs a copy, not a system call.
//
// Every segment keeps rolloverSize bytes free at its end for a rollover
// record, so recovery can tell "this segment is full, continue in the next"
// from "the log ends here" (after which anything in later files was never
// acknowledged and is discarded).

const walSuffix = ".wal"

var rolloverSize = segment.RecordSize(1)

// maxSpareBatch caps the batch buffer the committer keeps for reuse, so one
// burst of large records does not pin its memory.
const maxSpareBatch = 4 << 20

type walSeg struct {
	base uint64
	f    *segment.File
	path string
}

func (s *walSeg) end() uint64 { return s.base + uint64(s.f.Cap()) }

type wal struct {
	fs      vfs.FS
	dir     string
	segSize int64

	mu    sync.Mutex
	segs  []*walSeg // oldest first; the last is active
	pos   int64     // end of the last record in the active segment
	batch []byte    // records not yet in the file; they end at pos
	spare []byte    // the committer's last batch, reused (committer only)

	written  atomic.Uint64 // LSN past the last fully written record
	synced   atomic.Uint64 // LSN up to which everything is durable
	syncedCh atomic.Pointer[chan struct{}]
	failure  atomic.Pointer[error] // sticky: set once, never cleared

	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{} // closed when the committer and the preparer have stopped
	next    chan prepared // the preparer's result for the one outstanding request
	prepare chan uint64   // base LSN the preparer should make next

	// Counters for metrics and benchmarks.
	fsyncs    atomic.Uint64
	records   atomic.Uint64
	syncNanos atomic.Int64
}

func walName(base uint64) string { return fmt.Sprintf("%020d%s", base, walSuffix) }

// listWAL returns the base LSNs of the WAL files in dir, ascending.
func listWAL(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, walSuffix) {
			continue
		}
		b, err := strconv.ParseUint(strings.TrimSuffix(name, walSuffix), 10, 64)
		if err != nil {
			continue
		}
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

// startWAL begins writing at LSN pos of the given segments (the last is
// active) and starts the committer and the segment preparer.
func startWAL(fs vfs.FS, dir string, segSize int64, segs []*walSeg, pos uint64) *wal {
	w := &wal{
		fs:      fs,
		dir:     dir,
		segSize: segSize,
		segs:    segs,
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		next:    make(chan prepared, 1),
		prepare: make(chan uint64, 1),
	}
	active := segs[len(segs)-1]
	w.pos = int64(pos - active.base)
	w.written.Store(pos)
	w.synced.Store(pos)
	ch := make(chan struct{})
	w.syncedCh.Store(&ch)
	var loops sync.WaitGroup
	loops.Go(w.commitLoop)
	loops.Go(w.prepareLoop)
	go func() { loops.Wait(); close(w.done) }()
	w.prepare <- active.end()
	return w
}

func (w *wal) err() error {
	if p := w.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records the first storage failure; the log accepts nothing after it.
// It wakes every waiter: none of them can become durable now, and the
// committer, which stops on the failure, will not wake them. The cause is
// kept as text only: whatever it was (ENOSPC included), every write from
// now on gets the same ErrFailed, not a "no space" that invites retrying
// against an engine stopped until restart.
func (w *wal) fail(err error) {
	err = fmt.Errorf("%w: %v", ErrFailed, err)
	w.failure.CompareAndSwap(nil, &err)
	w.broadcast()
}

// write appends one record (payload a then b) to the batch and returns the
// LSN just past it. The caller must then waitDurable(lsn) before
// acknowledging.
func (w *wal) write(a, b []byte) (uint64, error) {
	n := len(a) + len(b)
	if n == 0 || n > segment.MaxPayload {
		return 0, fmt.Errorf("commit record of %d bytes", n)
	}
	need := segment.RecordSize(n)
	w.mu.Lock()
	if err := w.err(); err != nil {
		w.mu.Unlock()
		return 0, err
	}
	active := w.segs[len(w.segs)-1]
	if w.pos+need+rolloverSize > active.f.Cap() {
		var err error
		if active, err = w.roll(need); err != nil {
			w.mu.Unlock()
			return 0, err
		}
	}
	w.batch = segment.AppendRecord(w.batch, a, b)
	w.pos += need
	lsn := active.base + uint64(w.pos)
	w.written.Store(lsn)
	w.mu.Unlock()
	w.records.Add(1)
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return lsn, nil
}

// roll closes the active segment with a rollover record, writing it and the
// batch there, and activates the next one, sized for a record of need bytes.
// Called with mu held.
//
// Exactly one preparation is outstanding at any time (requested when the
// previous segment became active), so the writer and the preparer never
// touch the same file: roll takes the preparer's result, waiting if it is
// not ready yet, and only then requests the next one.
func (w *wal) roll(need int64) (*walSeg, error) {
	old := w.segs[len(w.segs)-1]
	base := old.end()
	size := max(w.segSize, need+rolloverSize)
	res := <-w.next
	next, err := res.seg, res.err
	if err == nil && next.f.Cap() < size {
		// Too small for this record: grow the same file.
		next.f.Close()
		next, err = createWALSeg(w.fs, w.dir, base, size)
	} else if err != nil {
		next, err = createWALSeg(w.fs, w.dir, base, size) // the preparer failed: try once more here
	}
	if err != nil {
		w.prepare <- base // keep one preparation outstanding
		return nil, classifyIOErr(err)
	}
	w.batch = segment.AppendRecord(w.batch, []byte{recRollover}, nil)
	if err := old.f.WriteAt(w.batch, w.pos+rolloverSize-int64(len(w.batch))); err != nil {
		// The batch held other writers' records: they can never be synced.
		w.fail(fmt.Errorf("write commit log: %w", err))
		w.next <- prepared{seg: next}
		return nil, w.err()
	}
	w.segs = append(w.segs, next)
	w.pos = 0
	w.batch = w.batch[:0]
	w.prepare <- next.end()
	return next, nil
}

// prepared is the preparer's result.
type prepared struct {
	seg *walSeg
	err error
}

// createWALSeg preallocates a segment and makes its existence durable, so a
// record synced into it cannot be lost with the directory entry.
func createWALSeg(fs vfs.FS, dir string, base uint64, size int64) (*walSeg, error) {
	path := filepath.Join(dir, walName(base))
	f, err := segment.CreateWritten(fs, path, size)
	if err != nil {
		return nil, classifyIOErr(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(fs, dir); err != nil {
		f.Close()
		return nil, err
	}
	return &walSeg{base: base, f: f, path: path}, nil
}

// prepareLoop keeps the next segment ready off the hot path: it creates the
// segment it is asked for and hands it (or the error) to roll.
func (w *wal) prepareLoop() {
	for {
		select {
		case <-w.stop:
			return
		case base := <-w.prepare:
			s, err := createWALSeg(w.fs, w.dir, base, w.segSize)
			w.next <- prepared{seg: s, err: err}
		}
	}
}

// commitLoop is the group committer.
func (w *wal) commitLoop() {
	var mark, lastBatch uint64 // records counted at the last sync, and in its batch
	for {
		select {
		case <-w.kick:
		case <-w.stop:
			w.syncOnce()
			return
		}
		for w.synced.Load() < w.written.Load() && w.err() == nil {
			// When the last sync released several appenders, those that
			// have not written again yet are probably runnable: yield once
			// so they join this batch, which turns the alternation of tiny
			// and large batches into steady large ones. Not for a lone
			// appender, which has written already: Gosched would queue the
			// committer behind every runnable goroutine, e.g. the thousand
			// readers its last append woke.
			if lastBatch > 1 {
				runtime.Gosched()
			}
			n := w.records.Load()
			w.syncOnce()
			lastBatch, mark = n-mark, n
		}
	}
}

// syncOnce writes the batch, makes everything written so far durable and
// releases its waiters. Only the committer goroutine calls it.
func (w *wal) syncOnce() {
	from := w.synced.Load()
	if w.err() != nil {
		return
	}
	w.mu.Lock()
	target := w.written.Load()
	if target <= from {
		w.mu.Unlock()
		return
	}
	active := w.segs[len(w.segs)-1]
	batch, at := w.batch, w.pos-int64(len(w.batch))
	w.batch, w.spare = w.spare[:0], nil
	var todo []*walSeg
	for _, s := range w.segs {
		if s.end() > from && s.base < target {
			todo = append(todo, s)
		}
	}
	w.mu.Unlock()
	start := time.Now()
	defer func() { w.syncNanos.Add(int64(time.Since(start))) }()
	err := active.f.WriteAt(batch, at)
	if cap(batch) <= maxSpareBatch {
		w.spare = batch
	}
	if err != nil {
		w.fail(fmt.Errorf("write commit log: %w", err))
		return
	}
	for _, s := range todo {
		if skipWALSync {
			break
		}
		lo := max(from, s.base) - s.base
		hi := min(target, s.end()) - s.base
		if err := s.f.SyncRange(int64(lo), int64(hi-lo)); err != nil {
			// Never retry a failed fsync: the kernel may have dropped the
			// dirty pages, so a later success would prove nothing.
			w.fail(fmt.Errorf("sync commit log: %w", err))
			return
		}
	}
	w.fsyncs.Add(1)
	w.synced.Store(target)
	w.broadcast()
}

func (w *wal) broadcast() {
	ch := make(chan struct{})
	old := w.syncedCh.Swap(&ch)
	close(*old)
}

// waitDurable blocks until LSN lsn is durable, the log has failed, or ctx
// ends (ctx.Err()).
func (w *wal) waitDurable(ctx context.Context, lsn uint64) error {
	for {
		ch := w.syncedCh.Load()
		if w.synced.Load() >= lsn {
			return nil
		}
		if err := w.err(); err != nil {
			return err
		}
		select {
		case <-*ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// dropBefore removes segments that end at or before lsn (a checkpoint covers
// them). The active segment always stays. A segment that cannot be removed
// is returned (the caller logs it): it costs disk space, and the next
// Open's replay skips it.
func (w *wal) dropBefore(lsn uint64) []error {
	w.mu.Lock()
	var gone []*walSeg
	for len(w.segs) > 1 && w.segs[0].end() <= lsn {
		gone = append(gone, w.segs[0])
		w.segs = w.segs[1:]
	}
	w.mu.Unlock()
	var errs []error
	for _, s := range gone {
		s.f.Close()
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errs
}

// close syncs what was written, stops the goroutines and unmaps the segments.
func (w *wal) close() error {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.segs {
		s.f.Close()
	}
	select {
	case p := <-w.next:
		if p.seg != nil {
			p.seg.f.Close() // left in place: recovery reuses or removes it
		}
	default:
	}
	return w.err()
}

// scanWAL replays the records of the segments at bases (ascending), calling
// fn for each payload, from LSN start. It stops at the end of the log: a
// segment that ends without a rollover record, or the first damaged record.
// It returns the segments to keep (those up to the end, still mapped, the
// last one active) and the LSN where writing resumes. Files after the end
// are removed; the bytes after the end in the last segment are zeroed, so a
// stale record there can never be mistaken for a new one.
func scanWAL(fs vfs.FS, dir string, bases []uint64, start uint64, segSize int64, fn func(lsn uint64, p []byte) error) ([]*walSeg, uint64, error) {
	var segs []*walSeg
	closeAll := func() {
		for _, s := range segs {
			s.f.Close()
		}
	}
	for i, base := range bases {
		path := filepath.Join(dir, walName(base))
		if len(segs) > 0 && base != segs[len(segs)-1].end() {
			break // a gap: the earlier segment did not roll over into this one
		}
		if st, err := os.Stat(path); err == nil && st.Size() == 0 {
			// Created but never reserved (a crash inside createWALSeg): it
			// holds nothing. If the previous segment rolled into it, the log
			// continues in a fresh segment here.
			os.Remove(path)
			if len(segs) == 0 {
				continue
			}
			ns, err := createWALSeg(fs, dir, base, segSize)
			if err != nil {
				closeAll()
				return nil, 0, err
			}
			segs = append(segs, ns)
			removeWALAfter(dir, bases[i+1:], ns.base)
			return segs, ns.base, nil
		}
		f, err := segment.OpenWritten(fs, path)
		if err != nil {
			closeAll()
			return nil, 0, fmt.Errorf("%w: open commit log %s: %w", ErrCorrupt, path, err)
		}
		if base+uint64(f.Cap()) <= start && i+1 < len(bases) {
			f.Close() // wholly before the checkpoint
			os.Remove(path)
			continue
		}
		s := &walSeg{base: base, f: f, path: path}
		segs = append(segs, s)
		buf := f.Bytes(0, f.Cap())
		var pos int64
		if start > base {
			pos = int64(start - base)
		}
		rolled := false
		for {
			p, next, err := segment.ReadRecord(buf, pos)
			if err == io.EOF || errors.Is(err, segment.ErrCorrupt) {
				break
			}
			if len(p) == 1 && p[0] == recRollover {
				rolled = true
				break
			}
			if err := fn(base+uint64(next), p); err != nil {
				closeAll()
				return nil, 0, err
			}
			pos = next
		}
		if rolled && i+1 < len(bases) && bases[i+1] == s.end() {
			continue
		}
		if rolled {
			// The next segment was never made: start a fresh one.
			ns, err := createWALSeg(fs, dir, s.end(), max(f.Cap(), 1))
			if err != nil {
				closeAll()
				return nil, 0, err
			}
			segs = append(segs, ns)
			removeWALAfter(dir, bases[i+1:], ns.base)
			return segs, ns.base, nil
		}
		// The log ends here.
		clear(buf[pos:])
		if err := f.SyncRange(pos, f.Cap()-pos); err != nil {
			closeAll()
			return nil, 0, err
		}
		removeWALAfter(dir, bases[i+1:], base)
		if f.Cap() < segSize {
			// A file shorter than a segment (cut by a filesystem-level
			// crash): reserve it to full size again so that writing can
			// resume here with room for the rollover record.
			f.Close()
			grown, err := createWALSeg(fs, dir, base, segSize)
			if err != nil {
				closeAll()
				return nil, 0, err
			}
			segs[len(segs)-1] = grown
		}
		return segs, base + uint64(pos), nil
	}
	closeAll()
	return nil, 0, fmt.Errorf("%w: commit log has no segment covering LSN %d", ErrCorrupt, start)
}

func removeWALAfter(dir string, bases []uint64, keep uint64) {
	for _, b := range bases {
		if b != keep {
			os.Remove(filepath.Join(dir, walName(b)))
		}
	}
}
