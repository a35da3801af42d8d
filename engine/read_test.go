package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readChunk reads and copies a chunk, failing the test on error.
func readChunk(t *testing.T, e *Engine, path string, from ReadFrom, max int64) (*Chunk, string) {
	t.Helper()
	c, err := e.Read(path, from, ReadOptions{MaxBytes: max})
	if err != nil {
		t.Fatalf("Read(%q, %+v, %d): %v", path, from, max, err)
	}
	body := string(c.Bytes())
	if int64(len(body)) != c.Len() {
		t.Fatalf("Len() = %d, body is %d bytes", c.Len(), len(body))
	}
	var n int
	for _, d := range c.Data() {
		n += len(d)
	}
	if Offset(n) != c.Next-c.Start {
		t.Fatalf("Data() holds %d bytes, Next-Start = %d", n, c.Next-c.Start)
	}
	c.Release()
	c.Release() // idempotent
	return c, body
}

func TestReadPositions(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		mustCreate(t, e, "bin", CreateOptions{ContentType: "text/plain", Data: []byte("hello ")})
		mustAppend(t, e, "bin", "world", AppendOptions{})
		mustCreate(t, e, "json", CreateOptions{ContentType: "application/json", Data: []byte(`[1,"two"]`)})
		mustCreate(t, e, "ejson", CreateOptions{ContentType: "application/json"})
		mustCreate(t, e, "closed", CreateOptions{Data: []byte("0123456789"), Closed: true})
		mustCreate(t, e, "empty", CreateOptions{})
		tests := []struct {
			name        string
			path        string
			from        ReadFrom
			max         int64
			want        string
			start, next Offset
			upToDate    bool
			closed      bool
			wantErr     error
		}{
			{"start", "bin", ReadFrom{Kind: FromStart}, 0, "hello world", 0, 11, true, false, nil},
			{"start ignores offset", "bin", ReadFrom{Kind: FromStart, Offset: 5}, 0, "hello world", 0, 11, true, false, nil},
			{"now", "bin", ReadFrom{Kind: FromNow}, 0, "", 11, 11, true, false, nil},
			{"offset", "bin", At(6), 0, "world", 6, 11, true, false, nil},
			{"offset zero", "bin", At(0), 0, "hello world", 0, 11, true, false, nil},
			{"offset at tail", "bin", At(11), 0, "", 11, 11, true, false, nil},
			{"offset past tail", "bin", At(12), 0, "", 0, 0, false, false, ErrOffsetPastEnd},
			{"far past tail", "bin", At(1 << 40), 0, "", 0, 0, false, false, ErrOffsetPastEnd},
			{"paged", "bin", At(2), 4, "llo ", 2, 6, false, false, nil},
			{"missing", "nope", ReadFrom{Kind: FromStart}, 0, "", 0, 0, false, false, ErrNotFound},
			{"json start", "json", ReadFrom{Kind: FromStart}, 0, `[1,"two"]`, 0, 8, true, false, nil},
			{"json second message", "json", At(2), 0, `["two"]`, 2, 8, true, false, nil},
			{"json now is []", "json", ReadFrom{Kind: FromNow}, 0, `[]`, 8, 8, true, false, nil},
			{"json at tail is []", "json", At(8), 0, `[]`, 8, 8, true, false, nil},
			{"json empty stream is []", "ejson", ReadFrom{Kind: FromStart}, 0, `[]`, 0, 0, true, false, nil},
			{"empty stream", "empty", ReadFrom{Kind: FromStart}, 0, "", 0, 0, true, false, nil},
			{"closed whole", "closed", ReadFrom{Kind: FromStart}, 0, "0123456789", 0, 10, true, true, nil},
			{"closed first page not closed", "closed", ReadFrom{Kind: FromStart}, 4, "0123", 0, 4, false, false, nil},
			{"closed last page", "closed", At(8), 4, "89", 8, 10, true, true, nil},
			{"closed now", "closed", ReadFrom{Kind: FromNow}, 0, "", 10, 10, true, true, nil},
			{"closed at final offset", "closed", At(10), 0, "", 10, 10, true, true, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c, err := e.Read(tc.path, tc.from, ReadOptions{MaxBytes: tc.max})
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if err != nil {
					return
				}
				defer c.Release()
				got := string(c.Bytes())
				if got != tc.want || c.Start != tc.start || c.Next != tc.next || c.UpToDate != tc.upToDate || c.Closed != tc.closed {
					t.Fatalf("got %q start %d next %d upToDate %v closed %v\nwant %q start %d next %d upToDate %v closed %v",
						got, c.Start, c.Next, c.UpToDate, c.Closed, tc.want, tc.start, tc.next, tc.upToDate, tc.closed)
				}
				h, _ := e.Head(tc.path)
				if c.ContentType != h.ContentType || c.JSON != isJSON(h.ContentType) {
					t.Fatalf("chunk content type %q json %v, stream %q", c.ContentType, c.JSON, h.ContentType)
				}
				if c.Len() != int64(len(got)) {
					t.Fatalf("Len %d, body %d", c.Len(), len(got))
				}
			})
		}
	})
}

