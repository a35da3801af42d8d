package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"github.com/durastream/durastream/vfs/errorfs"
	"golang.org/x/sys/unix"
)

// Large appends are written once, to their stream's segment; the commit log
// records their length and checksum.

func largeOpts() *Options {
	return &Options{LargeAppendBytes: 1024, WALSegmentSize: 64 << 10, MinSegmentSize: 4096,
		MaxSegmentSize: 64 << 10, CheckpointInterval: 1 << 40}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestLargeAppendByReference(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, largeOpts())
	ok := acked{}
	for _, p := range []string{"a", "b"} {
		mustCreate(t, e, p, CreateOptions{})
	}
	var data int
	for i := 0; i < 60; i++ {
		p := []string{"a", "b"}[i%2]
		body := pattern([]int{10, 5000, 300, 20000, 1024}[i%5], byte(i))
		if _, err := e.Append(ctx, p, body, AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		ok[p] = append(ok[p], body...)
		data += len(body)
	}
	ok.check(t, e)
	// The commit log did not carry the large bodies.
	if lsn := e.Stats().CommitLSN; lsn > uint64(data)/2 {
		t.Fatalf("commit log holds %d bytes for %d bytes of data", lsn, data)
	}
	img := copyTree(t, dir) // crash image: replay adopts the data by checksum
	e.Close()
	for _, d := range []string{dir, img} {
		e := openTest(t, d, largeOpts())
		ok.check(t, e)
		if _, err := e.Append(ctx, "a", pattern(3000, 9), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
}

// A large append whose bytes never reached the disk was never acknowledged,
// and neither was anything after it on that stream: recovery cuts the stream
// there, and other streams are unaffected.
func TestLargeAppendNotDurableCutsStream(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, largeOpts())
	mustCreate(t, e, "s", CreateOptions{})
	mustCreate(t, e, "t", CreateOptions{})
	a, big, c := []byte("small-a;"), pattern(3000, 1), []byte("small-c;")
	for _, b := range [][]byte{a, big, c} {
		if _, err := e.Append(ctx, "s", b, AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Append(ctx, "t", []byte("other"), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	s, _ := e.streams.Load("s")
	img := copyTree(t, dir)
	e.Close()

	// Damage the large append's bytes in the image's segment file (the
	// first small append went into a slab slot: the large one is in a
	// file of its own).
	segs, _ := filepath.Glob(filepath.Join(img, "streams", filepath.Base(e.store.fanDir(s.id)),
		fmt.Sprintf("%016x.*.seg", s.id)))
	var seg string
	var raw []byte
	i := -1
	for _, p := range segs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i = bytes.Index(b, big); i >= 0 {
			seg, raw = p, b
			break
		}
	}
	if i < 0 {
		t.Fatal("large append not found in a segment file")
	}
	raw[i+100] ^= 0xff
	if err := os.WriteFile(seg, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	e = openTest(t, img, largeOpts())
	defer e.Close()
	if got := readAll(t, e, "s"); got != string(a) {
		t.Fatalf("s after recovery = %q, want only the part before the lost append", got)
	}
	if got := readAll(t, e, "t"); got != "other" {
		t.Fatalf("t after recovery = %q", got)
	}
	if _, err := e.Append(ctx, "s", c, AppendOptions{}); err != nil {
		t.Fatalf("append after the cut: %v", err)
	}
	if got := readAll(t, e, "s"); got != string(a)+string(c) {
		t.Fatalf("s = %q", got)
	}
}

// TestLargeAppendSyncFailure: a failed sync of a large append's bytes stops
// the engine's writes and shows nothing of the append, whether it started a
// new segment (written and synced through a descriptor: fdatasync) or went
// into a mapped one (msync).
func TestLargeAppendSyncFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		op     errorfs.Op
		before string // small appends first: the second maps the segment
		minSeg int64
	}{
		{name: "new segment", op: errorfs.Fdatasync, minSeg: 4096},
		{name: "mapped segment", op: errorfs.Msync, before: "ab", minSeg: 2 * maxSlot}, // a file, not a slab slot
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			fs := errorfs.New(nil)
			o := largeOpts()
			o.FS, o.MinSegmentSize = fs, tc.minSeg
			o.MaxSegmentSize = max(o.MaxSegmentSize, tc.minSeg)
			e := openTest(t, t.TempDir(), o)
			defer e.Close()
			mustCreate(t, e, "s", CreateOptions{})
			for _, b := range tc.before {
				mustAppend(t, e, "s", string(b), AppendOptions{})
			}
			fs.Inject(errorfs.Rule{Op: tc.op, PathContains: "/streams/", Err: syscall.EIO, Times: 1})
			if _, err := e.Append(ctx, "s", pattern(5000, 3), AppendOptions{}); !errors.Is(err, ErrFailed) {
				t.Fatalf("large append whose data sync failed: %v", err)
			}
			if _, err := e.Append(ctx, "s", []byte("x"), AppendOptions{}); !errors.Is(err, ErrFailed) {
				t.Fatalf("append after a failed data sync: %v", err)
			}
			if got := readAll(t, e, "s"); got != tc.before {
				t.Fatalf("unacknowledged data visible: %q", got)
			}
		})
	}
}

// TestReplayAfterDeleteRemovedFiles: a stream that is in the checkpoint,
// then appended to (small and by reference) and deleted, has its files
// removed when the delete commits. Replaying those appends after a crash
// finds the files gone; that must not stop recovery, since the delete
// record later in the log removes the stream anyway. A surviving stream
// whose files are gone is still reported as damage.
func TestReplayAfterDeleteRemovedFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, largeOpts())
	mustCreate(t, e, "gone", CreateOptions{Data: []byte("before the checkpoint")})
	mustCreate(t, e, "kept", CreateOptions{Data: []byte("kept")})
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for _, body := range [][]byte{[]byte("small"), pattern(5000, 1), []byte("small again")} {
		if _, err := e.Append(ctx, "gone", body, AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, e, "kept", " after", AppendOptions{})
	img := copyTree(t, dir) // crash image: the checkpoint still lists "gone"
	img2 := copyTree(t, dir)
	e.Close()

	e = openTest(t, img, largeOpts())
	if _, err := e.Head("gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("gone after recovery: %v", err)
	}
	if got := readString(t, e, "kept"); got != "kept after" {
		t.Fatalf("kept: %q", got)
	}
	e.Close()

	// The same image with a surviving stream's segment removed: damage.
	segs, _ := filepath.Glob(filepath.Join(img2, "streams", "*", "*.seg"))
	slabs, _ := filepath.Glob(filepath.Join(img2, "streams", "slab.*"))
	segs = append(segs, slabs...)
	removed := 0
	for _, p := range segs {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		removed++
	}
	if removed == 0 {
		t.Fatal("no segment files found")
	}
	if e, err := Open(img2, largeOpts()); err == nil {
		e.Close()
		t.Fatal("recovery with a live stream's files missing succeeded")
	} else if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("recovery with files missing: %v, want ErrCorrupt", err)
	}
}

