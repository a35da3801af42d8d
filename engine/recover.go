package engine

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/durastream/durastream/segment"
)

// recover loads the last checkpoint, replays the commit log after it
// (stopping at the first damaged record), publishes the result and starts
// the commit log. Startup time grows with the log tail, not the data.
func (e *Engine) recover() error {
	walDir := filepath.Join(e.dir, "wal")
	byID := make(map[uint64]*stream)
	start, err := e.loadCheckpoint(byID)
	if err != nil {
		return err
	}
	bases, err := listWAL(walDir)
	if err != nil {
		return err
	}
	var segs []*walSeg
	pos := start
	if len(bases) == 0 {
		s, err := createWALSeg(e.opts.FS, walDir, start, e.opts.WALSegmentSize)
		if err != nil {
			return fmt.Errorf("engine: create commit log: %w", err)
		}
		segs = []*walSeg{s}
	} else {
		replayed := 0
		rs := &replayState{stopped: make(map[uint64]bool), missing: make(map[uint64]error)}
		e.replaying = true
		segs, pos, err = scanWAL(e.opts.FS, walDir, bases, start, e.opts.WALSegmentSize, func(lsn uint64, p []byte) error {
			replayed++
			rs.lsn = lsn
			return e.replay(byID, rs, p)
		})
		e.replaying = false
		if err == nil {
			for _, merr := range rs.missing {
				err = merr // a surviving stream's files are gone
				break
			}
		}
		if err != nil {
			for _, s := range segs {
				s.f.Close()
			}
			return fmt.Errorf("engine: replay commit log: %w", err)
		}
		e.log.Info("replayed commit log", "records", replayed, "from", start, "to", pos)
	}
	now := e.clock()
	for _, s := range byID {
		if d := s.data; d != nil && d.idxPartial {
			d.idx, d.idxPartial = nil, false
		}
		if s.data != nil && s.state != stDeleted {
			// Segments evicted by a replayed record keep their files until a
			// checkpoint covers it: until then a restart replays the appends
			// that wrote them (a by-reference append's bytes are only there).
			for _, ds := range s.data.segs {
				if ds.evictLSN != 0 {
					e.evicted = append(e.evicted, evictedSeg{s.id, ds, ds.evictLSN})
				}
			}
		}
		if s.state == stSoftDeleted && s.forks == 0 {
			continue // its last fork went away: removed below
		}
		// Reads are not logged, so the last access before a crash is not
		// known: a restart starts every sliding TTL window afresh rather
		// than expire a stream that was in use.
		if s.meta.hasTTL {
			s.lastAccess.Store(now.UnixNano())
		}
		s.vis.Store(uint64(s.tail))
		s.visClosed.Store(s.closed)
		s.ready.Store(true)
		e.streams.Store(s.path, s)
		e.nextID.Store(max(e.nextID.Load(), s.id))
		e.nStreams.Add(1)
	}
	for _, s := range byID {
		if s.state == stSoftDeleted && s.forks == 0 {
			s.state = stDeleted
			e.remove(s) // also drops its count and cascades
			e.nStreams.Add(1)
		}
	}
	var stored int64
	e.streams.Range(func(_ string, s *stream) bool {
		stored += int64(s.tail - s.meta.forkOffset)
		return true
	})
	e.storedBytes.Store(stored)
	e.removeOrphans(byID)
	e.wal = startWAL(e.opts.FS, walDir, e.opts.WALSegmentSize, segs, pos)
	return nil
}

// replayState is what replay carries from one record to the next.
type replayState struct {
	// stopped: streams whose appends end before a large append that never
	// became durable.
	stopped map[uint64]bool
	// missing: streams whose segment files were not there when a record
	// wrote to them. A stream deleted later in the log had its files
	// removed when that delete committed, so this is expected until its
	// delete record is replayed; a stream still in it at the end is damage.
	missing map[uint64]error
	// lsn is the LSN of the record being replayed.
	lsn uint64
}