// TestReadBinaryPaging pages through a stream that spans many segments
// (and, in sync mode, more segments than may stay mapped).
func TestReadBinaryPaging(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		o := smallOpts(mode)
		o.MaxMappedSegments = 16
		e, _ := startEngine(t, o)
		mustCreate(t, e, "s", CreateOptions{})
		rng := rand.New(rand.NewPCG(1, 2))
		var want []byte
		for len(want) < 150_000 {
			n := 1 + rng.IntN(3000)
			if rng.IntN(20) == 0 {
				n = 5000 + rng.IntN(5000) // larger than MaxSegmentSize
			}
			chunk := make([]byte, n)
			for i := range chunk {
				chunk[i] = byte('a' + rng.IntN(26))
			}
			mustAppend(t, e, "s", string(chunk), AppendOptions{})
			want = append(want, chunk...)
		}
		if st := e.Stats(); mode == DurabilitySync && st.MappedSegments > 64 {
			t.Fatalf("MappedSegments = %d, bound is 16", st.MappedSegments)
		}
		if got := readString(t, e, "s"); got != string(want) {
			t.Fatal("whole read differs")
		}
		for _, max := range []int64{1, 7, 100, 4095, 4096, 4097, 10000} {
			t.Run(fmt.Sprint("max=", max), func(t *testing.T) {
				var got []byte
				next := Offset(0)
				pages := 0
				for {
					c, body := readChunk(t, e, "s", At(next), max)
					if c.Start != next {
						t.Fatalf("page start %d, want %d", c.Start, next)
					}
					remaining := int64(len(want)) - int64(next)
					if wantLen := min(max, remaining); int64(c.Next-c.Start) != wantLen {
						t.Fatalf("page at %d: %d bytes, want exactly %d", next, c.Next-c.Start, wantLen)
					}
					got = append(got, body...)
					next = c.Next
					pages++
					if c.UpToDate {
						break
					}
					if max < 100 && pages > 200 {
						// Tiny pages: spot-check a prefix only, then jump.
						next = Offset(len(want) - 50)
						got = append(got[:0], want[:next]...)
						pages = 0
						max = 101
					}
				}
				if !bytes.Equal(got, want) {
					t.Fatal("paged content differs")
				}
			})
		}
		// Random reads from arbitrary offsets.
		for range 200 {
			from := Offset(rng.IntN(len(want) + 1))
			max := int64(1 + rng.IntN(20000))
			c, body := readChunk(t, e, "s", At(from), max)
			end := min(int(from)+int(max), len(want))
			if body != string(want[from:end]) || c.Next != Offset(end) {
				t.Fatalf("read from %d max %d: %d bytes, next %d", from, max, len(body), c.Next)
			}
		}
	})
}

