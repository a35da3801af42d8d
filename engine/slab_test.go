package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/durastream/durastream/vfs/errorfs"
)

func slabOpts() *Options {
	return &Options{WALSegmentSize: 64 << 10, MinSegmentSize: 4096, MaxSegmentSize: 64 << 10,
		LargeAppendBytes: 1024, CheckpointInterval: 1 << 40}
}

// smallSlabOpts is slabOpts with slab files of 8 slots.
func smallSlabOpts() *Options {
	o := slabOpts()
	o.slabFileBytes = 8 * 4096
	return o
}

// Streams whose first bytes fit a slot live in slab files, not files of
// their own, across restarts (from the checkpoint) and crashes (replay
// gives post-checkpoint streams their slots again); a stream that grows
// past its slot continues in files; deleted streams' slots are reused.
func TestSlabStreams(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, smallSlabOpts())
	want := map[string]string{}
	body := func(i, k int) string { return fmt.Sprintf("stream %d part %d;", i, k) }
	for i := range 30 {
		p := fmt.Sprintf("s%d", i)
		mustCreate(t, e, p, CreateOptions{Data: []byte(body(i, 0))})
		want[p] = body(i, 0)
		if i%3 == 0 {
			mustAppend(t, e, p, body(i, 1), AppendOptions{})
			want[p] += body(i, 1)
		}
		if i%5 == 0 { // past the slot: a file of its own next
			big := strings.Repeat(fmt.Sprint(i%10), 4000)
			mustAppend(t, e, p, big, AppendOptions{})
			want[p] += big
		}
		if i%4 == 1 { // large: by reference, in a file
			big := string(pattern(3000, byte(i)))
			mustAppend(t, e, p, big, AppendOptions{})
			want[p] += big
		}
	}
	check := func(e *Engine, what string) {
		t.Helper()
		for p, w := range want {
			if got := readAll(t, e, p); got != w {
				t.Fatalf("%s: %s = %q... (%d bytes), want %q... (%d bytes)", what, p, got[:min(len(got), 24)], len(got), w[:min(len(w), 24)], len(w))
			}
		}
		if n := streamFileCount(t, e); n >= len(want) {
			t.Fatalf("%s: %d segment files for %d streams", what, n, len(want))
		}
	}
	check(e, "live")
	slabs, _ := filepath.Glob(filepath.Join(dir, "streams", "slab.4096.*"))
	if len(slabs) != 4 { // 30 streams, 8 slots a file
		t.Fatalf("slab files %v", slabs)
	}
	crash1 := copyTree(t, dir) // no checkpoint yet: every slot comes from replay

	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i += 2 {
		p := fmt.Sprintf("s%d", i)
		if err := e.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
		delete(want, p)
	}
	if err := e.Checkpoint(); err != nil { // deleted streams' slots are reused after one
		t.Fatal(err)
	}
	for i := 30; i < 45; i++ { // into the freed slots
		p := fmt.Sprintf("s%d", i)
		mustCreate(t, e, p, CreateOptions{Data: []byte(body(i, 0))})
		want[p] = body(i, 0)
	}
	slabs, _ = filepath.Glob(filepath.Join(dir, "streams", "slab.4096.*"))
	if len(slabs) != 4 {
		t.Fatalf("freed slots not reused: slab files %v", slabs)
	}
	check(e, "after deletes")
	crash2 := copyTree(t, dir) // the checkpoint names slots the log then frees and reuses
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTest(t, dir, smallSlabOpts())
	check(e, "reopened")
	for i := 45; i < 60; i++ { // the reopened engine knows which slots are taken
		p := fmt.Sprintf("s%d", i)
		mustCreate(t, e, p, CreateOptions{Data: []byte(body(i, 0))})
		want[p] = body(i, 0)
	}
	check(e, "reopened, then new streams")
	e.Close()
	for i := 45; i < 60; i++ {
		delete(want, fmt.Sprintf("s%d", i))
	}
	e = openTest(t, crash2, smallSlabOpts())
	check(e, "crash after the deletes")
	e.Close()

	e = openTest(t, crash1, smallSlabOpts())
	defer e.Close()
	for i := 30; i < 45; i++ {
		delete(want, fmt.Sprintf("s%d", i))
	}
	for i := 0; i < 30; i += 2 {
		p := fmt.Sprintf("s%d", i)
		want[p] = readAll(t, e, p) // checked below
		w := body(i, 0)
		if i%3 == 0 {
			w += body(i, 1)
		}
		if !strings.HasPrefix(want[p], w) {
			t.Fatalf("crash before the checkpoint: %s = %q", p, want[p])
		}
	}
	check(e, "crash before the checkpoint")
}