// replay applies one commit-log record. Records the checkpoint already
// reflects are recognized by stream id and offset and skipped. A large
// append recorded by reference whose bytes in the stream's segment do not
// match its checksum was never acknowledged (its appender syncs them before
// answering), and neither was any later append of that stream (their
// answers wait for it): the stream's appends stop there (rs.stopped).
func (e *Engine) replay(byID map[uint64]*stream, rs *replayState, p []byte) error {
	stopped := rs.stopped
	// put writes a record's bytes to s's files, unless they are missing
	// (see replayState.missing): then only the tail moves on.
	put := func(s *stream, n int64, ref bool, fill fill) (bool, error) {
		if rs.missing[s.id] != nil {
			return true, nil
		}
		ok, _, err := e.putData(s, s.tail, n, ref, fill)
		if err != nil && errors.Is(err, fs.ErrNotExist) {
			rs.missing[s.id] = err
			return true, nil
		}
		return ok, err
	}
	if len(p) == 0 {
		return fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	switch p[0] {
	case recCreate:
		r, data, err := decodeCreate(p[1:])
		if err != nil {
			return fmt.Errorf("%w: create record: %w", ErrCorrupt, err)
		}
		if byID[r.id] != nil {
			return nil
		}
		m := &streamMeta{contentType: internContentType(r.contentType), json: isJSON(r.contentType), ttl: r.ttl,
			hasTTL: r.flags&fTTL != 0, createdAt: r.createdAt, reqSub: r.reqSub,
			forkOffset: Offset(r.forkOffset)}
		if r.flags&fExpires != 0 {
			m.expiresAt = r.expiresAt
		}
		if r.flags&fFork != 0 {
			src := byID[r.forkSrc]
			if src == nil {
				return fmt.Errorf("%w: fork %q of missing stream %d", ErrCorrupt, r.path, r.forkSrc)
			}
			m.source = src
			src.forks++
			if r.flags&fForkOff != 0 {
				off := Offset(r.reqOffset)
				m.reqOffset = &off
			}
		}
		s := &stream{id: r.id, path: r.path, meta: m, tail: m.forkOffset, closed: r.flags&fClosed != 0}
		s.lastAccess.Store(r.createdAt)
		if _, err := put(s, int64(len(data)), false, e.copyFill(data)); err != nil {
			return err
		}
		s.tail += Offset(len(data))
		byID[r.id] = s
	case recAppend, recAppendSealed:
		r, data, err := decodeAppend(p[1:])
		if err != nil {
			return fmt.Errorf("%w: append record: %w", ErrCorrupt, err)
		}
		s := byID[r.id]
		e.replaySealed = p[0] == recAppendSealed // read by sealByAge through put
		n := uint64(len(data))
		if r.flags&fRef != 0 {
			n = r.refLen
		}
		if s == nil || stopped[r.id] || r.offset+n <= uint64(s.tail) && (n > 0 || s.closed) {
			return nil // deleted later, cut short, or already in the checkpoint
		}
		if r.offset != uint64(s.tail) {
			return fmt.Errorf("%w: stream %q: record at offset %d, tail is %d", ErrCorrupt, s.path, r.offset, s.tail)
		}
		if r.flags&fRef != 0 {
			ok, err := put(s, int64(n), true, func(f *segment.File, pos, n int64) (bool, error) {
				return crc32.Checksum(f.Bytes(pos, n), castagnoli) == r.refCRC, nil
			})
			if err != nil {
				return err
			}
			if !ok {
				e.log.Warn("large append never became durable; stream ends before it", "stream", s.path, "offset", s.tail)
				stopped[r.id] = true
				return nil
			}
		} else if _, err := put(s, int64(n), false, e.copyFill(data)); err != nil {
			return err
		}
		s.tail += Offset(n)
		if r.flags&fSeq != 0 {
			s.mseq = r.mseq
		}
		if r.flags&fProducer != 0 {
			s.setProducer(r.producer, r.epoch, r.seq, 0)
		}
		if r.flags&fClosed != 0 {
			s.closed = true
			if r.flags&fProducer != 0 {
				s.closedBy = &producerTuple{id: r.producer, epoch: r.epoch, seq: r.seq}
			}
		}
	case recDelete:
		if len(p) < 9 {
			return fmt.Errorf("%w: delete record", ErrCorrupt)
		}
		s := byID[leUint64(p[1:])]
		if s == nil || s.state != stLive {
			return nil
		}
		if s.forks > 0 {
			s.state = stSoftDeleted
			return nil
		}
		// Remove it and release sources whose last fork this was.
		for s != nil {
			delete(byID, s.id)
			delete(rs.missing, s.id)
			var segs []*dataSeg
			if s.data != nil {
				segs = s.data.segs
				e.store.drop(segs)
			}
			e.store.removeFiles(s.id, segs)
			src := s.meta.source
			if src == nil {
				break
			}
			src.forks--
			if src.forks > 0 || src.state != stSoftDeleted {
				break
			}
			s = src
		}
	case recRemote:
		r, err := decodeRemote(p[1:])
		if err != nil {
			return fmt.Errorf("%w: remote record: %w", ErrCorrupt, err)
		}
		if s := byID[r.id]; s != nil && !stopped[r.id] && rs.missing[r.id] == nil {
			if err := e.replayRemote(s, &r, rs.lsn); err != nil {
				// As for missing files: a stream deleted later in the log
				// had its files removed, so its appends may not have
				// rebuilt the segment; damage only if it survives replay.
				rs.missing[r.id] = err
			}
		}
	case recSeal:
		r, err := decodeSeal(p[1:])
		if err != nil {
			return fmt.Errorf("%w: seal record: %w", ErrCorrupt, err)
		}
		if s := byID[r.id]; s != nil && !stopped[r.id] && rs.missing[r.id] == nil {
			if err := replaySeal(s, &r); err != nil {
				rs.missing[r.id] = err // as for a remote record
			}
		}
	default:
		return fmt.Errorf("%w: record kind %d", ErrCorrupt, p[0])
	}
	return nil
}

func leUint64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// removeOrphans deletes stream files that belong to no stream: left by a
// crash between a delete's commit and its file removal, by a create that
// never committed, or by a delete that skipped a segment it did not know;
// and segment files a stream no longer has locally: evicted to object
// storage, or laid out differently by the replay (a segment started by
// SealAfter before a crash is not started again when replay puts the
// same bytes back).
func (e *Engine) removeOrphans(byID map[uint64]*stream) {
	fans, err := os.ReadDir(e.store.root)
	if err != nil {
		e.log.Warn("orphan sweep: list stream directory", "dir", e.store.root, "err", err)
		return
	}
	for _, fan := range fans {
		dir := filepath.Join(e.store.root, fan.Name())
		if !fan.IsDir() {
			continue // slab files, a checkpoint's temporary
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			e.log.Warn("orphan sweep: list stream directory", "dir", dir, "err", err)
			continue
		}
		for _, ent := range ents {
			id, ok := streamIDOf(ent.Name())
			if !ok {
				continue
			}
			if s := byID[id]; s == nil || s.state == stDeleted || !s.hasLocalSegment(ent.Name()) {
				if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					e.log.Warn("remove orphan stream file", "file", ent.Name(), "err", err)
				}
			}
		}
	}
}