// jsonTestMessages returns n compact JSON messages of varied sizes and
// shapes (commas, brackets and quotes inside strings, nested arrays), plus
// one message larger than any page size used.
func jsonTestMessages(rng *rand.Rand, n int) []string {
	var msgs []string
	for i := range n {
		var v any
		switch i % 5 {
		case 0:
			v = map[string]any{"i": i, "s": strings.Repeat("x,]}\"", rng.IntN(40))}
		case 1:
			v = []any{i, []int{1, 2, 3}, map[string]string{"a": "[,]"}}
		case 2:
			v = i
		case 3:
			v = fmt.Sprintf("str %d \\ %s", i, strings.Repeat("y", rng.IntN(300)))
		default:
			v = map[string]any{"nested": map[string]any{"deep": []any{i, "a,b", nil, true}}}
		}
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		msgs = append(msgs, string(b))
		if i == n/2 {
			msgs = append(msgs, `{"big":"`+strings.Repeat("B", 2000)+`"}`)
		}
	}
	return msgs
}

// appendJSONBatches appends msgs in batches of random sizes.
func appendJSONBatches(t *testing.T, e *Engine, path string, rng *rand.Rand, msgs []string) {
	t.Helper()
	for i := 0; i < len(msgs); {
		n := min(1+rng.IntN(8), len(msgs)-i)
		mustAppend(t, e, path, "["+strings.Join(msgs[i:i+n], ", ")+"]", AppendOptions{})
		i += n
	}
}

// checkJSONPaging pages through a JSON stream: every page is a valid JSON
// array cut on a message boundary, at most max stored bytes unless it holds a
// single message, and as large as allowed; the pages' messages concatenate
// to want.
func checkJSONPaging(t *testing.T, e *Engine, path string, want []string, max int64) {
	t.Helper()
	var got []string
	next := Offset(0)
	for {
		c, body := readChunk(t, e, path, At(next), max)
		var page []json.RawMessage
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatalf("max %d: page at %d is not a JSON array: %v\n%.200s", max, next, err, body)
		}
		stored := int64(c.Next - c.Start)
		size := int64(0)
		for _, m := range page {
			got = append(got, string(m))
			size += int64(len(m)) + 1
		}
		if size != stored {
			t.Fatalf("max %d: page at %d: messages take %d stored bytes, Next-Start = %d", max, next, size, stored)
		}
		if stored > max && len(page) != 1 {
			t.Fatalf("max %d: page at %d has %d bytes in %d messages", max, next, stored, len(page))
		}
		if !c.UpToDate {
			if len(page) == 0 {
				t.Fatalf("max %d: empty page at %d before the tail", max, next)
			}
			// Maximal: the next message would not have fit.
			if k := len(got); k < len(want) && stored+int64(len(want[k]))+1 <= max {
				t.Fatalf("max %d: page at %d stops at %d bytes, but the next message (%d bytes) fits", max, next, stored, len(want[k])+1)
			}
		}
		next = c.Next
		if c.UpToDate {
			break
		}
	}
	if len(got) != len(want) {
		t.Fatalf("max %d: %d messages, want %d", max, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("max %d: message %d = %.80s, want %.80s", max, i, got[i], want[i])
		}
	}
}

