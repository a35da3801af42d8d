package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/durastream/durastream/vfs"
)

// A checkpoint is a snapshot of every stream's metadata plus the commit-log
// LSN replay starts from. It is consistent with replay, not with one instant:
//
//  1. c0 := the log's written LSN. Every record below c0 was applied to its
//     stream's writer state before step 2 reads that stream.
//  2. Snapshot each stream under its lock (writer state: it may include
//     records at or above c0, which replay then recognizes and skips, since
//     records carry the offset they apply at), flushing its index file.
//  3. Wait until the log is durable past everything snapshotted.
//  4. Sync the files written since the last checkpoint (filesync.go): the
//     stream bytes below every snapshotted tail were written, and their
//     files marked, before step 2, so now they are durable.
//  5. Write the checkpoint atomically; drop log segments that end <= c0.

const ckptName = "checkpoint"

// ckptMagic starts a checkpoint: the stream count is in the trailer, so
// the file can be written as it is encoded, and each segment names its
// slab slot, its object-storage key ("" if local) and its flags
// (segSealed). Older files are still read: ckptMagicV4 (no flags),
// ckptMagicV3 (no keys either), ckptMagicV2 (no slab slots either) and
// ckptMagicV1 (count in the header too).
var (
	ckptMagic   = []byte("DSCKPT05")
	ckptMagicV4 = []byte("DSCKPT04")
	ckptMagicV3 = []byte("DSCKPT03")
	ckptMagicV2 = []byte("DSCKPT02")
	ckptMagicV1 = []byte("DSCKPT01")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checkpoint stream flags.
const (
	cClosed = 1 << iota
	cTTL
	cExpires
	cFork
	cReqOffset
	cSoftDeleted
	cClosedBy
)

// Checkpoint segment flags.
const segSealed = 1 << 0 // dataSeg.sealed

// Checkpoint makes all stream files durable, writes a checkpoint and removes
// commit-log segments it covers. It runs periodically on its own; calling it
// is only useful in tests and before backups.
func (e *Engine) Checkpoint() error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	return e.checkpoint()
}