// checkpointLoop checkpoints every CheckpointInterval, or sooner once
// CheckpointBytes of commit log have accumulated.
func (e *Engine) checkpointLoop() {
	defer e.bg.Done()
	tick := time.NewTicker(min(e.opts.CheckpointInterval, time.Second))
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-e.stop:
			return
		case <-tick.C:
		}
		grown := int64(e.wal.written.Load() - e.ckptLSN.Load())
		if grown == 0 || (grown < e.opts.CheckpointBytes && time.Since(last) < e.opts.CheckpointInterval) {
			continue
		}
		if err := e.checkpoint(); err != nil {
			e.log.Error("checkpoint failed", "err", err)
		}
		last = time.Now()
	}
}

// hasLocalSegment reports whether name, a file of s in its fan-out
// directory, is its index or one of its local segments. Recovery only (no
// lock).
func (s *stream) hasLocalSegment(name string) bool {
	digits, ok := strings.CutSuffix(name[min(17, len(name)):], ".seg") // after streamIDOf's "<id>."
	base, err := strconv.ParseUint(digits, 10, 64)
	if !ok || err != nil {
		return true // the index, or not a segment name: not this sweep's to judge
	}
	if s.data == nil {
		return false
	}
	for _, ds := range s.data.segs {
		if ds.base == base && ds.slab1 == 0 && (ds.remote == "" || ds.evictLSN != 0) {
			return true
		}
	}
	return false
}