func TestReadJSONPaging(t *testing.T) {
	for _, every := range []uint64{64, 4096} {
		t.Run(fmt.Sprint("indexEvery=", every), func(t *testing.T) {
			forEachMode(t, func(t *testing.T, mode Durability) {
				o := smallOpts(mode)
				o.IndexEvery = every
				e, _ := startEngine(t, o)
				rng := rand.New(rand.NewPCG(3, 4))
				msgs := jsonTestMessages(rng, 300)
				mustCreate(t, e, "j", CreateOptions{ContentType: "application/json"})
				appendJSONBatches(t, e, "j", rng, msgs)
				whole := readString(t, e, "j")
				if whole != "["+strings.Join(msgs, ",")+"]" {
					t.Fatal("whole read differs")
				}
				for _, max := range []int64{1, 50, 256, 1000, 3000, 1 << 20} {
					checkJSONPaging(t, e, "j", msgs, max)
				}

				// A fork at a message boundary in the middle, with its own appends:
				// pages straddle the fork point and stay on boundaries.
				mid := 150
				off := Offset(0)
				for _, m := range msgs[:mid] {
					off += Offset(len(m) + 1)
				}
				mustCreate(t, e, "jf", CreateOptions{ForkFrom: "j", ForkOffset: offPtr(off)})
				more := jsonTestMessages(rng, 100)
				appendJSONBatches(t, e, "jf", rng, more)
				want := append(append([]string{}, msgs[:mid]...), more...)
				for _, max := range []int64{1, 50, 256, 1000, 3000} {
					checkJSONPaging(t, e, "jf", want, max)
				}
				// A fork by sub-offset (message count) from an anchor.
				mustCreate(t, e, "js", CreateOptions{ForkFrom: "j", ForkOffset: offPtr(0), ForkSubOffset: 77})
				mustAppend(t, e, "js", `"tail"`, AppendOptions{})
				want = append(append([]string{}, msgs[:77]...), `"tail"`)
				for _, max := range []int64{1, 300} {
					checkJSONPaging(t, e, "js", want, max)
				}
			})
		})
	}
}

func TestReadSpansManySegments(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		o := smallOpts(mode)
		o.MaxMappedSegments = 16
		e, _ := startEngine(t, o)
		mustCreate(t, e, "s", CreateOptions{})
		var want strings.Builder
		for i := 0; i < 2000; i++ {
			s := fmt.Sprintf("<%d:%s>", i, strings.Repeat("m", i%150))
			mustAppend(t, e, "s", s, AppendOptions{})
			want.WriteString(s)
		}
		s, _ := e.streams.Load("s")
		s.mu.Lock()
		nsegs := len(s.data.segs)
		s.mu.Unlock()
		if nsegs < 20 {
			t.Fatalf("only %d segments; the test wants many", nsegs)
		}
		c, err := e.Read("s", ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Data()) < nsegs {
			t.Fatalf("%d views for %d segments", len(c.Data()), nsegs)
		}
		// The views stay valid while other reads churn the mapping cache.
		for range 3 {
			for off := 0; off < want.Len(); off += 3001 {
				_, _ = readChunk(t, e, "s", At(Offset(off)), 5000)
			}
		}
		if string(c.Bytes()) != want.String() {
			t.Fatal("content differs")
		}
		c.Release()
	})
}

func TestChunkOutlivesDeleteAndClose(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, err := Open(t.TempDir(), smallOpts(mode))
		if err != nil {
			t.Fatal(err)
		}
		data := strings.Repeat("pinned!", 2000)
		mustCreate(t, e, "a", CreateOptions{Data: []byte(data)})
		mustCreate(t, e, "b", CreateOptions{Data: []byte(data)})
		ca, err := e.Read("a", ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		cb, err := e.Read("b", ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Delete(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
		if string(ca.Bytes()) != data {
			t.Fatal("chunk changed after its stream was deleted")
		}
		ca.Release()
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if string(cb.Bytes()) != data {
			t.Fatal("chunk changed after the engine closed")
		}
		cb.Release()
	})
}

// ---- Wait ----

// waitAsync starts e.Wait in a goroutine and returns a channel with its result.
func waitAsync(ctx context.Context, e *Engine, path string, off Offset) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- e.Wait(ctx, path, off) }()
	return ch
}

func expectBlocked(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s: Wait returned %v, want it blocked", what, err)
	case <-time.After(100 * time.Millisecond):
	}
}

func expectReturn(t *testing.T, ch <-chan error, want error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if !errors.Is(err, want) {
			t.Fatalf("%s: Wait returned %v, want %v", what, err, want)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: Wait still blocked after 2 s", what)
	}
}