func (e *Engine) checkpoint() error {
	if e.wal == nil {
		return nil
	}
	e.ckptMu.Lock()
	defer e.ckptMu.Unlock()
	w := e.wal
	if err := w.err(); err != nil {
		return err
	}
	c0 := w.written.Load()
	if c0 == e.ckptLSN.Load() {
		return nil
	}
	e.store.slab.checkpointBegins()
	var all []*stream
	e.streams.Range(func(_ string, s *stream) bool { all = append(all, s); return true })
	slices.SortFunc(all, func(a, b *stream) int { return cmpU64(a.id, b.id) })

	// Streamed to a temporary file in 1 MiB pieces: at a million streams the
	// snapshot is ~100 MB, which built in memory (and regrown by doubling)
	// raised the server's peak heap and RSS at every checkpoint.
	cw, err := newCkptWriter(e.opts.FS, filepath.Join(e.dir, ckptName))
	if err != nil {
		return fmt.Errorf("checkpoint: %w", classifyIOErr(err))
	}
	defer cw.abort()
	if e.opts.ckptV2 {
		cw.buf = append(cw.buf, ckptMagicV2...)
	} else {
		cw.buf = append(cw.buf, ckptMagic...)
	}
	cw.buf = binary.LittleEndian.AppendUint64(cw.buf, c0)
	cw.buf = binary.LittleEndian.AppendUint64(cw.buf, e.nextID.Load())
	var n uint64
	var indexFiles []string // flushed: the sync below includes them
	for _, s := range all {
		s.mu.Lock()
		// A stream whose create is still being written is locked by its
		// creator until the record is in the log, so every stream seen here
		// has a create record below what step 3 waits for.
		if s.state == stDeleted {
			s.mu.Unlock()
			continue
		}
		cw.buf = e.encodeStream(cw.buf, s)
		var err error
		if x := s.data.index(); x != nil && x.Len() > len(s.data.segs) && x.Unflushed() {
			path := e.store.indexPath(s.id)
			if err = x.Flush(e.opts.FS, path); err == nil {
				indexFiles = append(indexFiles, path)
				e.store.dirty.markDir(int(s.id & 0xff)) // it may be new
			}
		}
		s.mu.Unlock()
		if e.ckptSnapshotted != nil {
			e.ckptSnapshotted(s.path)
		}
		if err != nil {
			return fmt.Errorf("checkpoint: flush index of %q: %w", s.path, classifyIOErr(err))
		}
		n++
		if err := cw.flush(1 << 20); err != nil {
			return fmt.Errorf("checkpoint: %w", classifyIOErr(err))
		}
	}
	// Trailer: the stream count, then the CRC of everything before it.
	cw.buf = binary.LittleEndian.AppendUint64(cw.buf, n)
	if err := cw.flush(0); err != nil {
		return fmt.Errorf("checkpoint: %w", classifyIOErr(err))
	}

	if err := w.waitDurable(context.Background(), w.written.Load()); err != nil {
		return err
	}
	if err := e.syncDirty(indexFiles); err != nil {
		// Stream bytes may be lost from the page cache: stop, as for a
		// failed commit-log sync, and let recovery replay the log.
		w.fail(fmt.Errorf("checkpoint: sync stream files: %w", err))
		return w.err()
	}
	if err := cw.commit(); err != nil {
		return fmt.Errorf("checkpoint: %w", classifyIOErr(err))
	}
	e.store.slab.checkpointDurable()
	e.ckptLSN.Store(c0)
	e.removeEvicted(c0)
	for _, err := range w.dropBefore(c0) {
		e.log.Warn("remove commit-log segment a checkpoint covers", "err", err)
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// encodeStream appends s's writer state. Called with s.mu held.
func (e *Engine) encodeStream(b []byte, s *stream) []byte {
	m := s.meta
	var fl byte
	if s.closed {
		fl |= cClosed
	}
	if m.hasTTL {
		fl |= cTTL
	}
	if m.expiresAt != 0 {
		fl |= cExpires
	}
	if m.source != nil {
		fl |= cFork
	}
	if m.reqOffset != nil {
		fl |= cReqOffset
	}
	if s.state == stSoftDeleted {
		fl |= cSoftDeleted
	}
	if s.closedBy != nil {
		fl |= cClosedBy
	}
	b = binary.LittleEndian.AppendUint64(b, s.id)
	b = appendString(b, s.path)
	b = appendString(b, m.contentType)
	b = append(b, fl)
	b = binary.AppendUvarint(b, m.ttl)
	b = binary.AppendVarint(b, m.expiresAt)
	b = binary.AppendVarint(b, m.createdAt)
	b = binary.AppendVarint(b, s.lastAccess.Load())
	var src uint64
	if m.source != nil {
		src = m.source.id
	}
	b = binary.AppendUvarint(b, src)
	b = binary.AppendUvarint(b, uint64(m.forkOffset))
	var req uint64
	if m.reqOffset != nil {
		req = uint64(*m.reqOffset)
	}
	b = binary.AppendUvarint(b, req)
	b = binary.AppendUvarint(b, m.reqSub)
	b = binary.AppendUvarint(b, uint64(s.tail))
	b = appendString(b, s.mseq)
	if s.closedBy != nil {
		b = appendString(b, s.closedBy.id)
		b = binary.AppendUvarint(b, s.closedBy.epoch)
		b = binary.AppendUvarint(b, s.closedBy.seq)
	}
	b = binary.AppendUvarint(b, uint64(len(s.producers)))
	for id, p := range s.producers {
		b = appendString(b, id)
		b = binary.AppendUvarint(b, p.epoch)
		b = binary.AppendUvarint(b, p.seq)
	}
	var segs []*dataSeg
	if s.data != nil {
		segs = s.data.segs
	}
	b = binary.AppendUvarint(b, uint64(len(segs)))
	for _, ds := range segs {
		b = binary.AppendUvarint(b, ds.base)
		b = binary.AppendUvarint(b, uint64(ds.cap))
		if !e.opts.ckptV2 {
			b = binary.AppendUvarint(b, uint64(ds.slab1))
			b = appendString(b, ds.remote)
			var fl byte
			if ds.sealed {
				fl |= segSealed
			}
			b = append(b, fl)
		}
	}
	return b
}

func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// loadCheckpoint reads the checkpoint, if any, into byID. It returns the LSN
// replay starts from.
func (e *Engine) loadCheckpoint(byID map[uint64]*stream) (uint64, error) {
	raw, err := os.ReadFile(filepath.Join(e.dir, ckptName))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	version := 0
	for v, magic := range [][]byte{ckptMagicV1, ckptMagicV2, ckptMagicV3, ckptMagicV4, ckptMagic} {
		if len(raw) >= len(magic) && string(raw[:len(magic)]) == string(magic) {
			version = v + 1
		}
	}
	v1 := version == 1
	if len(raw) < len(ckptMagic)+28 || version == 0 {
		return 0, fmt.Errorf("%w: checkpoint header", ErrCorrupt)
	}
	body := raw[:len(raw)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(raw[len(raw)-4:]) {
		return 0, fmt.Errorf("%w: checkpoint checksum", ErrCorrupt)
	}
	d := decoder{b: body[len(ckptMagic):]}
	var count uint64
	if !v1 {
		count = binary.LittleEndian.Uint64(body[len(body)-8:])
		d.b = d.b[:len(d.b)-8]
	}
	start := d.u64()
	e.nextID.Store(d.u64())
	if v1 {
		count = d.u64()
	}
	for i := uint64(0); i < count && d.err == nil; i++ {
		s := &stream{}
		m := &streamMeta{}
		s.meta = m
		s.id = d.u64()
		s.path = d.str()
		m.contentType = internContentType(d.str())
		m.json = isJSON(m.contentType)
		fl := d.byte1()
		m.ttl = d.uvarint()
		m.hasTTL = fl&cTTL != 0
		m.expiresAt = d.varint()
		m.createdAt = d.varint()
		s.lastAccess.Store(d.varint())
		src := d.uvarint()
		m.forkOffset = Offset(d.uvarint())
		req := Offset(d.uvarint())
		if fl&cReqOffset != 0 {
			m.reqOffset = &req
		}
		m.reqSub = d.uvarint()
		s.tail = Offset(d.uvarint())
		s.mseq = d.str()
		s.closed = fl&cClosed != 0
		if fl&cClosedBy != 0 {
			s.closedBy = &producerTuple{id: d.str(), epoch: d.uvarint(), seq: d.uvarint()}
		}
		for np := d.uvarint(); np > 0 && d.err == nil; np-- {
			id := d.str()
			s.setProducer(id, d.uvarint(), d.uvarint(), 0)
		}
		if ns := d.uvarint(); ns > 0 && d.err == nil {
			s.data = &streamData{}
			for j := uint64(0); j < ns && d.err == nil; j++ {
				ds := &dataSeg{base: d.uvarint(), cap: int64(d.uvarint()), ord: uint32(j), slot: -1}
				if version >= 3 {
					ds.slab1 = int64(d.uvarint())
				}
				if version >= 4 {
					ds.remote = d.str()
				}
				if version >= 5 {
					ds.sealed = d.byte1()&segSealed != 0
				}
				if slot, ok := ds.inSlab(); ok && d.err == nil {
					if e.store.slab == nil {
						return 0, fmt.Errorf("%w: checkpoint names slab slot %d, and this engine has no slab", ErrCorrupt, slot)
					}
					if err := e.store.slab.claim(slot); err != nil {
						return 0, err
					}
				}
				s.data.segs = append(s.data.segs, ds)
			}
		}
		if fl&cSoftDeleted != 0 {
			s.state = stSoftDeleted
		}
		if fl&cFork != 0 {
			srcS := byID[src]
			if srcS == nil {
				return 0, fmt.Errorf("%w: checkpoint: fork %q has no source %d", ErrCorrupt, s.path, src)
			}
			m.source = srcS
			srcS.forks++
		}
		byID[s.id] = s
	}
	if d.err != nil {
		return 0, fmt.Errorf("%w: checkpoint: %w", ErrCorrupt, d.err)
	}
	e.ckptLSN.Store(start)
	return start, nil
}

// ckptWriter writes a checkpoint to a temporary file as it is encoded,
// keeping a running CRC, and renames it into place on commit.
type ckptWriter struct {
	fs        vfs.FS
	path, tmp string
	f         *os.File
	buf       []byte
	off       int64
	crc       uint32
}

func newCkptWriter(fs vfs.FS, path string) (*ckptWriter, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &ckptWriter{fs: fs, path: path, tmp: tmp, f: f, buf: make([]byte, 0, 1<<20+64<<10)}, nil
}

// flush writes the buffer out once it holds at least min bytes.
func (cw *ckptWriter) flush(min int) error {
	if len(cw.buf) < max(min, 1) {
		return nil
	}
	cw.crc = crc32.Update(cw.crc, castagnoli, cw.buf)
	if _, err := cw.fs.WriteAt(cw.f, cw.buf, cw.off); err != nil {
		return err
	}
	cw.off += int64(len(cw.buf))
	cw.buf = cw.buf[:0]
	return nil
}

// commit appends the CRC, makes the file durable and renames it into place.
func (cw *ckptWriter) commit() error {
	cw.buf = binary.LittleEndian.AppendUint32(cw.buf[:0], cw.crc)
	if _, err := cw.fs.WriteAt(cw.f, cw.buf, cw.off); err != nil {
		return err
	}
	if err := cw.fs.Fsync(cw.f); err != nil {
		return err
	}
	err := cw.f.Close()
	cw.f = nil
	if err != nil {
		return err
	}
	if err := cw.fs.Rename(cw.tmp, cw.path); err != nil {
		return err
	}
	return syncDir(cw.fs, dirOf(cw.path))
}

// abort drops an uncommitted checkpoint.
func (cw *ckptWriter) abort() {
	if cw.f != nil {
		cw.f.Close()
		os.Remove(cw.tmp)
	}
}
