package index

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// build returns an index with every == 10 holding exactly es.
func build(t *testing.T, es ...Entry) *Index {
	t.Helper()
	x := New(10)
	for _, e := range es {
		if !x.Add(e) {
			t.Fatalf("Add(%+v) = false", e)
		}
	}
	return x
}

func entries(x *Index) []Entry {
	out := make([]Entry, x.Len())
	for i := range out {
		out[i] = x.At(i)
	}
	return out
}

func TestNewDefault(t *testing.T) {
	if got := New(0).every; got != DefaultEvery {
		t.Fatalf("New(0).every = %d, want %d", got, DefaultEvery)
	}
	if got := New(7).every; got != 7 {
		t.Fatalf("New(7).every = %d, want 7", got)
	}
}

func TestAdd(t *testing.T) {
	type add struct {
		e    Entry
		kept bool
	}
	tests := []struct {
		name string
		adds []add
		want []Entry
	}{
		{
			name: "first entry always kept",
			adds: []add{{Entry{Off: 5, Pos: 5}, true}},
			want: []Entry{{Off: 5, Pos: 5}},
		},
		{
			name: "spacing",
			adds: []add{
				{Entry{Off: 0}, true},
				{Entry{Off: 3, Pos: 3}, false},
				{Entry{Off: 9, Pos: 9}, false},
				{Entry{Off: 10, Pos: 10}, true}, // exactly every past the last kept
				{Entry{Off: 15, Pos: 15}, false},
				{Entry{Off: 21, Pos: 21}, true},
			},
			want: []Entry{{Off: 0}, {Off: 10, Pos: 10}, {Off: 21, Pos: 21}},
		},
		{
			name: "segment start kept regardless of spacing",
			adds: []add{
				{Entry{Off: 0}, true},
				{Entry{Off: 4, Pos: 4}, false},
				{Entry{Off: 6, Seg: 1}, true},
				{Entry{Off: 8, Seg: 1, Pos: 2}, false},
				{Entry{Off: 16, Seg: 1, Pos: 10}, true},
			},
			want: []Entry{{Off: 0}, {Off: 6, Seg: 1}, {Off: 16, Seg: 1, Pos: 10}},
		},
		{
			name: "non-increasing Off ignored",
			adds: []add{
				{Entry{Off: 0}, true},
				{Entry{Off: 20, Pos: 20}, true},
				{Entry{Off: 20, Pos: 20}, false},
				{Entry{Off: 19, Pos: 19}, false},
				{Entry{Off: 19, Seg: 1}, false}, // segment start does not excuse going back
				{Entry{Off: 5, Seg: 1}, false},
			},
			want: []Entry{{Off: 0}, {Off: 20, Pos: 20}},
		},
		{
			name: "earlier segment ignored",
			adds: []add{
				{Entry{Off: 0, Seg: 2}, true},
				{Entry{Off: 50, Seg: 1, Pos: 50}, false},
				{Entry{Off: 60, Seg: 1}, false},
			},
			want: []Entry{{Off: 0, Seg: 2}},
		},
		{
			name: "segment start replaces end of previous segment",
			adds: []add{
				{Entry{Off: 0}, true},
				{Entry{Off: 30, Pos: 30}, true}, // end of segment 0's data
				{Entry{Off: 30, Seg: 1}, true},  // segment 1 starts there
				{Entry{Off: 30, Seg: 1}, false}, // duplicate
				{Entry{Off: 30, Seg: 1, Pos: 1}, false},
			},
			want: []Entry{{Off: 0}, {Off: 30, Seg: 1}},
		},
		{
			name: "empty segment start replaced by next segment start",
			adds: []add{
				{Entry{Off: 0}, true},
				{Entry{Off: 0, Seg: 1}, true},
			},
			want: []Entry{{Off: 0, Seg: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := New(10)
			for _, a := range tt.adds {
				if got := x.Add(a.e); got != a.kept {
					t.Errorf("Add(%+v) = %v, want %v", a.e, got, a.kept)
				}
			}
			if got := entries(x); !slices.Equal(got, tt.want) {
				t.Errorf("entries = %+v, want %+v", got, tt.want)
			}
			last, ok := x.Last()
			if !ok || last != tt.want[len(tt.want)-1] {
				t.Errorf("Last() = %+v, %v, want %+v", last, ok, tt.want[len(tt.want)-1])
			}
		})
	}
}

func TestLastEmpty(t *testing.T) {
	x := New(0)
	if e, ok := x.Last(); ok {
		t.Fatalf("Last() on empty = %+v, true", e)
	}
	if x.Len() != 0 {
		t.Fatalf("Len() = %d", x.Len())
	}
}

// lookupEntries has entries at 10, 20 (segment 0) and 30, 45 (segment 1).
var lookupEntries = []Entry{
	{Off: 10, Seg: 0, Pos: 0},
	{Off: 20, Seg: 0, Pos: 10},
	{Off: 30, Seg: 1, Pos: 0},
	{Off: 45, Seg: 1, Pos: 15},
}

func TestFloorCeil(t *testing.T) {
	none := Entry{}
	tests := []struct {
		off     uint64
		floor   Entry
		floorOK bool
		ceil    Entry
		ceilOK  bool
	}{
		{off: 0, floor: none, floorOK: false, ceil: lookupEntries[0], ceilOK: true},
		{off: 9, floor: none, floorOK: false, ceil: lookupEntries[0], ceilOK: true},
		{off: 10, floor: lookupEntries[0], floorOK: true, ceil: lookupEntries[0], ceilOK: true},
		{off: 11, floor: lookupEntries[0], floorOK: true, ceil: lookupEntries[1], ceilOK: true},
		{off: 20, floor: lookupEntries[1], floorOK: true, ceil: lookupEntries[1], ceilOK: true},
		{off: 29, floor: lookupEntries[1], floorOK: true, ceil: lookupEntries[2], ceilOK: true},
		{off: 30, floor: lookupEntries[2], floorOK: true, ceil: lookupEntries[2], ceilOK: true},
		{off: 44, floor: lookupEntries[2], floorOK: true, ceil: lookupEntries[3], ceilOK: true},
		{off: 45, floor: lookupEntries[3], floorOK: true, ceil: lookupEntries[3], ceilOK: true},
		{off: 46, floor: lookupEntries[3], floorOK: true, ceil: none, ceilOK: false},
		{off: ^uint64(0), floor: lookupEntries[3], floorOK: true, ceil: none, ceilOK: false},
	}
	x := build(t, lookupEntries...)
	empty := New(0)
	for _, tt := range tests {
		if got, ok := x.Floor(tt.off); got != tt.floor || ok != tt.floorOK {
			t.Errorf("Floor(%d) = %+v, %v, want %+v, %v", tt.off, got, ok, tt.floor, tt.floorOK)
		}
		if got, ok := x.Ceil(tt.off); got != tt.ceil || ok != tt.ceilOK {
			t.Errorf("Ceil(%d) = %+v, %v, want %+v, %v", tt.off, got, ok, tt.ceil, tt.ceilOK)
		}
		if got, ok := empty.Floor(tt.off); ok {
			t.Errorf("empty Floor(%d) = %+v, true", tt.off, got)
		}
		if got, ok := empty.Ceil(tt.off); ok {
			t.Errorf("empty Ceil(%d) = %+v, true", tt.off, got)
		}
	}
}

func TestBelow(t *testing.T) {
	tests := []struct {
		after, limit uint64
		want         Entry
		ok           bool
	}{
		{after: 0, limit: 5, ok: false},                                 // before all entries
		{after: 0, limit: 10, want: lookupEntries[0], ok: true},         // limit at an entry
		{after: 0, limit: 100, want: lookupEntries[3], ok: true},        // limit past all entries
		{after: 10, limit: 19, ok: false},                               // nothing in (10, 19]
		{after: 10, limit: 20, want: lookupEntries[1], ok: true},        // after excluded, limit included
		{after: 10, limit: 44, want: lookupEntries[2], ok: true},        // largest in range
		{after: 9, limit: 10, want: lookupEntries[0], ok: true},         // one-byte range
		{after: 20, limit: 29, ok: false},                               // between entries
		{after: 45, limit: 1000, ok: false},                             // past all entries
		{after: 30, limit: 30, ok: false},                               // empty range
		{after: 40, limit: 20, ok: false},                               // inverted range
		{after: 0, limit: ^uint64(0), want: lookupEntries[3], ok: true}, // max limit
	}
	x := build(t, lookupEntries...)
	for _, tt := range tests {
		if got, ok := x.Below(tt.after, tt.limit); got != tt.want || ok != tt.ok {
			t.Errorf("Below(%d, %d) = %+v, %v, want %+v, %v", tt.after, tt.limit, got, ok, tt.want, tt.ok)
		}
		if got, ok := New(0).Below(tt.after, tt.limit); ok {
			t.Errorf("empty Below(%d, %d) = %+v, true", tt.after, tt.limit, got)
		}
	}
}

func TestTruncateAfter(t *testing.T) {
	tests := []struct {
		off  uint64
		want int // entries kept
	}{
		{off: 0, want: 0},
		{off: 9, want: 0},
		{off: 10, want: 1},
		{off: 25, want: 2},
		{off: 30, want: 3},
		{off: 45, want: 4},
		{off: 1000, want: 4},
	}
	for _, tt := range tests {
		x := build(t, lookupEntries...)
		x.TruncateAfter(tt.off)
		if got := entries(x); !slices.Equal(got, lookupEntries[:tt.want]) {
			t.Errorf("TruncateAfter(%d): entries = %+v, want %+v", tt.off, got, lookupEntries[:tt.want])
		}
	}
	// Adding continues from the new last entry.
	x := build(t, lookupEntries...)
	x.TruncateAfter(25)
	if !x.Add(Entry{Off: 26, Seg: 1}) {
		t.Fatal("Add after TruncateAfter rejected a segment start past the new last entry")
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func mustLoad(t *testing.T, path string, valid func(Entry) bool) (*Index, bool) {
	t.Helper()
	x, damaged, err := Load(path, 10, valid)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return x, damaged
}

func TestFlushLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idx")
	x := build(t, lookupEntries...)
	if err := x.Flush(nil, path); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != int64(len(lookupEntries))*EntrySize {
		t.Fatalf("file size = %d", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644&^umask(t) {
		t.Errorf("file mode = %v", fi.Mode().Perm())
	}
	y, damaged := mustLoad(t, path, nil)
	if damaged {
		t.Fatal("damaged = true")
	}
	if got := entries(y); !slices.Equal(got, lookupEntries) {
		t.Fatalf("loaded %+v, want %+v", got, lookupEntries)
	}
	if y.every != 10 {
		t.Errorf("every = %d", y.every)
	}
	// Loaded entries count as persisted: no I/O, even if the file is gone.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := y.Flush(nil, path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Flush with nothing new touched the file: %v", err)
	}
}

// umask returns the process umask bits that apply to new files.
func umask(t *testing.T) fs.FileMode {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(p, nil, 0o777); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ fi.Mode().Perm()
}

func TestFlushIncremental(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idx")
	x := New(10)
	steps := [][]Entry{
		{{Off: 0}},
		{{Off: 10, Pos: 10}, {Off: 20, Pos: 20}},
		{},
		{{Off: 25, Seg: 1}, {Off: 40, Seg: 1, Pos: 15}, {Off: 50, Seg: 1, Pos: 25}},
	}
	var all []Entry
	for i, step := range steps {
		before := int64(0)
		if i > 0 {
			before = fileSize(t, path)
		}
		for _, e := range step {
			if !x.Add(e) {
				t.Fatalf("Add(%+v) = false", e)
			}
		}
		all = append(all, step...)
		if err := x.Flush(nil, path); err != nil {
			t.Fatal(err)
		}
		if got, want := fileSize(t, path), before+int64(len(step))*EntrySize; got != want {
			t.Fatalf("step %d: file size = %d, want %d", i, got, want)
		}
		y, damaged := mustLoad(t, path, nil)
		if got := entries(y); damaged || !slices.Equal(got, all) {
			t.Fatalf("step %d: loaded %+v (damaged %v), want %+v", i, got, damaged, all)
		}
	}
}

func TestFlushAfterTruncateRewrites(t *testing.T) {
	tests := []struct {
		name  string
		trunc uint64
		add   []Entry
	}{
		{name: "truncate only", trunc: 25},
		{name: "truncate all", trunc: 5},
		{name: "truncate then add", trunc: 25, add: []Entry{{Off: 26, Seg: 1}, {Off: 40, Seg: 1, Pos: 14}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "idx")
			x := build(t, lookupEntries...)
			if err := x.Flush(nil, path); err != nil {
				t.Fatal(err)
			}
			x.TruncateAfter(tt.trunc)
			for _, e := range tt.add {
				if !x.Add(e) {
					t.Fatalf("Add(%+v) = false", e)
				}
			}
			if err := x.Flush(nil, path); err != nil {
				t.Fatal(err)
			}
			want := entries(x)
			if got := fileSize(t, path); got != int64(len(want))*EntrySize {
				t.Fatalf("file size = %d, want %d", got, len(want)*EntrySize)
			}
			y, damaged := mustLoad(t, path, nil)
			if got := entries(y); damaged || !slices.Equal(got, want) {
				t.Fatalf("loaded %+v (damaged %v), want %+v", got, damaged, want)
			}
		})
	}
}

func TestFlushAfterReplaceRewrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idx")
	x := build(t, Entry{Off: 0}, Entry{Off: 30, Pos: 30})
	if err := x.Flush(nil, path); err != nil {
		t.Fatal(err)
	}
	if !x.Add(Entry{Off: 30, Seg: 1}) {
		t.Fatal("segment start did not replace end of previous segment")
	}
	if err := x.Flush(nil, path); err != nil {
		t.Fatal(err)
	}
	y, damaged := mustLoad(t, path, nil)
	want := []Entry{{Off: 0}, {Off: 30, Seg: 1}}
	if got := entries(y); damaged || !slices.Equal(got, want) {
		t.Fatalf("loaded %+v (damaged %v), want %+v", got, damaged, want)
	}
}

// A rebuilt index replaces the old file rather than appending to it.
func TestFlushRebuiltReplacesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idx")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xff}, 3*EntrySize+5), 0o644); err != nil {
		t.Fatal(err)
	}
	x := Rebuild(10, []Segment{{Base: 0, Data: []byte("abc")}, {Base: 3, Data: []byte("de")}}, nil)
	if err := x.Flush(nil, path); err != nil {
		t.Fatal(err)
	}
	y, damaged := mustLoad(t, path, nil)
	want := []Entry{{Off: 0}, {Off: 3, Seg: 1}}
	if got := entries(y); damaged || !slices.Equal(got, want) {
		t.Fatalf("loaded %+v (damaged %v), want %+v", got, damaged, want)
	}
}