// wakeChanClosed reports whether the stream's current wait channel was closed.
func wakeChanClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestWait(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		t.Run("data already there", func(t *testing.T) {
			mustCreate(t, e, "w1", CreateOptions{Data: []byte("abc")})
			for _, off := range []Offset{0, 2} {
				start := time.Now()
				if err := e.Wait(ctx, "w1", off); err != nil {
					t.Fatal(err)
				}
				if time.Since(start) > time.Second {
					t.Fatal("Wait with data past the offset blocked")
				}
			}
		})
		t.Run("blocks until append", func(t *testing.T) {
			mustCreate(t, e, "w2", CreateOptions{Data: []byte("abc")})
			ch := waitAsync(ctx, e, "w2", 3)
			expectBlocked(t, ch, "at tail")
			mustAppend(t, e, "w2", "d", AppendOptions{})
			expectReturn(t, ch, nil, "after append")
			c, body := readChunk(t, e, "w2", At(3), 0)
			if body != "d" || !c.UpToDate {
				t.Fatalf("read after wake: %q", body)
			}
		})
		t.Run("returns on close", func(t *testing.T) {
			mustCreate(t, e, "w3", CreateOptions{Data: []byte("abc")})
			ch := waitAsync(ctx, e, "w3", 3)
			expectBlocked(t, ch, "at tail")
			mustAppend(t, e, "w3", "", AppendOptions{Close: true})
			expectReturn(t, ch, nil, "after close")
			// On a closed stream, Wait at the final offset returns at once.
			expectReturn(t, waitAsync(ctx, e, "w3", 3), nil, "closed stream")
		})
		t.Run("returns on delete", func(t *testing.T) {
			mustCreate(t, e, "w4", CreateOptions{})
			ch := waitAsync(ctx, e, "w4", 0)
			expectBlocked(t, ch, "empty stream")
			if err := e.Delete(ctx, "w4"); err != nil {
				t.Fatal(err)
			}
			expectReturn(t, ch, ErrNotFound, "after delete")
		})
		t.Run("returns on soft delete", func(t *testing.T) {
			mustCreate(t, e, "w5", CreateOptions{})
			mustCreate(t, e, "w5f", CreateOptions{ForkFrom: "w5"})
			ch := waitAsync(ctx, e, "w5", 0)
			expectBlocked(t, ch, "empty stream")
			if err := e.Delete(ctx, "w5"); err != nil {
				t.Fatal(err)
			}
			expectReturn(t, ch, ErrGone, "after soft delete")
		})
		t.Run("context deadline", func(t *testing.T) {
			mustCreate(t, e, "w6", CreateOptions{})
			tctx, tcancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer tcancel()
			start := time.Now()
			err := e.Wait(tctx, "w6", 0)
			wantErrIs(t, "Wait", err, context.DeadlineExceeded)
			if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
				t.Fatalf("returned after %v", d)
			}
			cctx, ccancel := context.WithCancel(ctx)
			ch := waitAsync(cctx, e, "w6", 0)
			expectBlocked(t, ch, "before cancel")
			ccancel()
			expectReturn(t, ch, context.Canceled, "after cancel")
		})
		t.Run("missing stream", func(t *testing.T) {
			wantErrIs(t, "Wait", e.Wait(ctx, "nope", 0), ErrNotFound)
		})
		t.Run("streams are independent", func(t *testing.T) {
			mustCreate(t, e, "A", CreateOptions{})
			mustCreate(t, e, "B", CreateOptions{})
			chB := waitAsync(ctx, e, "B", 0)
			expectBlocked(t, chB, "B before appends")
			sB, _ := e.streams.Load("B")
			wakeB := sB.waitChan()
			mustAppend(t, e, "A", "a", AppendOptions{})
			if wakeChanClosed(wakeB) {
				t.Fatal("an append to A closed B's wait channel")
			}
			expectBlocked(t, chB, "B after A's append")
			mustAppend(t, e, "B", "b", AppendOptions{})
			expectReturn(t, chB, nil, "B after B's append")
		})
		t.Run("fork waiters ignore source appends", func(t *testing.T) {
			mustCreate(t, e, "src", CreateOptions{Data: []byte("xy")})
			mustCreate(t, e, "fork", CreateOptions{ForkFrom: "src"})
			ch := waitAsync(ctx, e, "fork", 2)
			expectBlocked(t, ch, "fork before appends")
			sf, _ := e.streams.Load("fork")
			wake := sf.waitChan()
			mustAppend(t, e, "src", "s", AppendOptions{})
			mustAppend(t, e, "src", "", AppendOptions{Close: true})
			if wakeChanClosed(wake) {
				t.Fatal("a source append woke the fork's waiters")
			}
			expectBlocked(t, ch, "fork after source appends")
			mustAppend(t, e, "fork", "f", AppendOptions{})
			expectReturn(t, ch, nil, "fork after its own append")
		})
		t.Run("1000 waiters", func(t *testing.T) {
			mustCreate(t, e, "many", CreateOptions{})
			const n = 1000
			var started, done atomic.Int32
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					started.Add(1)
					if err := e.Wait(ctx, "many", 0); err != nil {
						errs <- err
					}
					done.Add(1)
				}()
			}
			for started.Load() < n {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			if d := done.Load(); d != 0 {
				t.Fatalf("%d waiters returned before the append", d)
			}
			mustAppend(t, e, "many", "!", AppendOptions{})
			finished := make(chan struct{})
			go func() { wg.Wait(); close(finished) }()
			select {
			case <-finished:
			case <-time.After(2 * time.Second):
				t.Fatalf("only %d of %d waiters woke within 2 s", done.Load(), n)
			}
			close(errs)
			for err := range errs {
				t.Fatalf("waiter: %v", err)
			}
		})
	})
}

