package engine

import (
	"errors"
	"fmt"
	"github.com/durastream/durastream/vfs"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/durastream/durastream/index"
	"github.com/durastream/durastream/segment"
)

// A stream's own bytes live in segments whose capacity starts small and
// doubles up to MaxSegmentSize: the first, when it fits a slot, in a shared
// slab file (see slab), later ones in files named
// streams/<id&0xff>/<id>.<base offset>.seg. So an idle small stream costs a
// slab slot and no file, and a large one a few big files. An append never spans segments: when it
// does not fit, a new segment starts at the stream's tail. The bytes are
// exactly what readers receive, so a catch-up read is a view of a mapping.
//
// Segments are mapped lazily (a new one is written unmapped: see
// createForWrite) and unmapped by a CLOCK (second-chance LRU) bound on the
// number of mappings; a View pins its mapping until released.

type dataSeg struct {
	base  uint64
	cap   int64
	ord   uint32
	file  atomic.Pointer[segment.File] // nil while unmapped
	used  atomic.Bool                  // CLOCK reference bit
	dirty atomic.Bool                  // written since the last checkpoint's sync (see dirtySet)
	slot  int                          // position in the clock ring (under storage.mu), -1 if none
	slab1 int64                        // 1 + the slab slot holding the segment; 0: a file of its own
	// remote is the object-storage key holding the segment's bytes once it
	// was evicted or attached by a restore ("": local). Guarded by the
	// stream's mu; a remote segment is never pinned or written.
	remote  string
	created int64 // unix nanoseconds, when this process made or loaded it (SealAfter)
	// sealed: the last segment of an idle stream, ended by a seal record
	// (SealIdle): appends go to a new segment. Guarded by the stream's mu.
	sealed bool
	// evictLSN: recovery replayed the record that made it remote (at this
	// LSN), so its file stays until a checkpoint covers it. Recovery only.
	evictLSN uint64
}

// inSlab reports the slab slot holding ds, if it is in one.
func (ds *dataSeg) inSlab() (int64, bool) { return ds.slab1 - 1, ds.slab1 != 0 }

type storage struct {
	fs     vfs.FS
	root   string // <dir>/streams; "" in memory mode
	minSeg int64
	maxSeg int64

	mu   sync.Mutex // guards ring, hand and opening files
	max  int
	ring []*dataSeg
	hand int

	slab *slab // first segments that fit a slot (nil in memory mode)

	dirty dirtySet // files the next checkpoint must sync
}

// maxSlot is the largest MinSegmentSize whose first segments go to slabs.
const maxSlot = 64 << 10

func (st *storage) memory() bool { return st.root == "" }

// A stream's files sit directly in one of 256 fan-out directories (made at
// Open), so a new stream costs one file creation and no mkdir.
func (st *storage) fanDir(id uint64) string { return st.fanDirAt(int(id & 0xff)) }

func (st *storage) fanDirAt(i int) string { return filepath.Join(st.root, fmt.Sprintf("%02x", i)) }

func (st *storage) segPath(id uint64, base uint64) string {
	return filepath.Join(st.fanDir(id), fmt.Sprintf("%016x.%020d.seg", id, base))
}

func (st *storage) indexPath(id uint64) string {
	return filepath.Join(st.fanDir(id), fmt.Sprintf("%016x.index", id))
}

