package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/vfs"
)

// mappedUnder counts this process's mappings of files under dir.
func mappedUnder(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps")
	}
	return strings.Count(string(b), dir)
}

// An append admitted before Close whose record is not written yet (parked
// by a hook) completes durably: Close waits for it instead of stopping the
// commit log under it (the append then waited forever). Operations after
// Close get ErrEngineClosed and map nothing.
func TestCloseWaitsForAppendInFlight(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, slabOpts())
	mustCreate(t, e, "a", CreateOptions{Data: []byte("one;")})
	parked, resume := make(chan struct{}), make(chan struct{})
	e.appendLookedUp = func(string) {
		close(parked)
		<-resume
	}
	appended := make(chan error, 1)
	go func() {
		_, err := e.Append(ctx, "a", []byte("two;"), AppendOptions{})
		appended <- err
	}()
	<-parked
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an append was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(resume)
	select {
	case err := <-appended:
		if err != nil {
			t.Fatalf("the append in flight: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the append in flight hangs")
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := e.Read("a", ReadFrom{Kind: FromStart}, ReadOptions{}); !errors.Is(err, ErrEngineClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := e.Head("a"); !errors.Is(err, ErrEngineClosed) {
		t.Fatalf("Head after Close: %v", err)
	}
	if n := mappedUnder(t, dir); n != 0 {
		t.Fatalf("%d mappings of the data directory after Close", n)
	}
	e2 := openTest(t, dir, slabOpts())
	defer e2.Close()
	if got := readAll(t, e2, "a"); got != "one;two;" {
		t.Fatalf("after reopen: %q", got)
	}
}

// Close while writers, readers and live waiters run: every operation
// returns (success or ErrEngineClosed, nothing hangs), every acknowledged
// append is there after reopening, and nothing stays mapped.
func TestCloseUnderLoad(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			dir := t.TempDir()
			e := openTest(t, dir, slabOpts())
			ctx := context.Background()
			const streams = 8
			for i := range streams {
				mustCreate(t, e, fmt.Sprintf("s%d", i), CreateOptions{})
			}
			var mu sync.Mutex
			acked := map[string]string{}
			var wg sync.WaitGroup
			stop := time.Now().Add(time.Duration(20+round*15) * time.Millisecond)
			for w := range 6 {
				wg.Go(func() {
					p := fmt.Sprintf("s%d", w%streams)
					for k := 0; ; k++ {
						msg := fmt.Sprintf("<%d:%d>", w, k)
						if k%7 == 3 {
							msg = strings.Repeat("L", 2000) // past the slab slot: files of its own
						}
						_, err := e.Append(ctx, p, []byte(msg), AppendOptions{})
						if errors.Is(err, ErrEngineClosed) {
							return
						}
						if err != nil {
							t.Errorf("append: %v", err)
							return
						}
						mu.Lock()
						acked[p] += msg
						mu.Unlock()
					}
				})
			}
			for r := range 4 {
				wg.Go(func() {
					p := fmt.Sprintf("s%d", r)
					for {
						c, err := e.Read(p, ReadFrom{Kind: FromStart}, ReadOptions{})
						if errors.Is(err, ErrEngineClosed) {
							return
						}
						if err != nil {
							t.Errorf("read: %v", err)
							return
						}
						next := c.Next
						c.Release()
						werr := e.Wait(ctx, p, next)
						if errors.Is(werr, ErrEngineClosed) {
							return
						}
					}
				})
			}
			time.Sleep(time.Until(stop))
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("operations hang after Close")
			}
			if n := mappedUnder(t, dir); n != 0 {
				t.Fatalf("%d mappings of the data directory after Close", n)
			}
			e2 := openTest(t, dir, slabOpts())
			defer e2.Close()
			for i := range streams {
				p := fmt.Sprintf("s%d", i)
				if got := readAll(t, e2, p); !strings.HasPrefix(got, acked[p]) || len(got) != len(acked[p]) {
					t.Fatalf("%s after reopen: %d bytes, %d acknowledged", p, len(got), len(acked[p]))
				}
			}
		})
	}
}

