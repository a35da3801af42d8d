package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memRemote is object storage for the engine's side of tiering: the tier
// package tests the same paths against a real S3 server.
type memRemote struct {
	mu      sync.Mutex
	objs    map[string][]byte
	failing atomic.Bool
	reads   atomic.Int64
}

func newMemRemote() *memRemote { return &memRemote{objs: map[string][]byte{}} }

// byRefOpts: 4 KiB segments over m, appends of 4 KiB or more written by
// reference (their bytes only in their segment), no timed checkpoints.
func byRefOpts(m *memRemote) *Options {
	return &Options{Remote: m, MinSegmentSize: 4 << 10, MaxSegmentSize: 4 << 10, LargeAppendBytes: 4 << 10,
		CheckpointInterval: time.Hour}
}

func (m *memRemote) ReadRange(_ context.Context, key string, off, n int64) ([]byte, error) {
	m.reads.Add(1)
	if m.failing.Load() {
		return nil, errors.New("bucket unreachable")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok || off+n > int64(len(b)) {
		return nil, fmt.Errorf("no %d bytes at %d in %q", n, off, key)
	}
	return bytes.Clone(b[off : off+n]), nil
}

// upload copies every sealed local file segment into m, the way the tier
// does (a housekeeping read of exactly the segment), and evicts them.
func upload(t *testing.T, e *Engine, m *memRemote) int {
	t.Helper()
	type seg struct {
		SegmentInfo
		key string
	}
	var segs []seg
	e.Segments(func(in SegmentInfo) bool {
		if in.Sealed && !in.Slab && in.Remote == "" && in.Len > 0 {
			segs = append(segs, seg{in, fmt.Sprintf("%s/%d/%d", in.Path, in.StreamID, in.Base)})
		}
		return true
	})
	n := 0
	for _, s := range segs {
		c, err := e.Read(s.Path, At(s.Base), ReadOptions{End: s.Base + Offset(s.Len), MaxBytes: s.Len, Housekeeping: true})
		if err != nil {
			t.Fatalf("read segment %s@%d: %v", s.Path, s.Base, err)
		}
		m.mu.Lock()
		m.objs[s.key] = bytes.Join(c.Data(), nil)
		m.mu.Unlock()
		c.Release()
		k, err := e.EvictSegments(context.Background(), []Eviction{{s.Path, s.StreamID, RemoteSegment{Base: s.Base, Len: s.Len, Key: s.key}}})
		if err != nil {
			t.Fatalf("evict %s@%d: %v", s.Path, s.Base, err)
		}
		n += k
	}
	if err := e.Checkpoint(); err != nil { // the evicted files go at a checkpoint
		t.Fatal(err)
	}
	return n
}

func segFiles(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "streams", "*", "*.seg"))
	return len(files)
}

