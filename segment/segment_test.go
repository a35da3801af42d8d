package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/durastream/durastream/vfs"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// newFile returns a mapped file (or a heap file) of capacity bytes.
func newFile(t *testing.T, heap bool, capacity int64) *File {
	t.Helper()
	if heap {
		return NewHeap(capacity)
	}
	f, err := Create(nil, filepath.Join(t.TempDir(), "seg"), capacity)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return f
}

func forKinds(t *testing.T, fn func(t *testing.T, heap bool)) {
	for _, heap := range []bool{false, true} {
		name := "mapped"
		if heap {
			name = "heap"
		}
		t.Run(name, func(t *testing.T) { fn(t, heap) })
	}
}

func TestCreateInvalidCapacity(t *testing.T) {
	for _, c := range []int64{0, -1} {
		if _, err := Create(nil, filepath.Join(t.TempDir(), "x"), c); err == nil {
			t.Errorf("Create capacity %d: want error", c)
		}
	}
}

func TestCreatePreallocates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	f, err := Create(nil, path, 10000)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 10000 {
		t.Fatalf("file size %d, want 10000", st.Size())
	}
	if f.Cap() != 10000 {
		t.Fatalf("Cap %d", f.Cap())
	}
	if b := f.Bytes(0, 10000); !bytes.Equal(b, make([]byte, 10000)) {
		t.Fatal("new file is not zeroed")
	}
}

func TestWriteAtBytesPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	f, err := Create(nil, path, 8192)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteAt([]byte("world"), 4096); err != nil {
		t.Fatal(err)
	}
	if got := string(f.Bytes(0, 5)); got != "hello" {
		t.Fatalf("Bytes %q", got)
	}
	if err := f.SyncRange(4096, 5); err != nil {
		t.Fatalf("SyncRange: %v", err)
	}
	if err := f.SyncRange(3, 10); err != nil { // unaligned start
		t.Fatalf("SyncRange unaligned: %v", err)
	}
	if err := f.SyncRange(0, 0); err != nil {
		t.Fatalf("SyncRange empty: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil { // idempotent
		t.Fatal(err)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw[:5]) != "hello" || string(raw[4096:4101]) != "world" {
		t.Fatal("written bytes not in the file")
	}

	// Open maps the file at its size; Create on an existing file keeps it.
	g, err := Open(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if g.Cap() != 8192 || string(g.Bytes(4096, 5)) != "world" {
		t.Fatalf("Open: cap %d, %q", g.Cap(), g.Bytes(4096, 5))
	}
	g.Close()
	h, err := Create(nil, path, 16384)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Cap() != 16384 || string(h.Bytes(0, 5)) != "hello" || string(h.Bytes(4096, 5)) != "world" {
		t.Fatal("Create on an existing file lost its contents")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(nil, filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open missing: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(nil, empty); err == nil {
		t.Error("Open empty file: want error")
	}
}

func TestWriteAtFull(t *testing.T) {
	forKinds(t, func(t *testing.T, heap bool) {
		f := newFile(t, heap, 100)
		defer f.Close()
		for _, tc := range []struct {
			off  int64
			n    int
			want error
		}{
			{0, 100, nil},
			{99, 1, nil},
			{100, 0, nil},
			{100, 1, ErrFull},
			{99, 2, ErrFull},
			{0, 101, ErrFull},
			{-1, 1, ErrFull},
		} {
			if err := f.WriteAt(make([]byte, tc.n), tc.off); !errors.Is(err, tc.want) {
				t.Errorf("WriteAt(%d bytes, %d) = %v, want %v", tc.n, tc.off, err, tc.want)
			}
		}
		if _, err := writeRecord(f, 90, make([]byte, 3), nil); !errors.Is(err, ErrFull) {
			t.Errorf("writeRecord past capacity: %v", err)
		}
		if _, err := writeRecord(f, -1, []byte{1}, nil); !errors.Is(err, ErrFull) {
			t.Errorf("writeRecord at -1: %v", err)
		}
		if _, err := writeRecord(f, 0, nil, nil); err == nil {
			t.Error("writeRecord with empty payload: want error")
		}
	})
}

func TestHeapFile(t *testing.T) {
	f := NewHeap(64)
	if f.Cap() != 64 {
		t.Fatalf("Cap %d", f.Cap())
	}
	if err := f.WriteAt([]byte("abc"), 10); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncRange(0, 64); err != nil {
		t.Fatal(err)
	}
	f.Advise(0, 64) // no-op, must not panic
	v, ok := f.View(10, 3)
	if !ok || string(v.B) != "abc" {
		t.Fatalf("View: %v %q", ok, v.B)
	}
	f.Close()
	if string(v.B) != "abc" {
		t.Fatal("heap view changed after Close")
	}
	v.Release()
	if _, ok := f.View(0, 1); ok {
		t.Fatal("View after the last release must fail")
	}
}

func TestViewPinsAfterClose(t *testing.T) {
	forKinds(t, func(t *testing.T, heap bool) {
		f := newFile(t, heap, 8192)
		if err := f.WriteAt([]byte("pinned data"), 100); err != nil {
			t.Fatal(err)
		}
		if f.Pinned() {
			t.Fatal("Pinned with no views")
		}
		v1, ok := f.View(100, 11)
		if !ok {
			t.Fatal("View failed")
		}
		v2, ok := f.View(100, 6)
		if !ok {
			t.Fatal("View failed")
		}
		if !f.Pinned() {
			t.Fatal("not Pinned with views")
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		// The owner is gone but the views still pin the mapping: reading
		// them must work (an unmapped read would be a SIGSEGV).
		if string(v1.B) != "pinned data" || string(v2.B) != "pinned" {
			t.Fatalf("views after Close: %q %q", v1.B, v2.B)
		}
		// A new View can still be taken while a view pins the file.
		v3, ok := f.View(0, 1)
		if !ok {
			t.Fatal("View while pinned after Close failed")
		}
		v3.Release()
		v1.Release()
		if string(v2.B) != "pinned" {
			t.Fatalf("v2 after v1 released: %q", v2.B)
		}
		v2.Release()
		// Unmapped now: no more views or references.
		if _, ok := f.View(0, 1); ok {
			t.Fatal("View after the last release must fail")
		}
		if f.Acquire() {
			t.Fatal("Acquire after the last release must fail")
		}
		if f.Pinned() {
			t.Fatal("Pinned after the last release")
		}
		View{}.Release() // zero View: no-op
	})
}

func TestAcquireRelease(t *testing.T) {
	f := newFile(t, false, 4096)
	if !f.Acquire() {
		t.Fatal("Acquire failed")
	}
	f.Close()
	f.Close() // idempotent: must not drop the acquired reference
	if err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if string(f.Bytes(0, 1)) != "x" {
		t.Fatal("mapping gone while a reference is held")
	}
	f.Release()
	if f.Acquire() {
		t.Fatal("Acquire after the last release must fail")
	}
}

// msyncFS records msync lengths and returns err.
type msyncFS struct {
	vfs.FS
	got []int
	err error
}

func (m *msyncFS) Msync(_ string, b []byte) error {
	m.got = append(m.got, len(b))
	return m.err
}

func TestSyncRangeError(t *testing.T) {
	boom := errors.New("boom")
	fs := &msyncFS{FS: vfs.OS, err: boom}
	f, err := Create(fs, filepath.Join(t.TempDir(), "seg"), 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.SyncRange(4100, 10); !errors.Is(err, boom) {
		t.Fatalf("SyncRange: %v", err)
	}
	// The range is widened down to the page start.
	if want := int(4100-(4100&^(pageSize-1))) + 10; len(fs.got) != 1 || fs.got[0] != want {
		t.Fatalf("msync lengths %v, want [%d]", fs.got, want)
	}
	if err := f.Sync(); !errors.Is(err, boom) {
		t.Fatalf("Sync: %v", err)
	}
	// Past the end is clamped to the capacity.
	fs.got, fs.err = nil, nil
	if err := f.SyncRange(8000, 1000); err != nil {
		t.Fatal(err)
	}
	if len(fs.got) != 1 || int64(fs.got[0]) != 8192-(8000&^(pageSize-1)) {
		t.Fatalf("clamped msync lengths %v", fs.got)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	forKinds(t, func(t *testing.T, heap bool) {
		f := newFile(t, heap, 1<<16)
		defer f.Close()
		type rec struct{ a, b []byte }
		recs := []rec{
			{[]byte("a"), nil},
			{nil, []byte("only b")},
			{[]byte("head|"), []byte("tail")},
			{bytes.Repeat([]byte{0}, 100), nil}, // zero payload bytes are fine
			{bytes.Repeat([]byte("x"), 5000), bytes.Repeat([]byte("y"), 3000)},
		}
		var off int64
		var ends []int64
		for _, r := range recs {
			end, err := writeRecord(f, off, r.a, r.b)
			if err != nil {
				t.Fatal(err)
			}
			if end != off+RecordSize(len(r.a)+len(r.b)) {
				t.Fatalf("end %d", end)
			}
			ends = append(ends, end)
			off = end
		}
		buf := f.Bytes(0, f.Cap())
		off = 0
		for i, r := range recs {
			p, next, err := ReadRecord(buf, off)
			if err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
			want := append(append([]byte{}, r.a...), r.b...)
			if !bytes.Equal(p, want) {
				t.Fatalf("record %d payload differs", i)
			}
			if next != ends[i] {
				t.Fatalf("record %d next %d, want %d", i, next, ends[i])
			}
			if cap(p) != len(p) {
				t.Fatalf("record %d: payload capacity leaks past the record", i)
			}
			off = next
		}
		if _, next, err := ReadRecord(buf, off); err != io.EOF || next != off {
			t.Fatalf("after the last record: %v, next %d", err, next)
		}
	})
}

func TestChecksumSplitIndependent(t *testing.T) {
	p := []byte("the quick brown fox")
	want := Checksum(p, nil)
	for i := 0; i <= len(p); i++ {
		if got := Checksum(p[:i], p[i:]); got != want {
			t.Fatalf("split at %d: %x, want %x", i, got, want)
		}
	}
}

func TestReadRecordErrors(t *testing.T) {
	f := NewHeap(256)
	end, err := writeRecord(f, 0, []byte("hello, record"), nil)
	if err != nil {
		t.Fatal(err)
	}
	good := append([]byte(nil), f.Bytes(0, 256)...)
	mutate := func(fn func(b []byte) []byte) []byte {
		return fn(append([]byte(nil), good...))
	}
	tests := []struct {
		name string
		buf  []byte
		off  int64
		want error
	}{
		{"zero header", make([]byte, 64), 0, io.EOF},
		{"zero header after record", good, end, io.EOF},
		{"short buffer for header", good[:5], 0, io.EOF},
		{"offset past buffer", good, 1000, io.EOF},
		{"negative offset", good, -1, io.EOF},
		{"flipped payload byte", mutate(func(b []byte) []byte { b[HeaderSize+3] ^= 0x01; return b }), 0, ErrCorrupt},
		{"flipped last payload byte", mutate(func(b []byte) []byte { b[end-1] ^= 0x80; return b }), 0, ErrCorrupt},
		{"flipped crc byte", mutate(func(b []byte) []byte { b[5] ^= 0x10; return b }), 0, ErrCorrupt},
		{"flipped length byte (shorter)", mutate(func(b []byte) []byte { b[0] ^= 0x01; return b }), 0, ErrCorrupt},
		{"flipped length byte (longer)", mutate(func(b []byte) []byte { b[0] ^= 0x40; return b }), 0, ErrCorrupt},
		{"length past buffer", mutate(func(b []byte) []byte { b[2] = 0x01; return b }), 0, ErrCorrupt},
		{"truncated buffer", good[:end-1], 0, ErrCorrupt},
		{"truncated to header", good[:HeaderSize], 0, ErrCorrupt},
		{"zero length, nonzero crc", mutate(func(b []byte) []byte { clear(b[:4]); return b }), 0, ErrCorrupt},
		{"length above MaxPayload", mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b, MaxPayload+1)
			return b
		}), 0, ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, next, err := ReadRecord(tc.buf, tc.off)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if p != nil || next != tc.off {
				t.Fatalf("on error: payload %q, next %d (want nil, %d)", p, next, tc.off)
			}
		})
	}
	// Every single-bit flip anywhere in the record is caught.
	for i := 0; i < int(end); i++ {
		for bit := 0; bit < 8; bit++ {
			b := mutate(func(b []byte) []byte { b[i] ^= 1 << bit; return b })
			if _, _, err := ReadRecord(b, 0); err == nil {
				t.Fatalf("flip of bit %d of byte %d not detected", bit, i)
			}
		}
	}
}

func BenchmarkWriteRecord(b *testing.B) {
	for _, size := range []int{100, 4 << 10} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			f, err := Create(nil, filepath.Join(b.TempDir(), "seg"), 64<<20)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			hdr := []byte{3, 1, 2, 3, 4, 5, 6, 7, 8}
			body := bytes.Repeat([]byte("d"), size-len(hdr))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			var off int64
			for i := 0; i < b.N; i++ {
				end, err := writeRecord(f, off, hdr, body)
				if errors.Is(err, ErrFull) {
					off = 0
					end, err = writeRecord(f, off, hdr, body)
				}
				if err != nil {
					b.Fatal(err)
				}
				off = end
			}
		})
	}
}