// streamFileCount counts the engine's per-stream segment files.
func streamFileCount(t *testing.T, e *Engine) int {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(e.store.root, "*", "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return len(segs)
}

// A deleted stream's slot is not reused while a reader still holds its
// bytes: the reader keeps seeing them, and the slot is reused after.
func TestSlabSlotReuseWaitsForReaders(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), slabOpts())
	defer e.Close()
	mustCreate(t, e, "a", CreateOptions{Data: []byte("AAAA")})
	slotOf := func(p string) int64 {
		s, _ := e.streams.Load(p)
		slot, ok := s.data.segs[0].inSlab()
		if !ok {
			t.Fatalf("%s is not in a slab", p)
		}
		return slot
	}
	a := slotOf("a")
	c, err := e.Read("a", ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e, "b", CreateOptions{Data: []byte("BBBB")})
	if slotOf("b") == a {
		t.Fatal("a's slot reused while a reader holds it")
	}
	if got := string(c.Bytes()); got != "AAAA" {
		t.Fatalf("reader of the deleted stream sees %q", got)
	}
	c.Release()
	if err := e.Checkpoint(); err != nil { // deleted streams' slots are reused after one
		t.Fatal(err)
	}
	mustCreate(t, e, "c", CreateOptions{Data: []byte("CCCC")})
	if slotOf("c") != a {
		t.Fatalf("c got slot %d, not the freed %d", slotOf("c"), a)
	}
	for p, w := range map[string]string{"b": "BBBB", "c": "CCCC"} {
		if got := readAll(t, e, p); got != w {
			t.Fatalf("%s = %q", p, got)
		}
	}
}

// A full disk when the slabs need another file fails the create with
// ErrNoSpace and changes nothing; the create works once space returns.
func TestSlabFullDisk(t *testing.T) {
	fs := errorfs.New(nil)
	o := smallSlabOpts()
	o.FS = fs
	dir := t.TempDir()
	e := openTest(t, dir, o)
	for i := range 8 {
		mustCreate(t, e, fmt.Sprint(i), CreateOptions{Data: []byte("x")})
	}
	fs.Inject(errorfs.Rule{Op: errorfs.Fallocate, PathContains: "/streams/", Err: syscall.ENOSPC})
	if _, _, err := e.Create(context.Background(), "full", CreateOptions{Data: []byte("y")}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("create needing a slab file on a full disk: %v", err)
	}
	if _, err := e.Head("full"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed create left a stream: %v", err)
	}
	mustCreate(t, e, "empty", CreateOptions{}) // no bytes: no slot needed
	fs.Clear()
	mustCreate(t, e, "full", CreateOptions{Data: []byte("y")})
	e.Close()
	e = openTest(t, dir, smallSlabOpts())
	defer e.Close()
	if got := readAll(t, e, "full"); got != "y" {
		t.Fatalf("full = %q", got)
	}
}