func TestWaitEngineClose(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, err := Open(t.TempDir(), smallOpts(mode))
		if err != nil {
			t.Fatal(err)
		}
		mustCreate(t, e, "s", CreateOptions{})
		ch := waitAsync(context.Background(), e, "s", 0)
		expectBlocked(t, ch, "before close")
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		expectReturn(t, ch, ErrEngineClosed, "after engine close")
	})
}

// ---- Index loss and rebuild ----

// indexFile returns the path of a stream's index file, as documented.
func indexFile(dir string, id uint64) string {
	return filepath.Join(dir, "streams", fmt.Sprintf("%02x", id&0xff), fmt.Sprintf("%016x.index", id))
}

func TestReadAfterIndexLoss(t *testing.T) {
	damage := []struct {
		name string
		fn   func(t *testing.T, path string)
	}{
		{"intact", func(*testing.T, string) {}},
		{"deleted", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated to zero", func(t *testing.T, p string) {
			if err := os.Truncate(p, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated mid-record", func(t *testing.T, p string) {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()/2+5); err != nil {
				t.Fatal(err)
			}
		}},
		{"first record only", func(t *testing.T, p string) {
			if err := os.Truncate(p, 16); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage", func(t *testing.T, p string) {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, bytes.Repeat([]byte{0xff}, int(st.Size())), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			o := smallOpts(DurabilitySync)
			o.IndexEvery = 128
			e, err := Open(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			msgs := jsonTestMessages(rng, 250)
			mustCreate(t, e, "j", CreateOptions{ContentType: "application/json"})
			appendJSONBatches(t, e, "j", rng, msgs)
			bin := strings.Repeat("0123456789abcdef", 2000)
			mustCreate(t, e, "b", CreateOptions{})
			for i := 0; i < len(bin); i += 700 {
				mustAppend(t, e, "b", bin[i:min(i+700, len(bin))], AppendOptions{})
			}
			sj, _ := e.streams.Load("j")
			sb, _ := e.streams.Load("b")
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			for _, id := range []uint64{sj.id, sb.id} {
				p := indexFile(dir, id)
				st, err := os.Stat(p)
				if err != nil {
					t.Fatalf("index file after close: %v", err)
				}
				if st.Size() == 0 || st.Size()%16 != 0 {
					t.Fatalf("index file size %d", st.Size())
				}
				d.fn(t, p)
			}

			check := func(e *Engine, msgs []string, bin string) {
				t.Helper()
				if got := readString(t, e, "j"); got != "["+strings.Join(msgs, ",")+"]" {
					t.Fatal("JSON content differs")
				}
				for _, max := range []int64{1, 200, 700, 5000} {
					checkJSONPaging(t, e, "j", msgs, max)
				}
				if got := readString(t, e, "b"); got != bin {
					t.Fatal("binary content differs")
				}
				for from := 0; from < len(bin); from += 997 {
					_, body := readChunk(t, e, "b", At(Offset(from)), 3000)
					if body != bin[from:min(from+3000, len(bin))] {
						t.Fatalf("binary read at %d differs", from)
					}
				}
			}
			e = startEngineIn(t, dir, o)
			check(e, msgs, bin)
			// Appends after the rebuild, then another restart.
			more := jsonTestMessages(rng, 60)
			appendJSONBatches(t, e, "j", rng, more)
			msgs = append(msgs, more...)
			mustAppend(t, e, "b", "tail", AppendOptions{})
			bin += "tail"
			check(e, msgs, bin)
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e = startEngineIn(t, dir, o)
			check(e, msgs, bin)
		})
	}
}