func BenchmarkReadRecord(b *testing.B) {
	f := NewHeap(1 << 20)
	end, err := writeRecord(f, 0, bytes.Repeat([]byte("r"), 100), nil)
	if err != nil {
		b.Fatal(err)
	}
	buf := f.Bytes(0, end)
	b.SetBytes(100)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := ReadRecord(buf, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// datasyncFS counts fdatasync calls and returns err.
type datasyncFS struct {
	vfs.FS
	n   int
	err error
}

func (d *datasyncFS) Fdatasync(f *os.File) error {
	d.n++
	if d.err != nil {
		return d.err
	}
	return d.FS.Fdatasync(f)
}

// TestCreateWritten: a file written through its descriptor. Records written
// with pwrite read back through the mapping and after reopening; the file
// is zeros past them (no record follows); growing it keeps what it holds;
// syncs are fdatasync and their errors are returned.
func TestCreateWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal")
	fs := &datasyncFS{FS: vfs.OS}
	f, err := CreateWritten(fs, path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("B"), 100<<10)
	var off int64
	var ends []int64
	for _, p := range [][]byte{[]byte("first"), big, []byte("last")} {
		if off, err = writeRecord(f, off, []byte("h:"), p); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, off)
	}
	if err := f.SyncRange(0, off); err != nil || fs.n != 1 {
		t.Fatalf("SyncRange: %v, %d fdatasyncs", err, fs.n)
	}
	check := func(f *File) {
		t.Helper()
		var pos int64
		for i, want := range [][]byte{[]byte("first"), big, []byte("last")} {
			p, next, err := ReadRecord(f.Bytes(0, f.Cap()), pos)
			if err != nil || !bytes.Equal(p, append([]byte("h:"), want...)) || next != ends[i] {
				t.Fatalf("record %d: %v, %d bytes, next %d", i, err, len(p), next)
			}
			pos = next
		}
		if _, _, err := ReadRecord(f.Bytes(0, f.Cap()), pos); err != io.EOF {
			t.Fatalf("after the last record: %v, want io.EOF", err)
		}
	}
	check(f)
	f.Close()

	g, err := CreateWritten(fs, path, 2<<20) // grow: contents kept, the rest zeros
	if err != nil {
		t.Fatal(err)
	}
	if g.Cap() != 2<<20 {
		t.Fatalf("cap %d", g.Cap())
	}
	check(g)
	if !bytes.Equal(g.Bytes(1<<20, 1<<20), make([]byte, 1<<20)) {
		t.Fatal("the grown part is not zeros")
	}
	g.Close()

	h, err := OpenWritten(fs, path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	check(h)
	if err := h.WriteAt([]byte("x"), h.Cap()); !errors.Is(err, ErrFull) {
		t.Fatalf("write past capacity: %v", err)
	}
	boom := errors.New("boom")
	fs.err = boom
	if err := h.Sync(); !errors.Is(err, boom) {
		t.Fatalf("Sync: %v", err)
	}
}

// TestCreateUnmapped: a file created for writing only. Writes go through its
// descriptor and syncs are fdatasync; the bytes read back once the file is
// mapped with Open, beside zeros up to the reserved capacity; the last
// reference closes the descriptor.
func TestCreateUnmapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	fs := &datasyncFS{FS: vfs.OS}
	f, err := CreateUnmapped(fs, path, 8192)
	if err != nil {
		t.Fatal(err)
	}
	if f.Cap() != 8192 {
		t.Fatalf("Cap %d", f.Cap())
	}
	if err := f.WriteAt([]byte("first"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteLarge(bytes.Repeat([]byte("L"), 3000), 5, true); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteAt([]byte("x"), 8192); !errors.Is(err, ErrFull) {
		t.Fatalf("write past capacity: %v", err)
	}
	if err := f.SyncRange(0, 3005); err != nil || fs.n != 1 {
		t.Fatalf("SyncRange: %v, %d fdatasyncs", err, fs.n)
	}
	fd := f.fd
	f.Release()
	if err := fd.Close(); err == nil {
		t.Fatal("descriptor still open after the last reference")
	}
	m, err := Open(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := append([]byte("first"), bytes.Repeat([]byte("L"), 3000)...)
	want = append(want, make([]byte, 8192-len(want))...)
	if m.Cap() != 8192 || !bytes.Equal(m.Bytes(0, 8192), want) {
		t.Fatalf("mapped back: cap %d, bytes differ", m.Cap())
	}
}

// writeRecord writes the record whose payload is a followed by b at off, as
// the commit log frames it, and returns the offset just past it.
func writeRecord(f *File, off int64, a, b []byte) (int64, error) {
	n := len(a) + len(b)
	if n == 0 || n > MaxPayload {
		return 0, errors.New("record payload size out of range")
	}
	end := off + RecordSize(n)
	if off < 0 || end > f.Cap() {
		return 0, ErrFull
	}
	return end, f.WriteAt(AppendRecord(nil, a, b), off)
}

// directFS counts writes through descriptors opened with O_DIRECT.
type directFS struct {
	vfs.FS
	direct, bytes int
}

func (d *directFS) WriteAt(f *os.File, b []byte, off int64) (int, error) {
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err == nil && fl&unix.O_DIRECT != 0 {
		d.direct++
		d.bytes += len(b)
	}
	return d.FS.WriteAt(f, b, off)
}

// WriteLarge stores exactly p at off whatever the alignment of the offset,
// the length and p's memory, leaves the bytes around it alone, and (direct)
// writes the whole blocks inside with O_DIRECT.
func TestWriteLarge(t *testing.T) {
	const capacity = 4 << 20
	src := make([]byte, 3<<20+directBlock)
	for i := range src {
		src[i] = byte(i*7 + i>>12)
	}
	cases := []struct{ off, n, shift int }{
		{0, 1 << 20, 0},       // aligned everywhere: no copy
		{0, 1 << 20, 1},       // unaligned memory: through the aligned buffers
		{4095, 64<<10 + 1, 0}, // one byte before a block, then a partial block
		{5000, 3<<20 - 7, 3},  // several chunks, both ends partial
		{100, 64 << 10, 0},    // not a whole directMin of blocks: buffered
		{capacity - 1<<20, 1 << 20, 0},
	}
	// Whether the test's file system takes O_DIRECT at all (tmpfs before
	// Linux 6.6 does not): where it does, every write that can go direct must.
	probe := filepath.Join(t.TempDir(), "probe")
	directOK := false
	if pf, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644); err == nil {
		directOK = true
		pf.Close()
	}
	for _, mode := range []string{"mapped", "unmapped", "heap"} {
		for _, direct := range []bool{true, false} {
			for _, c := range cases {
				name := fmt.Sprintf("%s/direct=%v/off=%d/n=%d/shift=%d", mode, direct, c.off, c.n, c.shift)
				t.Run(name, func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "seg")
					fs := &directFS{FS: vfs.OS}
					var f *File
					var err error
					switch mode {
					case "mapped":
						f, err = Create(fs, path, capacity)
					case "unmapped":
						f, err = CreateUnmapped(fs, path, capacity)
					default:
						f = NewHeap(capacity)
					}
					if err != nil {
						t.Fatal(err)
					}
					// Bytes already there, which the partial blocks must keep.
					before := bytes.Repeat([]byte{0xAB}, capacity)
					if mode == "heap" {
						copy(f.buf, before)
					} else if _, err := fs.FS.WriteAt(writable(t, path), before, 0); err != nil {
						t.Fatal(err)
					}
					p := src[c.shift : c.shift+c.n]
					if err := f.WriteLarge(p, int64(c.off), direct); err != nil {
						t.Fatal(err)
					}
					if err := f.Sync(); err != nil {
						t.Fatal(err)
					}
					want := append([]byte(nil), before...)
					copy(want[c.off:], p)
					var got []byte
					if mode == "heap" {
						got = f.buf
					} else if got, err = os.ReadFile(path); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatal("file content differs from the write")
					}
					wantDirect := direct && mode != "heap" && c.n-(directBlock-c.off%directBlock)%directBlock >= directMin
					switch {
					case wantDirect && f.noDirect.Load() && directOK:
						t.Fatal("fell back to the page cache on a file system that takes O_DIRECT")
					case wantDirect && f.noDirect.Load():
						t.Log("this file system refuses O_DIRECT: written through the page cache")
					case wantDirect && fs.direct == 0:
						t.Fatal("no O_DIRECT write")
					case !wantDirect && fs.direct > 0:
						t.Fatalf("%d O_DIRECT writes", fs.direct)
					case wantDirect && fs.bytes < c.n-2*directBlock:
						t.Fatalf("O_DIRECT wrote %d of %d bytes", fs.bytes, c.n)
					}
					f.Close()
				})
			}
		}
	}
	f := NewHeap(1 << 20)
	if err := f.WriteLarge(make([]byte, 10), 1<<20-5, true); !errors.Is(err, ErrFull) {
		t.Fatalf("write past capacity: %v", err)
	}
}