func encode(es ...Entry) []byte {
	var b []byte
	for _, e := range es {
		b = appendEntry(b, e)
	}
	return b
}

func TestLoadDamaged(t *testing.T) {
	good := []Entry{{Off: 0}, {Off: 10, Pos: 10}, {Off: 25, Seg: 1}}
	tests := []struct {
		name    string
		data    []byte
		valid   func(Entry) bool
		want    []Entry
		damaged bool
	}{
		{name: "empty file", data: nil, want: nil},
		{name: "intact", data: encode(good...), want: good},
		{name: "torn trailing entry", data: append(encode(good...), 1, 2, 3, 4, 5), want: good, damaged: true},
		{name: "only a torn entry", data: []byte{1, 2, 3}, want: nil, damaged: true},
		{
			name:    "equal Off in the middle",
			data:    encode(good[0], good[1], Entry{Off: 10, Pos: 11}, good[2]),
			want:    good[:2],
			damaged: true,
		},
		{
			name:    "decreasing Off in the middle",
			data:    encode(good[0], good[1], Entry{Off: 5, Pos: 5}, good[2]),
			want:    good[:2],
			damaged: true,
		},
		{
			name:    "decreasing Seg",
			data:    encode(good[0], good[2], Entry{Off: 40, Seg: 0, Pos: 40}),
			want:    []Entry{good[0], good[2]},
			damaged: true,
		},
		{
			name:    "valid rejects an entry",
			data:    encode(good...),
			valid:   func(e Entry) bool { return e.Seg < 1 },
			want:    good[:2],
			damaged: true,
		},
		{
			name:    "valid rejects the first entry",
			data:    encode(good...),
			valid:   func(Entry) bool { return false },
			want:    nil,
			damaged: true,
		},
		{
			name:  "valid accepts all",
			data:  encode(good...),
			valid: func(Entry) bool { return true },
			want:  good,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "idx")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			x, damaged := mustLoad(t, path, tt.valid)
			if damaged != tt.damaged {
				t.Errorf("damaged = %v, want %v", damaged, tt.damaged)
			}
			if got := entries(x); !slices.Equal(got, tt.want) {
				t.Fatalf("loaded %+v, want %+v", got, tt.want)
			}
			// The next Flush leaves exactly the kept entries in the file,
			// and does no I/O when the file was intact.
			sizeBefore := fileSize(t, path)
			if err := x.Flush(nil, path); err != nil {
				t.Fatal(err)
			}
			if !tt.damaged {
				if got := fileSize(t, path); got != sizeBefore {
					t.Fatalf("Flush of an intact load changed the file size to %d", got)
				}
				return
			}
			if got := fileSize(t, path); got != int64(len(tt.want))*EntrySize {
				t.Fatalf("file size after Flush = %d, want %d", got, len(tt.want)*EntrySize)
			}
			y, damaged := mustLoad(t, path, tt.valid)
			if got := entries(y); damaged || !slices.Equal(got, tt.want) {
				t.Fatalf("reloaded %+v (damaged %v), want %+v", got, damaged, tt.want)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	x, damaged, err := Load(filepath.Join(t.TempDir(), "missing"), 0, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if x != nil || damaged {
		t.Fatalf("Load of a missing file = %v, %v", x, damaged)
	}
}

// splitComma splits messages that end with ','.
func splitComma(data []byte, start int) int {
	i := bytes.IndexByte(data[start:], ',')
	if i < 0 {
		return -1
	}
	return start + i + 1
}

func TestRebuild(t *testing.T) {
	tests := []struct {
		name  string
		every uint64
		segs  []Segment
		split func([]byte, int) int
		want  []Entry
	}{
		{name: "no segments", every: 1, split: splitComma, want: nil},
		{
			name:  "nil split indexes segment starts",
			every: 1,
			segs:  []Segment{{Base: 0, Data: []byte("a,bb,")}, {Base: 5, Data: []byte("c,")}, {Base: 7}},
			want:  []Entry{{Off: 0}, {Off: 5, Seg: 1}, {Off: 7, Seg: 2}},
		},
		{
			name:  "every message",
			every: 1,
			segs:  []Segment{{Base: 100, Data: []byte("a,bb,ccc,")}},
			split: splitComma,
			want: []Entry{
				{Off: 100}, {Off: 102, Pos: 2}, {Off: 105, Pos: 5}, {Off: 109, Pos: 9},
			},
		},
		{
			name:  "spacing",
			every: 4,
			segs:  []Segment{{Base: 0, Data: []byte("a,bb,ccc,d,ee,")}},
			split: splitComma,
			// boundaries at 2, 5, 9, 11, 14; kept when >= 4 past the last kept
			want: []Entry{{Off: 0}, {Off: 5, Pos: 5}, {Off: 9, Pos: 9}, {Off: 14, Pos: 14}},
		},
		{
			name:  "incomplete trailing message",
			every: 1,
			segs:  []Segment{{Base: 0, Data: []byte("a,bb,cc")}},
			split: splitComma,
			want:  []Entry{{Off: 0}, {Off: 2, Pos: 2}, {Off: 5, Pos: 5}},
		},
		{
			name:  "two segments",
			every: 1,
			segs: []Segment{
				{Base: 0, Data: []byte("a,bb,")},
				{Base: 5, Data: []byte("ccc,d,")},
			},
			split: splitComma,
			// Segment 0's end boundary (Off 5) gives way to segment 1's start.
			want: []Entry{
				{Off: 0}, {Off: 2, Pos: 2},
				{Off: 5, Seg: 1}, {Off: 9, Seg: 1, Pos: 4}, {Off: 11, Seg: 1, Pos: 6},
			},
		},
		{
			name:  "two segments with spacing",
			every: 4,
			segs: []Segment{
				{Base: 0, Data: []byte("a,bb,c,")},
				{Base: 7, Data: []byte("d,ee,fff,")},
			},
			split: splitComma,
			// seg 0 boundaries 2, 5, 7; seg 1 boundaries 9, 12, 16
			want: []Entry{{Off: 0}, {Off: 5, Pos: 5}, {Off: 7, Seg: 1}, {Off: 12, Seg: 1, Pos: 5}, {Off: 16, Seg: 1, Pos: 9}},
		},
		{
			name:  "split that makes no progress",
			every: 1,
			segs:  []Segment{{Base: 0, Data: []byte("abc")}},
			split: func([]byte, int) int { return 0 },
			want:  []Entry{{Off: 0}},
		},
		{
			name:  "split past the data",
			every: 1,
			segs:  []Segment{{Base: 0, Data: []byte("abc")}},
			split: func([]byte, int) int { return 10 },
			want:  []Entry{{Off: 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := Rebuild(tt.every, tt.segs, tt.split)
			if got := entries(x); !slices.Equal(got, tt.want) {
				t.Fatalf("entries = %+v, want %+v", got, tt.want)
			}
			// Every offset's Floor is in the segment that holds it.
			for i, s := range tt.segs {
				for p := range len(s.Data) {
					off := s.Base + uint64(p)
					if e, ok := x.Floor(off); !ok || e.Seg != uint32(i) || e.Off-uint64(e.Pos) != s.Base {
						t.Errorf("Floor(%d) = %+v, %v, want an entry of segment %d", off, e, ok, i)
					}
				}
			}
		})
	}
}

func BenchmarkFloor(b *testing.B) {
	const n = 100_000
	x := New(DefaultEvery)
	for i := range n {
		x.Add(Entry{Off: uint64(i) * DefaultEvery, Pos: uint32(i) * DefaultEvery})
	}
	if x.Len() != n {
		b.Fatalf("Len() = %d", x.Len())
	}
	end := uint64(n) * DefaultEvery
	var off uint64
	for b.Loop() {
		// A stride coprime with the range visits offsets all over the index.
		off = (off + 7919*1021) % end
		if _, ok := x.Floor(off); !ok {
			b.Fatal("Floor miss")
		}
	}
}