// TestReadAfterIndexLossWithReplay: the index is lost in a crash image
// whose commit log still holds appends after the checkpoint.
func TestReadAfterIndexLossWithReplay(t *testing.T) {
	o := smallOpts(DurabilitySync)
	o.IndexEvery = 128
	e, dir := startEngine(t, o)
	rng := rand.New(rand.NewPCG(7, 8))
	msgs := jsonTestMessages(rng, 200)
	mustCreate(t, e, "j", CreateOptions{ContentType: "application/json"})
	appendJSONBatches(t, e, "j", rng, msgs[:120])
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	appendJSONBatches(t, e, "j", rng, msgs[120:])
	s, _ := e.streams.Load("j")
	img := copyTree(t, dir)
	if err := os.Remove(indexFile(img, s.id)); err != nil {
		t.Fatal(err)
	}
	e2 := startEngineIn(t, img, o)
	for _, max := range []int64{1, 300, 2000} {
		checkJSONPaging(t, e2, "j", msgs, max)
	}
}

// ReadOptions.End stops a read at an earlier tail whatever was appended
// since; pages read up to it join into exactly the range [start, End); an
// End past the tail is ErrOffsetPastEnd. Chunk.Tail/TailClosed report the
// tail the read saw.
func TestReadEnd(t *testing.T) {
	e := openTest(t, t.TempDir(), &Options{Durability: DurabilitySync})
	defer e.Close()
	mustCreate(t, e, "s", CreateOptions{ContentType: "application/json"})
	for i := range 50 {
		mustAppend(t, e, "s", fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", i*10)), AppendOptions{})
	}
	first, err := e.Read("s", ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	end := first.Tail
	if first.UpToDate || first.TailClosed {
		t.Fatalf("first page: up to date %v, tail closed %v", first.UpToDate, first.TailClosed)
	}
	body := bytes.Join(first.Data(), nil)
	next := first.Next
	first.Release()
	mustAppend(t, e, "s", `{"after":true}`, AppendOptions{Close: true})
	for next < end {
		c, err := e.Read("s", At(next), ReadOptions{MaxBytes: 1000, End: end, OnePass: true})
		if err != nil {
			t.Fatal(err)
		}
		if c.Next > end || c.Tail <= end || !c.TailClosed || c.Closed {
			t.Fatalf("page [%v, %v): tail %v closed %v/%v", c.Start, c.Next, c.Tail, c.TailClosed, c.Closed)
		}
		body = append(body, bytes.Join(c.Data(), nil)...)
		next = c.Next
		c.Release()
	}
	var got []map[string]any
	if err := json.Unmarshal(append(append([]byte{'['}, body[:len(body)-1]...), ']'), &got); err != nil || len(got) != 50 {
		t.Fatalf("pages up to End: %d messages, %v", len(got), err)
	}
	if _, err := e.Read("s", ReadFrom{Kind: FromStart}, ReadOptions{End: 1 << 40}); !errors.Is(err, ErrOffsetPastEnd) {
		t.Fatalf("End past the tail: %v", err)
	}
}
