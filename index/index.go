// Package index implements the sparse offset index of one stream.
//
// A stream's bytes live in a sequence of segments (ordinals 0, 1, 2, ...),
// each starting at a base stream offset; an append never spans segments. The
// index maps a stream offset to (segment ordinal, byte position in that
// segment) at message boundaries: one entry every few KiB, plus one at the
// start of every segment, so the Floor entry of any offset is in the segment
// that holds the offset. Readers use it to find where to start a read and
// where to cut one at a message boundary.
//
// An Index is not safe for concurrent use; the owner of the stream
// serializes access.
package index

import (
	"cmp"
	"slices"
)

// Entry is a message boundary: stream offset Off is byte Pos of segment Seg.
type Entry struct {
	Off uint64
	Seg uint32
	Pos uint32
}

// EntrySize is the on-disk size of one entry (Off u64 LE, Seg u32 LE, Pos u32 LE).
const EntrySize = 16

// DefaultEvery is the default spacing between entries: 4096 bytes.
const DefaultEvery = 4096

// Index is the sparse offset index of one stream. Use New, Load or Rebuild;
// the zero value is not ready for use.
//
// It is kept small because there is one per stream (up to a million).
type Index struct {
	e     []Entry // kept entries, Off strictly increasing, Seg non-decreasing
	every uint64  // minimum Off gap between kept entries that are not segment starts
	// persisted is how many leading entries of e are in the file as they are.
	persisted int
	// stale means the file may hold records past persisted that are no
	// longer entries, so the next Flush must cut the file even if nothing
	// is new.
	stale bool
}

// New returns an empty index that keeps an entry about every `every` bytes;
// every == 0 means DefaultEvery.
func New(every uint64) *Index {
	if every == 0 {
		every = DefaultEvery
	}
	return &Index{every: every}
}

// follows reports whether e may come right after prev: offsets strictly
// increase, and segments never go backwards (which is what keeps Floor in
// the offset's segment).
func follows(prev, e Entry) bool {
	return e.Off > prev.Off && e.Seg >= prev.Seg
}

// Add records a boundary and reports whether it was kept. Entries must be
// added in strictly increasing Off order: an entry with Off <= Last().Off, or
// with Seg < Last().Seg, is ignored and Add returns false. The entry is kept
// if the index is empty, if it is a segment start (Pos == 0), or if it is at
// least `every` bytes past the last kept entry.
//
// One exception to the ordering rule: a segment start (Pos == 0) at the same
// Off as the last entry but in a later segment replaces it. That last entry is
// then the end of the previous segment's data (or an empty segment's start),
// and the offset belongs to the new segment, where Floor must land.
func (x *Index) Add(e Entry) bool {
	n := len(x.e)
	if n == 0 {
		x.e = append(x.e, e)
		return true
	}
	last := x.e[n-1]
	if e.Pos == 0 && e.Off == last.Off && e.Seg > last.Seg {
		x.e[n-1] = e
		x.unpersist(n - 1)
		return true
	}
	if !follows(last, e) {
		return false
	}
	if e.Pos != 0 && e.Off-last.Off < x.every {
		return false
	}
	x.e = append(x.e, e)
	return true
}

// unpersist records that only the first n entries are known to be in the
// file, so that Flush cuts the file there before writing.
func (x *Index) unpersist(n int) {
	if x.persisted > n {
		x.persisted = n
		x.stale = true
	}
}

// Len returns the number of entries.
func (x *Index) Len() int { return len(x.e) }

// At returns entry i, 0 <= i < Len().
func (x *Index) At(i int) Entry { return x.e[i] }

// Last returns the last entry, or false if the index is empty.
func (x *Index) Last() (Entry, bool) {
	if len(x.e) == 0 {
		return Entry{}, false
	}
	return x.e[len(x.e)-1], true
}

// search returns the position of the first entry with Off >= off and
// whether that entry's Off is exactly off.
func (x *Index) search(off uint64) (int, bool) {
	return slices.BinarySearchFunc(x.e, off, func(e Entry, t uint64) int {
		return cmp.Compare(e.Off, t)
	})
}

// Floor returns the last entry with Off <= off: where a read of off starts.
func (x *Index) Floor(off uint64) (Entry, bool) {
	i, found := x.search(off)
	if found {
		return x.e[i], true
	}
	if i == 0 {
		return Entry{}, false
	}
	return x.e[i-1], true
}

// Ceil returns the first entry with Off >= off.
func (x *Index) Ceil(off uint64) (Entry, bool) {
	i, _ := x.search(off)
	if i == len(x.e) {
		return Entry{}, false
	}
	return x.e[i], true
}

// Below returns the last entry with after < Off <= limit, the largest
// boundary in (after, limit]; a read from after is cut there so that it ends
// at a message boundary and still makes progress.
func (x *Index) Below(after, limit uint64) (Entry, bool) {
	if limit <= after {
		return Entry{}, false
	}
	e, ok := x.Floor(limit)
	if !ok || e.Off <= after {
		return Entry{}, false
	}
	return e, true
}

// TruncateAfter drops the entries with Off > off. Recovery uses it when the
// durable tail of the stream is shorter than the index. If persisted entries
// are dropped, the next Flush rewrites the file to match.
func (x *Index) TruncateAfter(off uint64) {
	i, found := x.search(off)
	if found {
		i++
	}
	if i == len(x.e) {
		return
	}
	x.e = x.e[:i]
	x.unpersist(i)
}

// Segment is one segment's stored bytes, for Rebuild.
type Segment struct {
	Base uint64 // stream offset of Data[0]
	Data []byte
}

// Rebuild reconstructs an index from the stream's data, for when the index
// file is missing or damaged. It adds an entry at each segment's start
// (Seg is the segment's position in segs) and, when split != nil, the message
// boundaries split finds, spaced by `every` as in Add.
//
// split(data, start) returns the position just past the message that begins
// at data[start] (the start of the next message), or -1 if there is no
// complete message there. Each segment is walked from 0 until split returns
// -1 or the end of Data is reached; the boundary at the end of Data is added
// too. With split == nil only segment starts are indexed.
func Rebuild(every uint64, segs []Segment, split func(data []byte, start int) int) *Index {
	x := New(every)
	for i, s := range segs {
		x.Add(Entry{Off: s.Base, Seg: uint32(i), Pos: 0})
		if split == nil {
			continue
		}
		for p := 0; p < len(s.Data); {
			q := split(s.Data, p)
			// q <= p also guards against a split that would loop forever;
			// q past the data would index bytes that are not there.
			if q <= p || q > len(s.Data) {
				break
			}
			p = q
			x.Add(Entry{Off: s.Base + uint64(p), Seg: uint32(i), Pos: uint32(p)})
		}
	}
	return x
}