// An append whose ctx ends while it waits for the group commit returns
// ctx.Err(); it still becomes durable and visible (finished in the
// background), and Close waits for that.
func TestAppendCtxAbandoned(t *testing.T) {
	dir := t.TempDir()
	slow := &slowSyncFS{FS: vfs.OS}
	o := slabOpts()
	o.FS = slow
	e := openTest(t, dir, o)
	mustCreate(t, e, "a", CreateOptions{})
	slow.delay.Store(int64(200 * time.Millisecond)) // the commit outlasts the cancel
	ctx, cancel := context.WithCancel(context.Background())
	e.appendLookedUp = func(string) { cancel() } // ends before the commit
	if _, err := e.Append(ctx, "a", []byte("maybe"), AppendOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with its ctx ended: %v", err)
	}
	e.appendLookedUp = nil
	slow.delay.Store(0)
	if err := e.Wait(context.Background(), "a", 0); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, e, "a"); got != "maybe" {
		t.Fatalf("the abandoned append: %q", got)
	}
	if _, err := e.Append(ctx, "a", []byte("never"), AppendOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a ctx already done: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openTest(t, dir, slabOpts())
	defer e2.Close()
	if got := readAll(t, e2, "a"); got != "maybe" {
		t.Fatalf("after reopen: %q", got)
	}
}

// A Create or Delete whose ctx ends while its record is being synced
// returns ctx.Err(); the record was committed, so the operation still
// takes effect (the documented "outcome unknown"), and a reopen agrees.
func TestCreateDeleteCtxAbandoned(t *testing.T) {
	dir := t.TempDir()
	slow := &slowSyncFS{FS: vfs.OS, syncing: make(chan struct{}, 1)}
	e := openTest(t, dir, &Options{FS: slow, CheckpointInterval: 1 << 40})
	abandon := func(op func(ctx context.Context) error) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		slow.delay.Store(int64(200 * time.Millisecond))
		defer slow.delay.Store(0)
		for len(slow.syncing) > 0 {
			<-slow.syncing
		}
		go func() { <-slow.syncing; cancel() }() // the record is committed and being synced
		return op(ctx)
	}
	err := abandon(func(ctx context.Context) error {
		_, _, err := e.Create(ctx, "a", CreateOptions{Data: []byte("created")})
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("create with its ctx ended during the sync: %v", err)
	}
	// It becomes visible once its record is durable, in the background.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := e.Head("a"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the abandoned create did not take effect: %v", err)
		}
	}
	if got := readAll(t, e, "a"); got != "created" {
		t.Fatalf("the abandoned create: %q", got)
	}
	mustCreate(t, e, "b", CreateOptions{Data: []byte("deleted")})
	if err := abandon(func(ctx context.Context) error { return e.Delete(ctx, "b") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("delete with its ctx ended during the sync: %v", err)
	}
	if _, err := e.Head("b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the abandoned delete: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := e.Create(ctx, "c", CreateOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("create with a ctx already done: %v", err)
	}
	if err := e.Delete(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("delete with a ctx already done: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := openTest(t, dir, nil)
	defer e2.Close()
	if got := readAll(t, e2, "a"); got != "created" {
		t.Fatalf("after reopen: a = %q", got)
	}
	for _, p := range []string{"b", "c"} {
		if _, err := e2.Head(p); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after reopen: %s: %v", p, err)
		}
	}
}

// slowSyncFS delays every fdatasync by delay nanoseconds, and tells
// syncing (when set) that a sync began.
type slowSyncFS struct {
	vfs.FS
	delay   atomic.Int64
	syncing chan struct{}
}

func (f *slowSyncFS) Fdatasync(file *os.File) error {
	if f.syncing != nil {
		select {
		case f.syncing <- struct{}{}:
		default:
		}
	}
	time.Sleep(time.Duration(f.delay.Load()))
	return f.FS.Fdatasync(file)
}