// writable opens path for writing; the test's cleanup closes it.
func writable(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// rssFileKiB reads RssFile from /proc/self/status (file-backed resident
// pages of this process), or -1 where it is not reported.
func rssFileKiB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

// DropPages takes a mapped view's pages out of the process's resident set
// and keeps their bytes; on heap files (memory mode) it changes nothing.
func TestViewDropPages(t *testing.T) {
	const size = 32 << 20
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "seg")
	f, err := Create(nil, path, size)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	// An unaligned view: only the whole pages inside it go.
	v, ok := f.View(100, size-200)
	if !ok {
		t.Fatal("view")
	}
	before := rssFileKiB(t)
	v.DropPages()
	after := rssFileKiB(t)
	if before >= 0 && before-after < 24<<10 {
		t.Errorf("RssFile %d KiB -> %d KiB: the view's pages stayed resident", before, after)
	}
	if !bytes.Equal(v.B, want[100:size-100]) {
		t.Fatal("bytes changed after DropPages")
	}
	v.Release()
	if !bytes.Equal(f.Bytes(0, size), want) {
		t.Fatal("bytes outside the view changed")
	}

	h := NewHeap(1 << 20)
	if err := h.WriteAt(want[:1<<20], 0); err != nil {
		t.Fatal(err)
	}
	hv, _ := h.View(0, 1<<20)
	hv.DropPages()
	if !bytes.Equal(hv.B, want[:1<<20]) {
		t.Fatal("DropPages zeroed a heap file")
	}
	hv.Release()
}