// TestLargeAppendCacheWindow: once durable, large-append bytes more than
// LargeAppendCacheBytes behind the tail leave the page cache; the recent
// window stays cached; every byte still reads back.
func TestLargeAppendCacheWindow(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := largeOpts()
	o.MinSegmentSize, o.MaxSegmentSize = 1<<20, 1<<20
	o.BufferedLargeAppends = true
	o.LargeAppendCacheBytes = 64 << 10
	e := openTest(t, dir, o)
	defer e.Close()
	mustCreate(t, e, "big", CreateOptions{})
	var want []byte
	for i := 0; i < 40; i++ {
		body := pattern(16<<10, byte(i))
		if _, err := e.Append(ctx, "big", body, AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		want = append(want, body...)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "streams", "*", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	cached := residentPages(t, segs[0], 1<<20) // before any read
	page := os.Getpagesize()
	resident := func(from, to int) (n int) {
		for p := from / page; p < to/page; p++ {
			if cached[p] {
				n++
			}
		}
		return n
	}
	tail := len(want)
	window := 64 << 10
	if n := resident(0, tail-window-16<<10); n != 0 {
		t.Errorf("%d pages older than the window are still cached", n)
	}
	if n, all := resident(tail-window, tail), window/page; n != all {
		t.Errorf("%d of the window's %d pages are cached", n, all)
	}
	if got := readString(t, e, "big"); got != string(want) {
		t.Fatal("large appends do not read back")
	}
}

// Large appends are written with O_DIRECT by default: at any alignment of
// the stream offset they read back, before and after a restart, and the
// whole blocks they cover were not copied into the page cache.
func TestLargeAppendDirect(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := largeOpts()
	o.MinSegmentSize, o.MaxSegmentSize = 4<<20, 4<<20
	e := openTest(t, dir, o)
	mustCreate(t, e, "big", CreateOptions{})
	var want []byte
	var direct [][2]int // file ranges written by large appends
	for i := 0; i < 6; i++ {
		small := pattern(100+i, byte(100+i)) // moves the next append off block alignment
		body := pattern(200<<10+13*i, byte(i))
		for _, b := range [][]byte{small, body} {
			if _, err := e.Append(ctx, "big", b, AppendOptions{}); err != nil {
				t.Fatal(err)
			}
			want = append(want, b...)
		}
		direct = append(direct, [2]int{len(want) - len(body), len(want)})
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "streams", "*", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	probe, err := os.OpenFile(filepath.Join(dir, "probe"), os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644)
	if err == nil {
		probe.Close()
		cached := residentPages(t, segs[0], 4<<20)
		page := os.Getpagesize()
		for _, r := range direct {
			for p := (r[0] + page - 1) / page; p < r[1]/page; p++ {
				if cached[p] {
					t.Fatalf("page %d of a large append (bytes %d-%d) is in the page cache", p, r[0], r[1])
				}
			}
		}
	} else {
		t.Logf("no O_DIRECT on this file system (%v): large appends were buffered", err)
	}
	if got := readString(t, e, "big"); got != string(want) {
		t.Fatal("large appends do not read back")
	}
	e.Close()
	e = openTest(t, dir, o)
	defer e.Close()
	if got := readString(t, e, "big"); got != string(want) {
		t.Fatal("large appends do not read back after a restart")
	}
}

// residentPages reports, per page of the file's first size bytes, whether
// it is in the page cache (mincore), without reading it.
func residentPages(t *testing.T, path string, size int) []bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, size/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	res := make([]bool, len(vec))
	for i, v := range vec {
		res[i] = v&1 != 0
	}
	return res
}

// A large append whose write fails (here: the disk fills under its O_DIRECT
// write) fails alone and leaves the stream as it was; the next one works.
func TestLargeAppendWriteFailure(t *testing.T) {
	for _, before := range []string{"", "ab"} { // "ab": the segment is mapped
		t.Run("before="+before, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			fs := errorfs.New(nil)
			o := largeOpts()
			o.FS, o.MinSegmentSize, o.MaxSegmentSize = fs, 1<<20, 1<<20
			e := openTest(t, dir, o)
			mustCreate(t, e, "s", CreateOptions{})
			want := before
			for _, b := range before {
				mustAppend(t, e, "s", string(b), AppendOptions{})
			}
			fs.Inject(errorfs.Rule{Op: errorfs.Write, PathContains: "/streams/", Err: syscall.ENOSPC, Times: 1})
			if _, err := e.Append(ctx, "s", pattern(300<<10, 1), AppendOptions{}); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("large append on a full disk: %v", err)
			}
			if got := readAll(t, e, "s"); got != want {
				t.Fatalf("failed append visible: %d bytes", len(got))
			}
			body := pattern(300<<10, 2)
			if _, err := e.Append(ctx, "s", body, AppendOptions{}); err != nil {
				t.Fatalf("large append after space returned: %v", err)
			}
			want += string(body)
			if got := readAll(t, e, "s"); got != want {
				t.Fatal("stream differs after the failed append")
			}
			e.Close()
			e = openTest(t, dir, largeOpts())
			defer e.Close()
			if got := readAll(t, e, "s"); got != want {
				t.Fatal("stream differs after a restart")
			}
		})
	}
}
