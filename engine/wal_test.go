package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// walFiles returns the base LSNs of the commit-log files in dir/wal.
func walFiles(t *testing.T, dir string) []uint64 {
	t.Helper()
	bases, err := listWAL(filepath.Join(dir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	return bases
}

// activeWALBase returns the base LSN of the active commit-log segment.
func activeWALBase(e *Engine) uint64 {
	e.wal.mu.Lock()
	defer e.wal.mu.Unlock()
	return e.wal.segs[len(e.wal.segs)-1].base
}

func TestWALRolloverAndCheckpoint(t *testing.T) {
	o := smallOpts(DurabilitySync)
	e, dir := startEngine(t, o)
	const nStreams = 10
	want := make([]strings.Builder, nStreams)
	for i := range nStreams {
		mustCreate(t, e, fmt.Sprint("s", i), CreateOptions{})
	}
	rng := rand.New(rand.NewPCG(9, 10))
	maxFiles := 0
	checkpoints := 0
	var written, appends int
	for written < 1_200_000 {
		i := rng.IntN(nStreams)
		n := 1 + rng.IntN(4000)
		chunk := strings.Repeat(string(rune('a'+rng.IntN(26))), n)
		mustAppend(t, e, fmt.Sprint("s", i), chunk, AppendOptions{})
		want[i].WriteString(chunk)
		written += n
		appends++
		if appends%150 == 0 {
			maxFiles = max(maxFiles, len(walFiles(t, dir)))
			if err := e.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			checkpoints++
			active := activeWALBase(e)
			files := walFiles(t, dir)
			for _, b := range files {
				if b < active {
					t.Fatalf("after checkpoint: WAL file %d precedes the active segment %d (files %v)", b, active, files)
				}
			}
			if len(files) > 3 {
				t.Fatalf("after checkpoint: %d WAL files %v", len(files), files)
			}
		}
	}
	if checkpoints < 3 || maxFiles < 4 {
		t.Fatalf("test did not exercise rollover: %d checkpoints, at most %d WAL files", checkpoints, maxFiles)
	}
	// A crash image with a commit-log tail after the last checkpoint.
	img := copyTree(t, dir)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]string{"reopen": dir, "crash image": img} {
		t.Run(name, func(t *testing.T) {
			e := startEngineIn(t, d, o)
			for i := range nStreams {
				if got := readString(t, e, fmt.Sprint("s", i)); got != want[i].String() {
					t.Fatalf("stream %d: %d bytes, want %d", i, len(got), want[i].Len())
				}
			}
			// Writing continues where the log ended.
			mustAppend(t, e, "s0", "more", AppendOptions{})
			if got := readString(t, e, "s0"); got != want[0].String()+"more" {
				t.Fatal("append after recovery")
			}
		})
	}
}

func TestWALRecordLargerThanSegment(t *testing.T) {
	o := smallOpts(DurabilitySync)
	e, dir := startEngine(t, o)
	mustCreate(t, e, "s", CreateOptions{Data: []byte("head:")})
	mustAppend(t, e, "s", strings.Repeat("small", 1000), AppendOptions{}) // part-fill a segment
	huge := strings.Repeat("H", 200<<10)                                  // > WALSegmentSize
	res := mustAppend(t, e, "s", huge, AppendOptions{})
	mustAppend(t, e, "s", ":tail", AppendOptions{})
	huge2 := strings.Repeat("J", 3*(64<<10)) // two in a row
	mustAppend(t, e, "s", huge2, AppendOptions{})
	mustCreate(t, e, "big", CreateOptions{Data: []byte(huge)}) // a huge create record
	want := "head:" + strings.Repeat("small", 1000) + huge + ":tail" + huge2
	if res.Tail != Offset(5+5000+len(huge)) {
		t.Fatalf("tail %d", res.Tail)
	}
	if got := readString(t, e, "s"); got != want {
		t.Fatal("content before restart")
	}
	img := copyTree(t, dir) // replay-only crash image
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]string{"reopen": dir, "crash image": img} {
		t.Run(name, func(t *testing.T) {
			e := startEngineIn(t, d, o)
			if got := readString(t, e, "s"); got != want {
				t.Fatalf("content after %s: %d bytes, want %d", name, len(got), len(want))
			}
			if got := readString(t, e, "big"); got != huge {
				t.Fatal("huge create after restart")
			}
			mustAppend(t, e, "s", "!", AppendOptions{})
			mustAppend(t, e, "s", huge, AppendOptions{})
			if got := readString(t, e, "s"); got != want+"!"+huge {
				t.Fatal("appends after restart")
			}
		})
	}
}