// Slab files keep their slot size: after MinSegmentSize changes, old
// streams read from their slots and new first segments of another size
// get files of their own.
func TestSlabSlotSizeKept(t *testing.T) {
	dir := t.TempDir()
	e := openTest(t, dir, slabOpts())
	mustCreate(t, e, "old", CreateOptions{Data: []byte("in a 4 KiB slot")})
	e.Close()
	o := slabOpts()
	o.MinSegmentSize = 8192
	e = openTest(t, dir, o)
	defer e.Close()
	mustCreate(t, e, "new", CreateOptions{Data: []byte("in a file")})
	if got := readAll(t, e, "old"); got != "in a 4 KiB slot" {
		t.Fatalf("old = %q", got)
	}
	if n := streamFileCount(t, e); n != 1 {
		t.Fatalf("%d segment files, want 1 (new)", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "streams", "slab.8192.0")); err == nil {
		t.Fatal("a slab of the new size was made")
	}
}

// A slab file half made by a crash (still .tmp) is removed at Open; a
// slab file cut short is damage.
func TestSlabFilesAtOpen(t *testing.T) {
	dir := t.TempDir()
	e := openTest(t, dir, slabOpts())
	mustCreate(t, e, "s", CreateOptions{Data: []byte("kept")})
	e.Close()
	tmp := filepath.Join(dir, "streams", "slab.4096.1.tmp")
	if err := os.WriteFile(tmp, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	e = openTest(t, dir, slabOpts())
	if got := readAll(t, e, "s"); got != "kept" {
		t.Fatalf("s = %q", got)
	}
	e.Close()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover %s: %v", tmp, err)
	}
	// Cut after the checkpointed slot: made whole, the slot kept.
	slab0 := filepath.Join(dir, "streams", "slab.4096.0")
	if err := os.Truncate(slab0, 4096); err != nil {
		t.Fatal(err)
	}
	e = openTest(t, dir, slabOpts())
	if got := readAll(t, e, "s"); got != "kept" {
		t.Fatalf("after a repaired cut: s = %q", got)
	}
	e.Close()
	// Cut through a slot the checkpoint names: not a power cut's damage.
	if err := os.Truncate(slab0, 0); err != nil {
		t.Fatal(err)
	}
	if e, err := Open(dir, slabOpts()); err == nil {
		e.Close()
		t.Fatal("Open with a checkpointed slot cut off succeeded")
	} else if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a checkpointed slot cut off: %v, want ErrCorrupt", err)
	}
}

// A reader parked between its lookup and the pinning of the stream's
// segments (the readLookedUp hook) while the stream is deleted and its slab
// slot given to a new stream must answer ErrNotFound, never the new
// stream's bytes. The same for a stream whose segment is a file of its own
// (once deleted, the file is gone: ErrNotFound, not ErrCorrupt).
func TestReadRacingDeleteNeverSeesAnotherStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
	}{
		{"slab slot", "AAAA"},
		{"own file", strings.Repeat("A", 6000)}, // past a 4 KiB slot
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := openTest(t, t.TempDir(), slabOpts())
			defer e.Close()
			mustCreate(t, e, "a", CreateOptions{Data: []byte(tc.data)})
			parked, resume := make(chan struct{}), make(chan struct{})
			e.readLookedUp = func(path string) {
				if path == "a" {
					close(parked)
					<-resume
				}
			}
			type result struct {
				body string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				c, err := e.Read("a", ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 1 << 20})
				if err != nil {
					done <- result{err: err}
					return
				}
				defer c.Release()
				done <- result{body: string(c.Bytes())}
			}()
			<-parked
			s, _ := e.streams.Load("a")
			aSegs := s.data.segs
			if err := e.Delete(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if err := e.Checkpoint(); err != nil { // a's slot is reusable after it
				t.Fatal(err)
			}
			mustCreate(t, e, "b", CreateOptions{Data: []byte(strings.Repeat("B", len(tc.data)))})
			if b, _ := e.streams.Load("b"); aSegs[0].slab1 != 0 && b.data.segs[0].slab1 != aSegs[0].slab1 {
				close(resume) // let the reader finish: Close waits for it
				t.Fatalf("b did not get a's freed slot: the test does not exercise the race")
			}
			close(resume)
			r := <-done
			switch {
			case r.err == nil && r.body == tc.data:
			case errors.Is(r.err, ErrNotFound):
			default:
				t.Fatalf("read of the deleted stream: err %v, body %.40q (%d bytes)", r.err, r.body, len(r.body))
			}
		})
	}
}

