package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durastream/durastream/vfs"
	"github.com/durastream/durastream/vfs/errorfs"
)

// Fault injection through vfs/errorfs: a full disk and failing syncs, on
// the real file system.

func faultOpts(fs *errorfs.FS) *Options {
	return &Options{FS: fs, WALSegmentSize: 64 << 10, MinSegmentSize: 4096, MaxSegmentSize: 64 << 10,
		CheckpointInterval: 1 << 40}
}

// acked tracks what a test has seen acknowledged per stream.
type acked map[string][]byte

func (a acked) check(t *testing.T, e *Engine) {
	t.Helper()
	for p, want := range a {
		if got := readAll(t, e, p); got != string(want) {
			t.Fatalf("%s: read %d bytes, want %d acknowledged bytes", p, len(got), len(want))
		}
	}
}

func TestDiskFullStreamSegment(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs := errorfs.New(nil)
	e := openTest(t, dir, faultOpts(fs))
	ok := acked{}
	small := bytes.Repeat([]byte("s"), 100)
	mustCreate(t, e, "a", CreateOptions{Data: small})
	ok["a"] = append(ok["a"], small...)

	fs.Inject(errorfs.Rule{Op: errorfs.Fallocate, PathContains: "/streams/", Err: syscall.ENOSPC})
	// Space already reserved keeps working.
	if _, err := e.Append(ctx, "a", small, AppendOptions{}); err != nil {
		t.Fatalf("append into reserved space: %v", err)
	}
	ok["a"] = append(ok["a"], small...)
	// Anything that needs a new file fails with ErrNoSpace and changes nothing.
	big := bytes.Repeat([]byte("B"), 8000)
	for i := 0; i < 3; i++ {
		if _, err := e.Append(ctx, "a", big, AppendOptions{}); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("append needing a segment on a full disk: %v", err)
		}
	}
	if _, _, err := e.Create(ctx, "b", CreateOptions{Data: big}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("create with data on a full disk: %v", err)
	}
	if _, err := e.Head("b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed create left a stream: %v", err)
	}
	// First bytes that fit a slab slot need no new file.
	mustCreate(t, e, "c", CreateOptions{Data: small})
	ok["c"] = small
	ok.check(t, e) // reads keep working
	if e.Err() != nil {
		t.Fatalf("a full disk must not stop the engine: %v", e.Err())
	}

	fs.Clear() // space returns
	if _, err := e.Append(ctx, "a", big, AppendOptions{}); err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	ok["a"] = append(ok["a"], big...)
	mustCreate(t, e, "b", CreateOptions{Data: small})
	ok["b"] = small
	ok.check(t, e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTest(t, dir, nil)
	defer e.Close()
	ok.check(t, e)
}

func TestDiskFullJSONIndexStaysOnBoundaries(t *testing.T) {
	ctx := context.Background()
	fs := errorfs.New(nil)
	o := faultOpts(fs)
	o.IndexEvery = 64 // index every boundary, so a stale one would be used
	e := openTest(t, t.TempDir(), o)
	defer e.Close()
	mustCreate(t, e, "j", CreateOptions{ContentType: "application/json"})
	msg := `{"k":"` + strings.Repeat("x", 3000) + `"}`
	// The commit log fills up now and then (64 KiB segments): an append
	// whose bytes reached its stream but whose record did not reach the log
	// must leave no boundary behind.
	var n, failed int
	// Windows of 200 appends (> one 64 KiB segment) with the disk full,
	// so a rollover inside each finds no prepared segment.
	for i := 0; i < 900; i++ {
		if i%300 == 0 {
			fs.Inject(errorfs.Rule{Op: errorfs.Fallocate, PathContains: "/wal/", Err: syscall.ENOSPC})
		}
		if i%300 == 200 {
			fs.Clear()
		}
		body := "[" + msg + "," + msg + "]"
		if i%3 == 0 {
			// A message of another length, so a boundary left behind by a
			// failed batch cannot coincide with a real one.
			body = `{"k":"` + strings.Repeat("y", 777) + `"}`
		}
		_, err := e.Append(ctx, "j", []byte(body), AppendOptions{})
		switch {
		case err == nil && i%3 == 0:
			n++
		case err == nil:
			n += 2
		case errors.Is(err, ErrNoSpace):
			failed++
		default:
			t.Fatal(err)
		}
	}
	if failed == 0 {
		t.Fatal("no append failed: the test did not exercise a full commit log")
	}
	// Every page ends on a message boundary: failed appends left no index
	// entries behind.
	total := 0
	from := ReadFrom{Kind: FromStart}
	for {
		c, err := e.Read("j", from, ReadOptions{MaxBytes: 10000})
		if err != nil {
			t.Fatal(err)
		}
		var page []map[string]string
		if err := json.Unmarshal(c.Bytes(), &page); err != nil {
			t.Fatalf("page at %s is not a JSON array: %v", c.Start, err)
		}
		total += len(page)
		c.Release()
		if c.UpToDate {
			break
		}
		from = At(c.Next)
	}
	if total != n {
		t.Fatalf("read %d messages, %d acknowledged", total, n)
	}
}

func TestDiskFullCommitLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs := errorfs.New(nil)
	e := openTest(t, dir, faultOpts(fs))
	ok := acked{}
	mustCreate(t, e, "a", CreateOptions{})
	fs.Inject(errorfs.Rule{Op: errorfs.Fallocate, PathContains: "/wal/", Err: syscall.ENOSPC})
	body := bytes.Repeat([]byte("w"), 1000)
	failed := 0
	for i := 0; i < 200 && failed < 3; i++ {
		if _, err := e.Append(ctx, "a", body, AppendOptions{}); err != nil {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("append %d: %v", i, err)
			}
			failed++
			continue
		}
		ok["a"] = append(ok["a"], body...)
	}
	if failed == 0 {
		t.Fatal("the commit log never needed a new segment")
	}
	ok.check(t, e)
	if e.Err() != nil {
		t.Fatalf("engine stopped on a full disk: %v", e.Err())
	}
	fs.Clear()
	for i := 0; i < 100; i++ {
		if _, err := e.Append(ctx, "a", body, AppendOptions{}); err != nil {
			t.Fatalf("append after space returned: %v", err)
		}
		ok["a"] = append(ok["a"], body...)
	}
	e.Close()
	e = openTest(t, dir, nil)
	defer e.Close()
	ok.check(t, e)
}

// TestCommitLogFailureStopsWrites: a failed write or sync of the commit log
// stops the engine's writes (a batch of other appenders' records is lost
// with it, and a sync is never retried and then trusted); reads go on and a
// restart recovers the last durable state.
func TestCommitLogFailureStopsWrites(t *testing.T) {
	for _, op := range []errorfs.Op{errorfs.Fdatasync, errorfs.Write} {
		t.Run(string(op), func(t *testing.T) { testCommitLogFailure(t, op) })
	}
}