func TestRecoveryTornTail(t *testing.T) {
	o := smallOpts(DurabilitySync)
	e, dir := startEngine(t, o)
	mustCreate(t, e, "s", CreateOptions{})
	for i := range 50 {
		mustAppend(t, e, "s", fmt.Sprintf("<%02d>", i), AppendOptions{})
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 60; i++ {
		mustAppend(t, e, "s", fmt.Sprintf("<%02d>", i), AppendOptions{})
	}
	e.wal.mu.Lock()
	active := e.wal.segs[len(e.wal.segs)-1]
	lastByte := active.base + uint64(e.wal.pos) - 1
	e.wal.mu.Unlock()
	img := copyTree(t, dir)
	// Tear the last record: flip its last payload byte.
	p := filepath.Join(img, "wal", walName(active.base))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := int64(lastByte - active.base)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	e2 := startEngineIn(t, img, o)
	var want strings.Builder
	for i := range 59 {
		fmt.Fprintf(&want, "<%02d>", i)
	}
	if got := readString(t, e2, "s"); got != want.String() {
		t.Fatalf("after torn tail: %q", got)
	}
	// New appends land at the recovered tail and survive another restart.
	mustAppend(t, e2, "s", "<new>", AppendOptions{})
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	e3 := startEngineIn(t, img, o)
	if got := readString(t, e3, "s"); got != want.String()+"<new>" {
		t.Fatalf("after restart: %q", got)
	}
}

func TestConcurrentAppends(t *testing.T) {
	const (
		goroutines = 64
		streams    = 8
		perG       = 40
	)
	for _, ct := range []string{"application/octet-stream", "application/json"} {
		t.Run(ct, func(t *testing.T) {
			forEachMode(t, func(t *testing.T, mode Durability) {
				e, dir := startEngine(t, smallOpts(mode))
				for i := range streams {
					mustCreate(t, e, fmt.Sprint("c", i), CreateOptions{ContentType: ct})
				}
				json := ct == "application/json"
				type result struct {
					tail Offset
					msg  string
				}
				var mu sync.Mutex
				results := make([][]result, streams)
				before := e.Stats()
				// In sync mode, checkpoints run all along.
				stopCkpt := make(chan struct{})
				ckptDone := make(chan error, 1)
				go func() {
					var err error
					for err == nil && mode == DurabilitySync {
						select {
						case <-stopCkpt:
							ckptDone <- nil
							return
						case <-time.After(10 * time.Millisecond):
						}
						err = e.Checkpoint()
					}
					if err == nil {
						<-stopCkpt
					}
					ckptDone <- err
				}()
				err := inParallel(goroutines, func(g int) error {
					rng := rand.New(rand.NewPCG(uint64(g), 11))
					for i := range perG {
						si := rng.IntN(streams)
						msg := fmt.Sprintf("g%02d-%03d%s", g, i, strings.Repeat("x", rng.IntN(40)))
						body := msg
						if json {
							body = `"` + msg + `"`
						}
						res, err := e.Append(context.Background(), fmt.Sprint("c", si), []byte(body), AppendOptions{})
						if err != nil {
							return err
						}
						mu.Lock()
						results[si] = append(results[si], result{res.Tail, msg})
						mu.Unlock()
					}
					return nil
				})
				close(stopCkpt)
				if err := <-ckptDone; err != nil {
					t.Fatalf("concurrent checkpoint: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				var img string
				if mode == DurabilitySync {
					img = copyTree(t, dir)
				}
				for si := range streams {
					rs := results[si]
					slices.SortFunc(rs, func(a, b result) int { return cmpU64(uint64(a.tail), uint64(b.tail)) })
					var want strings.Builder
					var msgs []string
					prev := Offset(0)
					for k, r := range rs {
						if k > 0 && r.tail == rs[k-1].tail {
							t.Fatalf("stream %d: tail %d returned twice", si, r.tail)
						}
						size := len(r.msg)
						if json {
							size = len(r.msg) + 3 // quotes and the stored comma
						}
						if r.tail != prev+Offset(size) {
							t.Fatalf("stream %d: append %q ends at %d, previous tail %d", si, r.msg, r.tail, prev)
						}
						prev = r.tail
						want.WriteString(r.msg)
						msgs = append(msgs, r.msg)
					}
					got := readString(t, e, fmt.Sprint("c", si))
					if json {
						var arr []string
						if err := jsonUnmarshalStrings(got, &arr); err != nil {
							t.Fatalf("stream %d: %v", si, err)
						}
						if !slices.Equal(arr, msgs) {
							t.Fatalf("stream %d: messages not in tail order", si)
						}
					} else if got != want.String() {
						t.Fatalf("stream %d: content is not the appends in tail order", si)
					}
				}
				if mode == DurabilitySync {
					st := e.Stats()
					fs, recs := st.Fsyncs-before.Fsyncs, st.CommitRecords-before.CommitRecords
					if recs < goroutines*perG {
						t.Fatalf("CommitRecords grew by %d, want >= %d", recs, goroutines*perG)
					}
					if fs >= goroutines*perG {
						t.Fatalf("Fsyncs grew by %d for %d appends: no group commit", fs, goroutines*perG)
					}
					t.Logf("%d appends, %d fsyncs (%.1f records per fsync)", goroutines*perG, fs, float64(recs)/float64(max(fs, 1)))
					// The crash image taken after the checkpoints recovers everything.
					e2 := startEngineIn(t, img, smallOpts(mode))
					for si := range streams {
						p := fmt.Sprint("c", si)
						if got, want := readString(t, e2, p), readString(t, e, p); got != want {
							t.Fatalf("stream %d differs in the crash image (%d vs %d bytes)", si, len(got), len(want))
						}
					}
				}
			})
		})
	}
}

func jsonUnmarshalStrings(s string, v *[]string) error { return json.Unmarshal([]byte(s), v) }

// TestConcurrentCreateAppendDelete mixes operations on shared paths; it is
// mainly a target for the race detector and a check that nothing deadlocks.
func TestConcurrentCreateAppendDelete(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		ctx := context.Background()
		mustCreate(t, e, "root", CreateOptions{Data: []byte("root")})
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 12))
				for range 60 {
					p := fmt.Sprint("p", rng.IntN(4))
					switch rng.IntN(6) {
					case 0:
						e.Create(ctx, p, CreateOptions{})
					case 1:
						e.Create(ctx, p, CreateOptions{ForkFrom: "root"})
					case 2:
						e.Delete(ctx, p)
					case 3:
						if c, err := e.Read(p, ReadFrom{Kind: FromStart}, ReadOptions{}); err == nil {
							_ = c.Bytes()
							c.Release()
						}
					default:
						e.Append(ctx, p, []byte("data"), AppendOptions{})
					}
				}
			}()
		}
		wg.Wait()
		if got := readString(t, e, "root"); got != "root" {
			t.Fatalf("root %q", got)
		}
		if mode == DurabilitySync {
			if err := e.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestWALLiveSegmentFilesKept: every commit-log segment the log still uses
// must exist on disk, however fast segments fill. Back-to-back records
// larger than a segment roll the log before the background preparer has
// finished the spare for the previous rollover.
func TestWALLiveSegmentFilesKept(t *testing.T) {
	o := smallOpts(DurabilitySync)
	e, dir := startEngine(t, o)
	mustCreate(t, e, "s", CreateOptions{})
	var want strings.Builder
	huge := strings.Repeat("H", 70<<10)
	for i := range 12 {
		for _, chunk := range []string{huge, fmt.Sprintf("<%d>", i)} {
			mustAppend(t, e, "s", chunk, AppendOptions{})
			want.WriteString(chunk)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the preparer settle
	e.wal.mu.Lock()
	var missing []string
	for _, s := range e.wal.segs {
		if _, err := os.Stat(s.path); err != nil {
			missing = append(missing, filepath.Base(s.path))
		}
	}
	e.wal.mu.Unlock()
	if len(missing) > 0 {
		t.Errorf("commit-log segments in use were deleted from disk: %v", missing)
	}
	img := copyTree(t, dir)
	e2 := startEngineIn(t, img, o)
	if got := readString(t, e2, "s"); got != want.String() {
		t.Fatalf("crash image recovered %d of %d acknowledged bytes", len(got), want.Len())
	}
}

// TestWALBigBatches: batches larger than the buffer the committer keeps for
// reuse (maxSpareBatch) are written whole and never share memory with the
// batch that follows; everything acknowledged reads back after a restart.
func TestWALBigBatches(t *testing.T) {
	const goroutines, perG, size = 32, 8, 200 << 10 // records carry their data: below LargeAppendBytes
	ctx := context.Background()
	dir := t.TempDir()
	e := openTest(t, dir, nil)
	for g := range goroutines {
		mustCreate(t, e, fmt.Sprint("b", g), CreateOptions{})
	}
	err := inParallel(goroutines, func(g int) error {
		for i := range perG {
			if _, err := e.Append(ctx, fmt.Sprint("b", g), pattern(size, byte(g*perG+i)), AppendOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(e *Engine) {
		t.Helper()
		for g := range goroutines {
			var want []byte
			for i := range perG {
				want = append(want, pattern(size, byte(g*perG+i))...)
			}
			if got := readAll(t, e, fmt.Sprint("b", g)); got != string(want) {
				t.Fatalf("stream b%d: %d bytes read back, want %d (or different bytes)", g, len(got), len(want))
			}
		}
	}
	check(e)
	if st := e.Stats(); st.CommitRecords <= st.Fsyncs {
		t.Logf("no batch held more than one record (%d records, %d syncs)", st.CommitRecords, st.Fsyncs)
	}
	e.Close()
	e = openTest(t, dir, nil)
	defer e.Close()
	check(e)
}
