package index

import (
	"encoding/binary"
	"github.com/durastream/durastream/vfs"
	"os"
)

// The index file is an append-only sequence of EntrySize records:
//
//	+------------+------------+------------+
//	| Off uint64 | Seg uint32 | Pos uint32 |
//	+------------+------------+------------+
//
// Little-endian, no header and no checksum: a record is judged by whether it
// continues the ordering (and by Load's valid callback), and a damaged index
// can always be rebuilt from the segments.

func appendEntry(b []byte, e Entry) []byte {
	b = binary.LittleEndian.AppendUint64(b, e.Off)
	b = binary.LittleEndian.AppendUint32(b, e.Seg)
	return binary.LittleEndian.AppendUint32(b, e.Pos)
}

func decodeEntry(b []byte) Entry {
	return Entry{
		Off: binary.LittleEndian.Uint64(b),
		Seg: binary.LittleEndian.Uint32(b[8:]),
		Pos: binary.LittleEndian.Uint32(b[12:]),
	}
}

// Unflushed reports whether Flush has anything to write.
func (x *Index) Unflushed() bool { return x.persisted != len(x.e) || x.stale }

// Flush appends to path the entries not yet persisted, creating the file
// (0o644) if it is missing. It does not fsync: the engine syncs the files it
// flushed at checkpoints. If persisted entries were dropped (TruncateAfter,
// a damaged Load, a replaced entry), the file is first cut back to the entries
// still kept. It returns nil without any I/O when nothing is new.
//
// The file is cut to exactly the persisted entries before writing, so a
// freshly built index (Rebuild) replaces whatever the file held, and records
// left by a failed Flush are overwritten. If the file is shorter than what is
// believed persisted (it was removed or replaced), it is rewritten whole.
// Writes go through fs (nil: the real file system).
func (x *Index) Flush(fs vfs.FS, path string) error {
	fs = vfs.Or(fs)
	if !x.Unflushed() {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	start := x.persisted
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if fi.Size() < int64(start)*EntrySize {
		start = 0
	}
	at := int64(start) * EntrySize
	if fi.Size() != at {
		if err := f.Truncate(at); err != nil {
			f.Close()
			return err
		}
	}
	if start < len(x.e) {
		buf := make([]byte, 0, (len(x.e)-start)*EntrySize)
		for _, e := range x.e[start:] {
			buf = appendEntry(buf, e)
		}
		// WriteAt rather than O_APPEND: the position is the one just
		// established, whatever a failed earlier Flush left behind.
		if _, err := fs.WriteAt(f, buf, at); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	x.persisted = len(x.e)
	x.stale = false
	return nil
}

// Load reads the index file at path. It keeps the longest valid prefix:
// whole records only (a torn trailing partial record is dropped), each
// continuing the order Add enforces (Off strictly increasing, Seg
// non-decreasing), and each accepted by valid (valid may be nil; the caller
// uses it to check entries against the segments it has). Everything from the
// first invalid record on is dropped, and damaged reports whether anything
// was, so the caller may rebuild instead.
//
// The loaded entries count as persisted. When damaged, the next Flush cuts
// the file back to the kept entries, even if nothing new was added.
//
// A missing file is an error satisfying errors.Is(err, fs.ErrNotExist).
func Load(path string, every uint64, valid func(Entry) bool) (x *Index, damaged bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	n := len(b) / EntrySize
	damaged = len(b)%EntrySize != 0
	x = New(every)
	x.e = make([]Entry, 0, n)
	for i := range n {
		e := decodeEntry(b[i*EntrySize:])
		if k := len(x.e); (k > 0 && !follows(x.e[k-1], e)) || (valid != nil && !valid(e)) {
			damaged = true
			break
		}
		x.e = append(x.e, e)
	}
	x.persisted = len(x.e)
	x.stale = damaged
	return x, damaged, nil
}