// A slab file added after the last checkpoint that a power cut left short
// or empty (its reservation was zeros written without a sync) is made whole
// at Open and replay restores its slots: the server starts, nothing is lost.
func TestSlabShortFileRepairedFromLog(t *testing.T) {
	for _, size := range []int64{0, 4096 + 17} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			dir := t.TempDir()
			e := openTest(t, dir, smallSlabOpts())
			want := map[string]string{}
			for i := range 12 { // two slab files of 8 slots
				p := fmt.Sprintf("s%d", i)
				want[p] = fmt.Sprintf("stream %d's bytes", i)
				mustCreate(t, e, p, CreateOptions{Data: []byte(want[p])})
			}
			cut := copyTree(t, dir) // the commit log is synced; no checkpoint since
			e.Close()
			slab1 := filepath.Join(cut, "streams", "slab.4096.1")
			if err := os.Truncate(slab1, size); err != nil {
				t.Fatal(err)
			}
			if size == 0 { // the first file missing entirely, the second empty
				os.Remove(filepath.Join(cut, "streams", "slab.4096.0"))
			}
			e2 := openTest(t, cut, smallSlabOpts())
			defer e2.Close()
			for p, w := range want {
				if got := readAll(t, e2, p); got != w {
					t.Errorf("%s = %q, want %q", p, got, w)
				}
			}
		})
	}
}

// A stream deleted after a checkpoint wrote it, whose slot a newer stream
// (written later in the same checkpoint) would take: the checkpoint would
// list the slot twice and recovery refuse it ("slab slot used twice").
// Deleted streams' slots wait for the next checkpoint instead.
func TestSlabSlotOfStreamDeletedDuringCheckpoint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, slabOpts())
	mustCreate(t, e, "a", CreateOptions{Data: []byte("AAAA")})
	mustCreate(t, e, "b", CreateOptions{}) // written after a (ids ascend), no slot yet
	e.ckptSnapshotted = func(path string) {
		if path != "a" {
			return
		}
		if err := e.Delete(ctx, "a"); err != nil {
			t.Error(err)
		}
		if _, err := e.Append(ctx, "b", []byte("BBBB"), AppendOptions{}); err != nil {
			t.Error(err)
		}
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	e.ckptSnapshotted = nil
	crash := copyTree(t, dir) // the checkpoint, and the log with a's delete
	e.Close()
	e2, err := Open(crash, slabOpts())
	if err != nil {
		t.Fatalf("restart after a checkpoint that raced a delete: %v", err)
	}
	defer e2.Close()
	if got := readAll(t, e2, "b"); got != "BBBB" {
		t.Fatalf("b = %q", got)
	}
	if _, err := e2.Head("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a after restart: %v", err)
	}
}

// Recovery that deletes the last fork of a soft-deleted source removes the
// source too; the source is not in the stream table then, and removing it
// must not leave a nil entry there (a later Range dereferenced it).
func TestRecoverRemovesSoftDeletedSourceCleanly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, slabOpts())
	mustCreate(t, e, "src", CreateOptions{Data: []byte("shared")})
	mustCreate(t, e, "fork", CreateOptions{ForkFrom: "src"})
	if err := e.Delete(ctx, "src"); err != nil { // soft: the fork reads it
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := e.Delete(ctx, "fork"); err != nil { // replayed after the checkpoint
		t.Fatal(err)
	}
	crash := copyTree(t, dir)
	e.Close()
	e2 := openTest(t, crash, slabOpts())
	defer e2.Close()
	mustCreate(t, e2, "new", CreateOptions{Data: []byte("x")})
	if err := e2.Checkpoint(); err != nil { // ranges over the table
		t.Fatal(err)
	}
	for _, p := range []string{"src", "fork"} {
		if _, err := e2.Head(p); err == nil {
			t.Fatalf("%s exists after restart", p)
		}
	}
}