// TestEvictedSegmentsReadBack: sealed segments evicted to a Remote read
// back exactly (byte and JSON streams, whole and paged, across restarts),
// their files are gone, and appends go on into local segments.
func TestEvictedSegmentsReadBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := newMemRemote()
	opts := &Options{Remote: m, MinSegmentSize: 4 << 10, MaxSegmentSize: 8 << 10, CheckpointInterval: time.Hour}
	e := openTest(t, dir, opts)
	if _, _, err := e.Create(ctx, "b", CreateOptions{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Create(ctx, "j", CreateOptions{ContentType: "application/json"}); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	var msgs []string
	for i := range 400 {
		p := fmt.Sprintf("line %04d %s\n", i, strings.Repeat("x", i%97))
		want.WriteString(p)
		if _, err := e.Append(ctx, "b", []byte(p), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("y", i%53))
		msgs = append(msgs, msg)
		if _, err := e.Append(ctx, "j", []byte(msg), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wantJSON := "[" + strings.Join(msgs, ",") + "]"
	before := segFiles(t, dir)
	n := upload(t, e, m)
	if n < 3 {
		t.Fatalf("evicted %d segments, want several", n)
	}
	if after := segFiles(t, dir); after != before-n {
		t.Fatalf("segment files: %d before, %d after evicting %d", before, after, n)
	}
	check := func(e *Engine, what string) {
		t.Helper()
		if got := readAll(t, e, "b"); got != want.String() {
			t.Fatalf("%s: byte stream reads %d bytes, want %d (equal %v)", what, len(got), want.Len(), got == want.String())
		}
		if got := readAll(t, e, "j"); got != wantJSON {
			t.Fatalf("%s: JSON stream differs", what)
		}
		// Paged JSON reads cut at message boundaries inside remote segments.
		var all []string
		off := Offset(0)
		for {
			c, err := e.Read("j", At(off), ReadOptions{MaxBytes: 1000})
			if err != nil {
				t.Fatalf("%s: paged read at %d: %v", what, off, err)
			}
			body := string(c.Bytes())
			if body != "[]" {
				all = append(all, strings.TrimSuffix(strings.TrimPrefix(body, "["), "]"))
			}
			off = c.Next
			done := c.UpToDate
			c.Release()
			if done {
				break
			}
		}
		if got := "[" + strings.Join(all, ",") + "]"; got != wantJSON {
			t.Fatalf("%s: paged JSON read differs", what)
		}
		// An offset inside a remote message is still refused.
		if _, err := e.Read("j", At(3), ReadOptions{}); !errors.Is(err, ErrNotBoundary) {
			t.Fatalf("%s: read inside a message: %v, want ErrNotBoundary", what, err)
		}
	}
	check(e, "after eviction")
	if _, err := e.Append(ctx, "b", []byte("tail\n"), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	want.WriteString("tail\n")
	if _, err := e.Append(ctx, "j", []byte(`{"tail":1}`), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	wantJSON = strings.TrimSuffix(wantJSON, "]") + `,{"tail":1}]`
	// A crash (the files as they are), with the index files gone and the
	// bucket down: recovery replays appends into streams whose index must
	// be rebuilt, and never waits on the bucket to do it.
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	e.Close()
	dir = crashed
	idx, _ := filepath.Glob(filepath.Join(dir, "streams", "*", "*.index"))
	for _, f := range idx {
		os.Remove(f)
	}
	m.failing.Store(true)
	e = openTest(t, dir, opts)
	m.failing.Store(false)
	check(e, "after a crash, recovered with the bucket down")
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = openTest(t, dir, opts)
	defer e.Close()
	check(e, "after a checkpoint and restart")

	// The bucket fails: reads of remote bytes answer ErrUnavailable,
	// never other bytes; appends and reads of local bytes go on.
	m.failing.Store(true)
	if _, err := e.Read("b", ReadFrom{Kind: FromStart}, ReadOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("read with the bucket down: %v, want ErrUnavailable", err)
	}
	res, err := e.Append(ctx, "b", []byte("more\n"), AppendOptions{})
	if err != nil {
		t.Fatalf("append with the bucket down: %v", err)
	}
	c, err := e.Read("b", At(res.Tail-5), ReadOptions{})
	if err != nil || string(c.Bytes()) != "more\n" {
		t.Fatalf("read of local tail with the bucket down: %v", err)
	}
	c.Release()
	m.failing.Store(false)

	// Delete: OnRemove is not set here; the files and the record go.
	if err := e.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
}

// TestEvictionCrashWindow: a crash after an eviction's remote record is
// durable but before a checkpoint covers it: the restart reads the bytes
// from the remote, and keeps the segment's file until a checkpoint (a
// second crash before that replays the by-reference appends that wrote
// it, whose bytes are only in that file).
func TestEvictionCrashWindow(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := newMemRemote()
	opts := byRefOpts(m)
	e := openTest(t, dir, opts)
	e.Create(ctx, "s", CreateOptions{ContentType: "text/plain"})
	var want bytes.Buffer
	for i := range 6 {
		p := fmt.Sprintf("%03d%s", i, strings.Repeat("z", 5000)) // by reference: only in its segment
		want.WriteString(p)
		if _, err := e.Append(ctx, "s", []byte(p), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var in SegmentInfo
	e.Segments(func(s SegmentInfo) bool {
		if s.Sealed && !s.Slab {
			in = s
			return false
		}
		return true
	})
	c, _ := e.Read("s", At(in.Base), ReadOptions{End: in.Base + Offset(in.Len), MaxBytes: in.Len})
	m.objs["k"] = bytes.Join(c.Data(), nil)
	c.Release()
	if n, err := e.EvictSegments(ctx, []Eviction{{"s", in.StreamID, RemoteSegment{in.Base, in.Len, "k"}}}); n != 1 || err != nil {
		t.Fatalf("evict: %d %v", n, err)
	}
	// A crash now (the files as they are: the page cache), then another
	// right after the restart, before any checkpoint.
	crash := func(from string) string {
		to := t.TempDir()
		if err := os.CopyFS(to, os.DirFS(from)); err != nil {
			t.Fatal(err)
		}
		return to
	}
	before := segFiles(t, dir)
	first := crash(dir)
	e.Close()
	e = openTest(t, first, opts)
	if got := segFiles(t, first); got != before {
		t.Fatalf("segment files %d after the first restart, want %d (the evicted one kept)", got, before)
	}
	second := crash(first)
	e.Close()
	e = openTest(t, second, opts)
	defer e.Close()
	if got := readAll(t, e, "s"); got != want.String() {
		t.Fatal("read after two crashes differs")
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, second); got != before-1 {
		t.Fatalf("segment files %d after a checkpoint, want %d (the evicted one removed)", got, before-1)
	}
	if m.reads.Load() == 0 {
		t.Fatal("the evicted segment was not read from the remote")
	}
}

// TestAttachRemote: a restore attaches remote segments to an empty stream
// of a new engine; they read back, across a restart, and appends follow.
func TestAttachRemote(t *testing.T) {
	ctx := context.Background()
	m := newMemRemote()
	var msgs []string
	var seg1, seg2 bytes.Buffer
	for i := range 300 {
		msg := fmt.Sprintf(`{"n":%d}`, i)
		msgs = append(msgs, msg)
		if i < 200 {
			seg1.WriteString(msg + ",")
		} else {
			seg2.WriteString(msg + ",")
		}
	}
	m.objs["a"], m.objs["b"] = seg1.Bytes(), seg2.Bytes()
	dir := t.TempDir()
	opts := &Options{Remote: m, IndexEvery: 256}
	e := openTest(t, dir, opts)
	e.Create(ctx, "r", CreateOptions{ContentType: "application/json"})
	err := e.AttachRemote(ctx, "r", []RemoteSegment{
		{Base: 0, Len: int64(seg1.Len()), Key: "a"},
		{Base: Offset(seg1.Len()), Len: int64(seg2.Len()), Key: "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "[" + strings.Join(msgs, ",") + "]"
	if got := readAll(t, e, "r"); got != want {
		t.Fatalf("attached stream reads %q", got)
	}
	if err := e.AttachRemote(ctx, "r", []RemoteSegment{{Base: 5, Len: 1, Key: "x"}}); err == nil {
		t.Fatal("attach away from the tail accepted")
	}
	e.Append(ctx, "r", []byte(`{"n":"local"}`), AppendOptions{})
	e.Close()
	os.Remove(filepath.Join(dir, "streams", fmt.Sprintf("%02x", 1), fmt.Sprintf("%016x.index", 1))) // index rebuilt from the objects
	e = openTest(t, dir, opts)
	defer e.Close()
	want = "[" + strings.Join(append(msgs, `{"n":"local"}`), ",") + "]"
	if got := readAll(t, e, "r"); got != want {
		t.Fatalf("after restart reads %q", got)
	}
	c, err := e.Read("r", At(Offset(seg1.Len())), ReadOptions{MaxBytes: 100})
	if err != nil || !strings.HasPrefix(string(c.Bytes()), `[{"n":200}`) {
		t.Fatalf("read at the second object: %v", err)
	}
	c.Release()
}

// TestSealAfter: an append to a segment older than SealAfter starts a new
// one, so the old one is sealed.
func TestSealAfter(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1e9, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	opts := &Options{SealAfter: time.Minute, Clock: clock, CheckpointInterval: time.Hour}
	e := openTest(t, dir, opts)
	defer e.Close()
	e.Create(ctx, "s", CreateOptions{ContentType: "text/plain", Data: []byte("a")})
	e.Append(ctx, "s", []byte("b"), AppendOptions{})
	sealed := func() (n int) {
		e.Segments(func(in SegmentInfo) bool {
			if in.Sealed {
				n++
			}
			return true
		})
		return n
	}
	if n := sealed(); n != 0 {
		t.Fatalf("%d sealed segments before a minute", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	e.Append(ctx, "s", []byte("c"), AppendOptions{})
	if n := sealed(); n != 1 {
		t.Fatalf("%d sealed segments after a minute, want 1", n)
	}
	// Sealed for age: the next segment is sized by what was written, not
	// doubled (a slow stream would preallocate ever larger files).
	for range 10 {
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		e.Append(ctx, "s", []byte("c"), AppendOptions{})
	}
	e.Segments(func(in SegmentInfo) bool {
		if in.FileBytes > 4<<10 {
			t.Errorf("segment at %d of %d bytes takes a %d-byte file", in.Base, in.Len, in.FileBytes)
		}
		return true
	})
	want := "ab" + strings.Repeat("c", 11)
	if got := readAll(t, e, "s"); got != want {
		t.Fatalf("read %q", got)
	}
	// A crash: replay lays the bytes out as they were (the seal is in the
	// log), whatever the clock says now.
	layout := func(e *Engine) (bases []Offset) {
		e.Segments(func(in SegmentInfo) bool { bases = append(bases, in.Base); return true })
		return bases
	}
	before := layout(e)
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = time.Unix(1e9, 0)
	mu.Unlock()
	e2 := openTest(t, crashed, opts)
	defer e2.Close()
	if after := layout(e2); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("segments start at %v after a crash, %v before", after, before)
	}
	if got := readAll(t, e2, "s"); got != want {
		t.Fatalf("after the crash read %q", got)
	}
}

// TestSealIdle: the last segment of a stream not appended to is sealed by
// SealIdle once older than SealAfter; later appends start a new segment;
// the seal survives a crash, through replay and through a checkpoint.
func TestSealIdle(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1e9, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func() { mu.Lock(); now = now.Add(2 * time.Minute); mu.Unlock() }
	opts := &Options{SealAfter: time.Minute, Clock: clock, CheckpointInterval: time.Hour}
	layout := func(e *Engine) string { // streams in path order, segments in offset order
		var segs []string
		e.Segments(func(in SegmentInfo) bool {
			segs = append(segs, fmt.Sprintf("%s@%d+%d sealed=%v final=%v;", in.Path, in.Base, in.Len, in.Sealed, in.Final))
			return true
		})
		slices.Sort(segs)
		return strings.Join(segs, "")
	}
	seal := func(e *Engine, want int) {
		t.Helper()
		if n, err := e.SealIdle(ctx); err != nil || n != want {
			t.Fatalf("SealIdle: %d, %v; want %d", n, err, want)
		}
	}
	dir := t.TempDir()
	e := openTest(t, dir, opts)
	defer e.Close()
	e.Create(ctx, "s", CreateOptions{ContentType: "text/plain", Data: []byte("a")})
	e.Append(ctx, "s", []byte("b"), AppendOptions{})
	e.Create(ctx, "closed", CreateOptions{ContentType: "text/plain", Data: []byte("x"), Closed: true})
	e.Create(ctx, "empty", CreateOptions{ContentType: "text/plain"})
	seal(e, 0)
	if got, want := layout(e), "s@0+2 sealed=false final=false;"; !strings.Contains(got, want) {
		t.Fatalf("before SealAfter: %s", got)
	}
	advance()
	seal(e, 1) // s only: closed is sealed by its closure, empty has no bytes
	sealed := layout(e)
	if !strings.Contains(sealed, "s@0+2 sealed=true final=false;") || !strings.Contains(sealed, "closed@0+1 sealed=true final=true;") {
		t.Fatalf("after SealIdle: %s", sealed)
	}
	advance()
	seal(e, 0) // already sealed

	// A crash before a checkpoint: the seal record is replayed.
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	e2 := openTest(t, crashed, opts)
	defer e2.Close()
	if got := layout(e2); got != sealed {
		t.Fatalf("after a crash: %s, before %s", got, sealed)
	}
	// After a checkpoint: the seal is in it.
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	ckpt := t.TempDir()
	if err := os.CopyFS(ckpt, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	e3 := openTest(t, ckpt, opts)
	defer e3.Close()
	if got := layout(e3); got != sealed {
		t.Fatalf("after a checkpoint and a crash: %s, before %s", got, sealed)
	}
	// An append starts a new segment, in each.
	for _, x := range []*Engine{e, e2, e3} {
		x.Append(ctx, "s", []byte("c"), AppendOptions{})
		if got := layout(x); !strings.Contains(got, "s@0+2 sealed=true final=false;s@2+1 sealed=false final=false;") {
			t.Fatalf("append after the seal: %s", got)
		}
		if got := readAll(t, x, "s"); got != "abc" {
			t.Fatalf("read %q", got)
		}
	}
}

// TestOnRemoveGetsRemoteKeys: a deleted stream's remote keys reach
// OnRemove once the delete is durable.
func TestOnRemoveGetsRemoteKeys(t *testing.T) {
	ctx := context.Background()
	m := newMemRemote()
	var got []RemovedStream
	var mu sync.Mutex
	e := openTest(t, t.TempDir(), &Options{Remote: m, MinSegmentSize: 4 << 10, MaxSegmentSize: 4 << 10,
		OnRemove: func(r RemovedStream) { mu.Lock(); got = append(got, r); mu.Unlock() }})
	defer e.Close()
	e.Create(ctx, "s", CreateOptions{ContentType: "text/plain"})
	for range 20 {
		e.Append(ctx, "s", bytes.Repeat([]byte("q"), 1000), AppendOptions{})
	}
	n := upload(t, e, m)
	if err := e.Delete(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Path != "s" || len(got[0].Remote) != n {
		t.Fatalf("OnRemove got %+v, want s with %d keys", got, n)
	}
}

// TestEvictedThenDeletedCrash: a stream with an evicted segment is
// deleted (its files go) and the engine crashes before a checkpoint:
// replay meets appends whose files are gone and the remote record of a
// segment it could not rebuild, then the delete, and recovers.
func TestEvictedThenDeletedCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := newMemRemote()
	opts := byRefOpts(m)
	e := openTest(t, dir, opts)
	e.Create(ctx, "gone", CreateOptions{ContentType: "text/plain"})
	e.Create(ctx, "kept", CreateOptions{ContentType: "text/plain", Data: []byte("k")})
	for i := range 4 {
		if _, err := e.Append(ctx, "gone", bytes.Repeat([]byte{byte('a' + i)}, 5000), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var evs []Eviction
	e.Segments(func(in SegmentInfo) bool {
		if in.Path == "gone" && in.Sealed && !in.Slab {
			c, _ := e.Read("gone", At(in.Base), ReadOptions{End: in.Base + Offset(in.Len), MaxBytes: in.Len})
			key := fmt.Sprint(in.Base)
			m.objs[key] = bytes.Join(c.Data(), nil)
			c.Release()
			evs = append(evs, Eviction{"gone", in.StreamID, RemoteSegment{in.Base, in.Len, key}})
		}
		return true
	})
	if n, err := e.EvictSegments(ctx, evs); n == 0 || err != nil {
		t.Fatalf("evict: %d %v", n, err)
	}
	if err := e.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = openTest(t, crashed, opts)
	defer e.Close()
	if _, err := e.Head("gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted stream after recovery: %v", err)
	}
	if got := readAll(t, e, "kept"); got != "k" {
		t.Fatalf("kept reads %q", got)
	}
}