// makeFanDirs creates the fan-out directories.
func (st *storage) makeFanDirs() error {
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(st.fanDirAt(i), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// streamIDOf parses the stream id from a file name in a fan-out directory.
func streamIDOf(name string) (uint64, bool) {
	if len(name) < 17 || name[16] != '.' {
		return 0, false
	}
	id, err := strconv.ParseUint(name[:16], 16, 64)
	return id, err == nil
}

// nextCap is the capacity of a new segment after prev for an append of
// need bytes at off: twice prev's; or, when prev was sealed for its age
// (aged), twice what it held as a power of two, so that a slow stream
// sealed every SealAfter does not preallocate ever larger files. Between
// MinSegmentSize and MaxSegmentSize, and room for need bytes.
func (st *storage) nextCap(prev *dataSeg, aged bool, off uint64, need int64) int64 {
	c := st.minSeg
	switch {
	case aged:
		for used := int64(off - prev.base); c < 2*used && c < st.maxSeg; {
			c *= 2
		}
	case prev != nil:
		c = prev.cap * 2
	}
	c = min(c, st.maxSeg)
	if c < need {
		c = (need + 4095) &^ 4095
	}
	return c
}

// pin returns ds's file with a reference held; the caller must Release it.
// With create, a missing file is created (the append path); otherwise a
// missing file is corruption. Callers hold the stream's lock, so pins of one
// segment never race each other; only eviction (by other streams' pins)
// does, through ds.file's compare-and-swap. File system work happens outside
// the storage lock, so streams open and create files in parallel.
func (st *storage) pin(id uint64, ds *dataSeg, create bool) (*segment.File, error) {
	for {
		if f := ds.file.Load(); f != nil && f.Acquire() {
			ds.used.Store(true)
			return f, nil
		}
		f, err := st.open(id, ds, create)
		if err != nil {
			return nil, err
		}
		f.Acquire()
		if !ds.file.CompareAndSwap(nil, f) {
			f.Release()
			f.Close()
			continue
		}
		ds.used.Store(true)
		if !st.memory() {
			st.mu.Lock()
			st.insertLocked(ds)
			st.mu.Unlock()
		}
		return f, nil
	}
}

// createForWrite creates a new segment's file for the append that starts
// it, without mapping it (segment.CreateUnmapped): the segment stays
// unmapped, and out of the clock ring, until something pins it. Most new
// streams' first segment is written once and not read back soon, and an
// mmap, its page fault and the munmap of an evicted mapping cost more than
// the pwrite. The caller must Release the file.
func (st *storage) createForWrite(id uint64, ds *dataSeg) (*segment.File, error) {
	if slot, ok := ds.inSlab(); ok {
		return st.slab.window(slot)
	}
	f, err := segment.CreateUnmapped(st.fs, st.segPath(id, ds.base), ds.cap)
	if err != nil {
		return nil, classifyIOErr(err)
	}
	return f, nil
}

// open maps (or creates) a segment's file.
func (st *storage) open(id uint64, ds *dataSeg, create bool) (*segment.File, error) {
	if st.memory() {
		return segment.NewHeap(ds.cap), nil
	}
	if slot, ok := ds.inSlab(); ok {
		return st.slab.window(slot)
	}
	path := st.segPath(id, ds.base)
	var f *segment.File
	var err error
	if create {
		f, err = segment.Create(st.fs, path, ds.cap)
	} else if f, err = segment.Open(st.fs, path); err == nil && f.Cap() < ds.cap {
		f.Close()
		err = fmt.Errorf("%w: segment %s is %d bytes, want %d", ErrCorrupt, path, f.Cap(), ds.cap)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return nil, classifyIOErr(err)
	}
	return f, nil
}

// insertLocked puts ds in the clock ring, unmapping a victim if full.
func (st *storage) insertLocked(ds *dataSeg) {
	if len(st.ring) < st.max {
		ds.slot = len(st.ring)
		st.ring = append(st.ring, ds)
		return
	}
	for range 2 * len(st.ring) {
		i := st.hand
		st.hand = (st.hand + 1) % len(st.ring)
		c := st.ring[i]
		if c == nil {
			ds.slot, st.ring[i] = i, ds
			return
		}
		if c.used.Swap(false) {
			continue
		}
		f := c.file.Load()
		if f != nil && f.Pinned() {
			continue
		}
		if f != nil && c.file.CompareAndSwap(f, nil) {
			f.Close()
		}
		c.slot = -1
		ds.slot, st.ring[i] = i, ds
		return
	}
	// Everything is pinned: exceed the bound rather than block.
	ds.slot = len(st.ring)
	st.ring = append(st.ring, ds)
}

// drop unmaps a stream's segments (on delete); open views stay valid.
func (st *storage) drop(segs []*dataSeg) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, ds := range segs {
		if f := ds.file.Swap(nil); f != nil {
			f.Close()
		}
		if ds.slot >= 0 && ds.slot < len(st.ring) && st.ring[ds.slot] == ds {
			st.ring[ds.slot] = nil
		}
		ds.slot = -1
	}
}

// discard forgets a segment made for a write that failed: its mapping goes
// and its slab slot is free again (a file is left to the orphan sweep).
func (st *storage) discard(ds *dataSeg) {
	st.drop([]*dataSeg{ds})
	if slot, ok := ds.inSlab(); ok {
		st.slab.free(slot)
	}
}

// removeFiles deletes a stream's segment and index files and frees its
// slab slot (for reuse after the next checkpoint: slab.freeDeleted). Files it does not know of (a segment created for an append
// that never committed) are left to the orphan sweep at the next Open.
func (st *storage) removeFiles(id uint64, segs []*dataSeg) error {
	if st.memory() {
		return nil
	}
	var errs []error
	for _, ds := range segs {
		if slot, ok := ds.inSlab(); ok {
			st.slab.freeDeleted(slot)
			continue
		}
		if err := os.Remove(st.segPath(id, ds.base)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(st.indexPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeData stores an append's bytes at off in s's segments and indexes the
// boundary at its end. If the append then fails to commit, undoData must
// take the index entries and any new segment back. Called with s.mu held.
func (e *Engine) writeData(s *stream, off Offset, data []byte) error {
	_, _, err := e.putData(s, off, int64(len(data)), false, e.copyFill(data))
	return err
}

// A fill puts n bytes into f at pos (or checks the bytes there) for
// putData; false means they do not belong there.
type fill func(f *segment.File, pos, n int64) (bool, error)

// copyFill is a putData fill that stores data. Large data is written
// through descriptors (segment.WriteLarge: O_DIRECT for its whole blocks
// unless BufferedLargeAppends) rather than copied into the mapping: no page
// fault per fresh page, and no mapped dirty pages for the sync to
// write-protect. In the append-large profile the copy into the mapping and
// the msync after it were 25% and 46% of the server's CPU; then the copy
// into cache pages behind pwrite was 28%.
func (e *Engine) copyFill(data []byte) fill {
	return func(f *segment.File, pos, n int64) (bool, error) {
		if e.large(len(data)) {
			return true, f.WriteLarge(data, pos, !e.opts.BufferedLargeAppends)
		}
		return true, f.WriteAt(data, pos)
	}
}

// large reports whether an append of n bytes is large: written with
// WriteLarge and, in durable mode, referenced rather than carried by its commit-log
// record.
func (e *Engine) large(n int) bool { return int64(n) >= e.opts.LargeAppendBytes }

// putData places n bytes at off in s's segments (a new segment when they do
// not fit the last one, the last one has aged: then sealed is true, or
// SealIdle sealed it) with fill, and indexes the end boundary. fill
// returning false (recovery found bytes that do not match their checksum)
// or failing leaves the layout and index unchanged. Called with s.mu held.
func (e *Engine) putData(s *stream, off Offset, n int64, ref bool, fill fill) (bool, bool, error) {
	if n == 0 {
		return true, false, nil
	}
	if s.data == nil {
		s.data = &streamData{idx: index.New(e.opts.IndexEvery)}
	}
	d := s.data
	if err := e.ensureIndex(s); err != nil {
		return false, false, err
	}
	end := uint64(off) + uint64(n)
	ds := d.lastSeg()
	create := false
	// A by-reference append, whose bytes replay needs from its segment,
	// never goes into a slab slot (see slab). A remote segment is sealed.
	fresh := ds == nil || uint64(off) < ds.base || end > ds.base+uint64(ds.cap) || ds.slab1 != 0 && ref || ds.remote != "" || ds.sealed
	aged := !fresh && e.sealByAge(ds, off)
	fresh = fresh || aged
	if fresh {
		// Sealed for its age, by this append or SealIdle: sized by what it held.
		byAge := aged || ds != nil && ds.sealed
		ds = &dataSeg{base: uint64(off), cap: e.store.nextCap(ds, byAge, uint64(off), n), ord: uint32(len(d.segs)), slot: -1,
			created: e.clock().UnixNano()}
		create = true
		if sb := e.store.slab; len(d.segs) == 0 && sb != nil && ds.cap == sb.slotSize && !ref {
			slot, err := e.store.slab.alloc()
			if err != nil {
				return false, false, err
			}
			ds.slab1 = slot + 1
		}
	}
	var f *segment.File
	var err error
	if create && !e.store.memory() && !e.replaying {
		f, err = e.store.createForWrite(s.id, ds)
	} else {
		// Replay maps what it creates: its fills may check the bytes there.
		f, err = e.store.pin(s.id, ds, create)
	}
	if err != nil {
		if create {
			e.store.discard(ds)
		}
		return false, false, err // e.g. ENOSPC: the layout is unchanged, a later append retries
	}
	ok, err := fill(f, int64(uint64(off)-ds.base), n)
	f.Release()
	if !ok || err != nil {
		if create {
			e.store.discard(ds)
		}
		return false, false, classifyIOErr(err)
	}
	if !e.store.memory() {
		e.store.dirty.markSeg(s.id, ds)
		if create && ds.slab1 == 0 {
			e.store.dirty.markDir(int(s.id & 0xff))
		}
	}
	if create {
		d.segs = append(d.segs, ds)
		d.idx.Add(index.Entry{Off: uint64(off), Seg: ds.ord, Pos: 0})
	}
	d.idx.Add(index.Entry{Off: end, Seg: ds.ord, Pos: uint32(end - ds.base)})
	e.storedBytes.Add(n)
	return true, aged, nil
}

// undoData forgets an append of n bytes at off that wrote its bytes but did
// not commit: they leave the stored-bytes count, index entries past off go,
// and so does a segment that starts at off (it holds nothing committed).
// The bytes themselves are simply overwritten by the next append. Called
// with s.mu held.
func (e *Engine) undoData(s *stream, off Offset, n int64) {
	e.storedBytes.Add(-n)
	d := s.data
	if d == nil || d.idx == nil {
		return
	}
	d.idx.TruncateAfter(uint64(off))
	if ds := d.lastSeg(); ds != nil && ds.base == uint64(off) && (len(d.segs) > 1 || off == s.meta.forkOffset) {
		d.segs = d.segs[:len(d.segs)-1]
		e.store.drop([]*dataSeg{ds})
		if err := e.store.removeFiles(s.id, []*dataSeg{ds}); err != nil {
			e.log.Warn("remove the segment of an append that failed (the orphan sweep retries)", "path", s.path, "err", err)
		}
		d.idx.TruncateAfter(uint64(off) - 1)
		if len(d.segs) == 0 {
			s.data = nil
			return
		}
		// The previous segment's end boundary at off was replaced by the
		// dropped segment's start: restore it.
		prev := d.segs[len(d.segs)-1]
		d.idx.Add(index.Entry{Off: uint64(off), Seg: prev.ord, Pos: uint32(uint64(off) - prev.base)})
	}
}

// segUsed returns how many bytes of segment i hold data, given the tail.
func (d *streamData) segUsed(i int, tail uint64) uint64 {
	ds := d.segs[i]
	end := min(ds.base+uint64(ds.cap), tail)
	if i+1 < len(d.segs) {
		end = min(end, d.segs[i+1].base)
	}
	if end < ds.base {
		return 0
	}
	return end - ds.base
}

// ensureIndex loads the stream's sparse index on first use: from its file
// when that is valid, else rebuilt from the data. Called with s.mu held.
func (e *Engine) ensureIndex(s *stream) error {
	d := s.data
	if d == nil || d.idx != nil {
		return nil
	}
	every := e.opts.IndexEvery
	tail := uint64(s.tail)
	if !e.store.memory() {
		valid := func(en index.Entry) bool {
			return int(en.Seg) < len(d.segs) && en.Off == d.segs[en.Seg].base+uint64(en.Pos) &&
				en.Off <= tail && int64(en.Pos) <= d.segs[en.Seg].cap
		}
		x, _, err := index.Load(e.store.indexPath(s.id), every, valid)
		if err == nil && coversSegmentStarts(x, d.segs) {
			for _, ds := range d.segs {
				x.Add(index.Entry{Off: ds.base, Seg: ds.ord})
			}
			d.idx = x
			return nil
		}
	}
	// Rebuild: segment starts, plus JSON message boundaries when a segment
	// is big enough to need them.
	var segs []index.Segment
	var views []func()
	defer func() {
		for _, r := range views {
			r()
		}
	}()
	for i, ds := range d.segs {
		used := d.segUsed(i, tail)
		seg := index.Segment{Base: ds.base}
		if s.meta.json && used >= every && ds.remote != "" && e.replaying {
			d.idxPartial = true // segment start only: see idxPartial
		} else if s.meta.json && used >= every && ds.remote != "" {
			// A restored stream's first read: its boundaries are in the
			// objects (fetched under the stream's lock, once).
			v, err := e.readRemote(ds.remote, 0, int64(used))
			if err != nil {
				return err
			}
			seg.Data = v.B
		} else if s.meta.json && used >= every {
			f, err := e.store.pin(s.id, ds, false)
			if err != nil {
				return err
			}
			views = append(views, f.Release)
			seg.Data = f.Bytes(0, int64(used))
		}
		segs = append(segs, seg)
	}
	var split func([]byte, int) int
	if s.meta.json {
		split = func(b []byte, start int) int {
			n := JSONMessageEnd(b[start:])
			if n < 0 {
				return -1
			}
			return start + n
		}
	}
	d.idx = index.Rebuild(every, segs, split)
	if tail > 0 && len(d.segs) > 0 {
		last := len(d.segs) - 1
		d.idx.Add(index.Entry{Off: tail, Seg: uint32(last), Pos: uint32(tail - d.segs[last].base)})
	}
	return nil
}

// coversSegmentStarts reports whether every segment that starts at or below
// the index's last entry has its start entry.
func coversSegmentStarts(x *index.Index, segs []*dataSeg) bool {
	last, ok := x.Last()
	if !ok {
		return false
	}
	for _, ds := range segs {
		if ds.base > last.Off {
			break
		}
		en, ok := x.Floor(ds.base)
		if !ok || en.Off != ds.base || en.Seg != ds.ord {
			return false
		}
	}
	return true
}