func testCommitLogFailure(t *testing.T, op errorfs.Op) {
	ctx := context.Background()
	dir := t.TempDir()
	fs := errorfs.New(nil)
	e := openTest(t, dir, faultOpts(fs))
	ok := acked{}
	mustCreate(t, e, "a", CreateOptions{})
	body := []byte("acknowledged;")
	for i := 0; i < 20; i++ {
		if _, err := e.Append(ctx, "a", body, AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		ok["a"] = append(ok["a"], body...)
	}
	fs.Inject(errorfs.Rule{Op: op, PathContains: "/wal/", Err: syscall.EIO, Times: 1})
	if _, err := e.Append(ctx, "a", []byte("lost?"), AppendOptions{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("append whose commit failed: %v", err)
	}
	// The failure is sticky even though the next sync would succeed: a sync
	// is never retried and then trusted.
	if !errors.Is(e.Err(), ErrFailed) {
		t.Fatalf("Err() = %v, want ErrFailed", e.Err())
	}
	if _, err := e.Append(ctx, "a", body, AppendOptions{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after a failed sync: %v", err)
	}
	if _, _, err := e.Create(ctx, "b", CreateOptions{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("create after a failed sync: %v", err)
	}
	ok.check(t, e) // reads keep working
	e.Close()

	e = openTest(t, dir, nil) // restart: back to the last durable state
	defer e.Close()
	got := readAll(t, e, "a")
	if !strings.HasPrefix(got, string(ok["a"])) || len(got) > len(ok["a"])+len("lost?") {
		t.Fatalf("after restart: %q", got)
	}
	if _, err := e.Append(ctx, "a", body, AppendOptions{}); err != nil {
		t.Fatalf("append after restart: %v", err)
	}
}

func TestCheckpointFaults(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		rule     errorfs.Rule
		stops    bool // the engine must stop accepting writes
		ckptFail bool
	}{
		{"segment fdatasync EIO", errorfs.Rule{Op: errorfs.Fdatasync, PathContains: ".seg", Err: syscall.EIO, Times: 1}, true, true},
		{"slab fdatasync EIO", errorfs.Rule{Op: errorfs.Fdatasync, PathContains: "slab.", Err: syscall.EIO, Times: 1}, true, true},
		{"index fdatasync EIO", errorfs.Rule{Op: errorfs.Fdatasync, PathContains: ".index", Err: syscall.EIO, Times: 1}, true, true},
		{"directory fsync EIO", errorfs.Rule{Op: errorfs.Fsync, PathContains: "streams/", Err: syscall.EIO, Times: 1}, true, true},
		{"rename EIO", errorfs.Rule{Op: errorfs.Rename, PathContains: "checkpoint", Err: syscall.EIO, Times: 1}, false, true},
		{"checkpoint write ENOSPC", errorfs.Rule{Op: errorfs.Write, PathContains: "checkpoint", Err: syscall.ENOSPC, Times: 1}, false, true},
		{"index write ENOSPC", errorfs.Rule{Op: errorfs.Write, PathContains: ".index", Err: syscall.ENOSPC, Times: 1}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := errorfs.New(nil)
			e := openTest(t, dir, faultOpts(fs))
			ok := acked{}
			mustCreate(t, e, "a", CreateOptions{})
			body := bytes.Repeat([]byte("c"), 1000)
			for i := 0; i < 30; i++ { // > 4 KiB: the index has entries to flush
				if _, err := e.Append(ctx, "a", body, AppendOptions{}); err != nil {
					t.Fatal(err)
				}
				ok["a"] = append(ok["a"], body...)
			}
			fs.Inject(tc.rule)
			err := e.Checkpoint()
			if tc.ckptFail != (err != nil) {
				t.Fatalf("Checkpoint() = %v", err)
			}
			if fs.Hits() == 0 {
				t.Fatal("the fault was never hit")
			}
			_, aerr := e.Append(ctx, "a", body, AppendOptions{})
			if tc.stops {
				if !errors.Is(aerr, ErrFailed) || !errors.Is(e.Err(), ErrFailed) {
					t.Fatalf("after a failed checkpoint sync: append %v, Err %v", aerr, e.Err())
				}
			} else {
				if aerr != nil {
					t.Fatalf("append after a failed checkpoint: %v", aerr)
				}
				ok["a"] = append(ok["a"], body...)
				if err := e.Checkpoint(); err != nil {
					t.Fatalf("the next checkpoint: %v", err)
				}
			}
			ok.check(t, e)
			e.Close()
			e = openTest(t, dir, nil)
			defer e.Close()
			ok.check(t, e)
		})
	}
}

// TestFailedCommitKeepsStoredBytes: a create or append whose bytes reached
// the stream's segment but whose record did not reach the log (the log is
// full and the disk has no room for its next segment) leaves the
// stored-bytes count as it was.
func TestFailedCommitKeepsStoredBytes(t *testing.T) {
	ctx := context.Background()
	fs := errorfs.New(nil)
	e := openTest(t, t.TempDir(), faultOpts(fs))
	defer e.Close() // before the directory goes: the log's preparer may still be making a file
	mustCreate(t, e, "a", CreateOptions{Data: []byte("kept")})
	fs.Inject(errorfs.Rule{Op: errorfs.Fallocate, PathContains: "/wal/", Err: syscall.ENOSPC})
	body := bytes.Repeat([]byte("w"), 1000)
	for i := 0; ; i++ {
		_, err := e.Append(ctx, "a", body, AppendOptions{})
		if errors.Is(err, ErrNoSpace) {
			break
		}
		if err != nil || i == 1000 {
			t.Fatalf("filling the commit log: append %d: %v", i, err)
		}
	}
	before := e.Stats().StoredBytes
	if _, _, err := e.Create(ctx, "b", CreateOptions{Data: body}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("create whose record did not fit: %v", err)
	}
	if _, err := e.Append(ctx, "a", body, AppendOptions{}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("append whose record did not fit: %v", err)
	}
	if got := e.Stats().StoredBytes; got != before {
		t.Fatalf("StoredBytes %d after failed commits, want %d", got, before)
	}
}

// heldSyncFS holds the next fdatasync of the first commit-log segment once
// hold is set, until release says how it ends.
type heldSyncFS struct {
	vfs.FS
	mu      sync.Mutex
	hold    bool
	waiting chan struct{} // closed when the sync is being held
	release chan error
}

func (h *heldSyncFS) Fdatasync(f *os.File) error {
	h.mu.Lock()
	held := h.hold && strings.HasSuffix(f.Name(), walName(0))
	h.hold = h.hold && !held
	h.mu.Unlock()
	if !held {
		return h.FS.Fdatasync(f)
	}
	close(h.waiting)
	return <-h.release
}

// TestRefusalWaitsForTheStateItReveals: an append refused because the
// stream is closed is answered only once the close is durable. When the
// close's sync fails, the refusal never comes: the close may be lost in a
// crash, so the answer is the failure, not a 409 with a final offset.
func TestRefusalWaitsForTheStateItReveals(t *testing.T) {
	ctx := context.Background()
	fs := &heldSyncFS{FS: vfs.OS, waiting: make(chan struct{}), release: make(chan error)}
	e := openTest(t, t.TempDir(), &Options{FS: fs, CheckpointInterval: 1 << 40})
	mustCreate(t, e, "s", CreateOptions{})
	mustAppend(t, e, "s", "durable", AppendOptions{})
	fs.mu.Lock()
	fs.hold = true
	fs.mu.Unlock()
	closed := make(chan error, 1)
	go func() {
		_, err := e.Append(ctx, "s", []byte("and close"), AppendOptions{Close: true})
		closed <- err
	}()
	<-fs.waiting // the close is written, its sync held
	refused := make(chan error, 1)
	go func() {
		_, err := e.Append(ctx, "s", []byte("late"), AppendOptions{})
		refused <- err
	}()
	select {
	case err := <-refused:
		t.Fatalf("append to a stream whose close is not durable answered %v before the sync", err)
	case <-time.After(50 * time.Millisecond):
	}
	fs.release <- syscall.EIO
	if err := <-closed; !errors.Is(err, ErrFailed) {
		t.Fatalf("close whose sync failed: %v", err)
	}
	if err := <-refused; !errors.Is(err, ErrFailed) {
		t.Fatalf("append refused on a close that never became durable: %v, want ErrFailed", err)
	}
}

// TestFailWakesWaiters: a failure recorded outside the committer (a large
// append's data sync, a checkpoint's file sync) wakes appenders already
// waiting for their record: it will never be synced now.
func TestFailWakesWaiters(t *testing.T) {
	e := openTest(t, t.TempDir(), nil)
	defer e.Close()
	done := make(chan error, 1)
	go func() { done <- e.wal.waitDurable(context.Background(), e.wal.written.Load()+1) }() // past anything written: only a failure ends it
	time.Sleep(20 * time.Millisecond)
	e.wal.fail(syscall.EIO)
	select {
	case err := <-done:
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("waiter woke with %v, want ErrFailed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a waiter stayed blocked after the log failed")
	}
}

// syncRecorder is the real file system, recording what was synced.
type syncRecorder struct {
	vfs.FS
	mu     sync.Mutex
	synced map[string]int
}

func (r *syncRecorder) note(f *os.File) {
	r.mu.Lock()
	r.synced[f.Name()]++
	r.mu.Unlock()
}

func (r *syncRecorder) Fsync(f *os.File) error     { r.note(f); return r.FS.Fsync(f) }
func (r *syncRecorder) Fdatasync(f *os.File) error { r.note(f); return r.FS.Fdatasync(f) }

func (r *syncRecorder) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.synced
	r.synced = map[string]int{}
	return m
}

// A checkpoint syncs exactly what it needs, without syncfs (which FUSE and
// some network file systems accept without flushing): every segment file,
// slab file and index file written since the last checkpoint, and every
// directory that gained a file; and nothing when nothing was written.
func TestCheckpointSyncsWrittenFiles(t *testing.T) {
	dir := t.TempDir()
	rec := &syncRecorder{FS: vfs.OS, synced: map[string]int{}}
	o := faultOpts(nil)
	o.FS = rec
	e := openTest(t, dir, o)
	defer e.Close()
	mustCreate(t, e, "small", CreateOptions{Data: []byte("in a slab slot")})
	mustCreate(t, e, "grown", CreateOptions{})
	for range 30 { // past the slot into files of its own, with index entries
		mustAppend(t, e, "grown", strings.Repeat("g", 1000), AppendOptions{})
	}
	mustCreate(t, e, "large", CreateOptions{})
	mustAppend(t, e, "large", strings.Repeat("L", 70<<10), AppendOptions{}) // by reference
	rec.take()
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	synced := rec.take()
	want := []string{filepath.Join(dir, "streams", "slab.4096.0")}
	for _, p := range []string{"grown", "large"} {
		s, _ := e.streams.Load(p)
		for _, ds := range s.data.segs {
			if ds.slab1 == 0 {
				want = append(want, e.store.segPath(s.id, ds.base))
			}
		}
		want = append(want, e.store.fanDir(s.id))
	}
	g, _ := e.streams.Load("grown")
	want = append(want, e.store.indexPath(g.id))
	for _, p := range want {
		if synced[p] == 0 {
			t.Errorf("checkpoint did not sync %s (synced: %v)", p, synced)
		}
	}
	// Nothing written since: the next checkpoint syncs no stream file.
	mustAppend(t, e, "small", "x", AppendOptions{}) // a log record to checkpoint
	rec.take()
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for p := range rec.take() {
		if strings.Contains(p, "/streams/") && !strings.Contains(p, "slab.") {
			t.Errorf("checkpoint synced %s, which was not written", p)
		}
	}
}

// One failure, one answer: once a commit-log sync fails, even with ENOSPC,
// the append in flight and every later write get ErrFailed (503), never
// ErrNoSpace (507, "retry when space returns") from an engine that is
// stopped until restart.
func TestFailedSyncENOSPCIsOneAnswer(t *testing.T) {
	ctx := context.Background()
	for _, op := range []errorfs.Op{errorfs.Fdatasync, errorfs.Write} {
		t.Run(string(op), func(t *testing.T) {
			fs := errorfs.New(nil)
			e := openTest(t, t.TempDir(), faultOpts(fs))
			defer e.Close()
			mustCreate(t, e, "a", CreateOptions{})
			fs.Inject(errorfs.Rule{Op: op, PathContains: "/wal/", Err: syscall.ENOSPC}) // every time: also the next segment prepared in the background
			_, first := e.Append(ctx, "a", []byte("x"), AppendOptions{})
			if fs.Hits() == 0 {
				t.Fatal("the fault was never hit")
			}
			_, later := e.Append(ctx, "a", []byte("y"), AppendOptions{})
			_, _, create := e.Create(ctx, "b", CreateOptions{})
			for what, err := range map[string]error{"in flight": first, "later": later, "create": create, "Err": e.Err()} {
				if !errors.Is(err, ErrFailed) || errors.Is(err, ErrNoSpace) {
					t.Errorf("%s: %v, want ErrFailed and not ErrNoSpace", what, err)
				}
			}
		})
	}
}

// TestDeleteRevealedOnlyWhenDurable: while a delete's record is written
// but its sync is held, no other operation may answer that the stream is
// gone (a crash could still undo the delete): an append, a close, a read,
// a head, a wait and a second delete all wait; when the sync fails they
// answer the failure, not 404/410. Soft deletes (a fork keeps the source)
// likewise.
func TestDeleteRevealedOnlyWhenDurable(t *testing.T) {
	for _, soft := range []bool{false, true} {
		t.Run(fmt.Sprintf("soft=%v", soft), func(t *testing.T) {
			ctx := context.Background()
			fs := &heldSyncFS{FS: vfs.OS, waiting: make(chan struct{}), release: make(chan error)}
			e := openTest(t, t.TempDir(), &Options{FS: fs, CheckpointInterval: 1 << 40})
			mustCreate(t, e, "s", CreateOptions{})
			mustAppend(t, e, "s", "durable", AppendOptions{})
			if soft {
				mustCreate(t, e, "f", CreateOptions{ForkFrom: "s"})
			}
			fs.mu.Lock()
			fs.hold = true
			fs.mu.Unlock()
			deleted := make(chan error, 1)
			go func() { deleted <- e.Delete(ctx, "s") }()
			<-fs.waiting // the delete is written, its sync held
			ops := map[string]func() error{
				"append": func() error { _, err := e.Append(ctx, "s", []byte("x"), AppendOptions{}); return err },
				"close":  func() error { _, err := e.Append(ctx, "s", nil, AppendOptions{Close: true}); return err },
				"read": func() error {
					c, err := e.Read("s", ReadFrom{Kind: FromStart}, ReadOptions{})
					if err == nil {
						c.Release()
					}
					return err
				},
				"head":   func() error { _, err := e.Head("s"); return err },
				"wait":   func() error { return e.Wait(ctx, "s", 1<<40) },
				"delete": func() error { return e.Delete(ctx, "s") },
			}
			answers := make(chan string, len(ops))
			for name, op := range ops {
				go func() { answers <- fmt.Sprintf("%s: %v", name, op()) }()
			}
			select {
			case a := <-answers:
				t.Fatalf("answered before the delete was durable: %s", a)
			case <-time.After(100 * time.Millisecond):
			}
			fs.release <- syscall.EIO
			if err := <-deleted; !errors.Is(err, ErrFailed) {
				t.Fatalf("delete whose sync failed: %v", err)
			}
			for range ops {
				if a := <-answers; strings.Contains(a, ErrNotFound.Error()) || strings.Contains(a, "deleted but still referenced") {
					t.Errorf("after the delete's sync failed: %s (a delete that may be lost was revealed)", a)
				}
			}
		})
	}
}
