package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ---- helpers shared by write_test.go, read_test.go and wal_test.go ----

var bothModes = []Durability{DurabilitySync, DurabilityMemory}

// forEachMode runs fn as a subtest per durability mode.
func forEachMode(t *testing.T, fn func(t *testing.T, mode Durability)) {
	t.Helper()
	for _, m := range bothModes {
		t.Run(string(m), func(t *testing.T) { fn(t, m) })
	}
}

// smallOpts returns options with tiny segments, so that tests cross
// segment boundaries, plus the given mode.
func smallOpts(mode Durability) *Options {
	return &Options{
		Durability:     mode,
		WALSegmentSize: 64 << 10,
		MinSegmentSize: 256,
		MaxSegmentSize: 4096,
	}
}

// testClock is a fake clock for TTL tests.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *testClock) Now() time.Time           { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration)  { c.ns.Add(int64(d)) }
func (c *testClock) opts(o *Options) *Options { o.Clock = c.Now; return o }

// startEngine opens an engine in a fresh directory and closes it at cleanup.
func startEngine(t *testing.T, o *Options) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	return startEngineIn(t, dir, o), dir
}

func startEngineIn(t *testing.T, dir string, o *Options) *Engine {
	t.Helper()
	e, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func mustCreate(t *testing.T, e *Engine, path string, o CreateOptions) StreamInfo {
	t.Helper()
	info, created, err := e.Create(context.Background(), path, o)
	if err != nil {
		t.Fatalf("Create(%q): %v", path, err)
	}
	if !created {
		t.Fatalf("Create(%q): created=false for a new stream", path)
	}
	return info
}

func mustAppend(t *testing.T, e *Engine, path, data string, o AppendOptions) AppendResult {
	t.Helper()
	res, err := e.Append(context.Background(), path, []byte(data), o)
	if err != nil {
		t.Fatalf("Append(%q, %q): %v", path, data, err)
	}
	return res
}

// readString reads a whole stream (wire body) from the start.
func readString(t *testing.T, e *Engine, path string) string {
	t.Helper()
	c, err := e.Read(path, ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatalf("Read(%q): %v", path, err)
	}
	defer c.Release()
	if !c.UpToDate {
		t.Fatalf("Read(%q) with a huge MaxBytes is not up to date", path)
	}
	return string(c.Bytes())
}

func wantErrIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// copyTree copies a directory recursively: taken while an engine is open,
// it is a crash image of the store.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile (a WAL segment, a .tmp)
			}
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	return dst
}

func offPtr(o Offset) *Offset { return &o }

// ---- Create ----

func TestCreateIdempotent(t *testing.T) {
	ctx := context.Background()
	expires := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	forEachMode(t, func(t *testing.T, mode Durability) {
		clk := newTestClock()
		e, _ := startEngine(t, clk.opts(smallOpts(mode)))
		base := []struct {
			path string
			opts CreateOptions
		}{
			{"plain", CreateOptions{}},
			{"text", CreateOptions{ContentType: "text/plain"}},
			{"ttl", CreateOptions{ContentType: "text/plain", TTL: 60, HasTTL: true}},
			{"exp", CreateOptions{ContentType: "text/plain", ExpiresAt: expires}},
			{"closed", CreateOptions{ContentType: "text/plain", Closed: true, Data: []byte("final")}},
			{"json", CreateOptions{ContentType: "application/json", Data: []byte(`[1,2]`)}},
		}
		for _, b := range base {
			mustCreate(t, e, b.path, b.opts)
		}
		tests := []struct {
			name    string
			path    string
			opts    CreateOptions
			wantErr error
		}{
			{"default type again", "plain", CreateOptions{}, nil},
			{"default type explicit", "plain", CreateOptions{ContentType: DefaultContentType}, nil},
			{"same type", "text", CreateOptions{ContentType: "text/plain"}, nil},
			{"same type, case and params differ", "text", CreateOptions{ContentType: "Text/Plain; charset=utf-8"}, nil},
			{"data ignored on existing", "text", CreateOptions{ContentType: "text/plain", Data: []byte("zzz")}, nil},
			{"other type", "text", CreateOptions{ContentType: "application/json"}, ErrConfigMismatch},
			{"default vs text", "text", CreateOptions{}, ErrConfigMismatch},
			{"ttl added", "text", CreateOptions{ContentType: "text/plain", TTL: 60, HasTTL: true}, ErrConfigMismatch},
			{"same ttl", "ttl", CreateOptions{ContentType: "text/plain", TTL: 60, HasTTL: true}, nil},
			{"other ttl", "ttl", CreateOptions{ContentType: "text/plain", TTL: 61, HasTTL: true}, ErrConfigMismatch},
			{"ttl dropped", "ttl", CreateOptions{ContentType: "text/plain"}, ErrConfigMismatch},
			{"ttl 0 vs none", "text", CreateOptions{ContentType: "text/plain", TTL: 0, HasTTL: true}, ErrConfigMismatch},
			{"same expiry", "exp", CreateOptions{ContentType: "text/plain", ExpiresAt: expires}, nil},
			{"same expiry other zone", "exp", CreateOptions{ContentType: "text/plain", ExpiresAt: expires.In(time.FixedZone("x", 3600))}, nil},
			{"other expiry", "exp", CreateOptions{ContentType: "text/plain", ExpiresAt: expires.Add(time.Second)}, ErrConfigMismatch},
			{"expiry dropped", "exp", CreateOptions{ContentType: "text/plain"}, ErrConfigMismatch},
			{"closed again", "closed", CreateOptions{ContentType: "text/plain", Closed: true}, nil},
			{"closed vs open request", "closed", CreateOptions{ContentType: "text/plain"}, ErrConfigMismatch},
			{"open vs closed request", "text", CreateOptions{ContentType: "text/plain", Closed: true}, ErrConfigMismatch},
			{"json again", "json", CreateOptions{ContentType: "application/json; charset=utf-8"}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				info, created, err := e.Create(ctx, tc.path, tc.opts)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if created {
					t.Fatal("created = true for an existing stream")
				}
				if err == nil && info.Path != tc.path {
					t.Fatalf("info.Path = %q", info.Path)
				}
			})
		}
		// The existing streams are unchanged.
		if got := readString(t, e, "closed"); got != "final" {
			t.Fatalf("closed stream content %q", got)
		}
		if got := readString(t, e, "text"); got != "" {
			t.Fatalf("text stream content %q", got)
		}
	})
}

func TestCreateValidation(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		tests := []struct {
			name string
			path string
			opts CreateOptions
			want error
		}{
			{"ttl and expiry", "a", CreateOptions{TTL: 5, HasTTL: true, ExpiresAt: time.Now().Add(time.Hour)}, ErrBadTTL},
			{"empty path", "", CreateOptions{}, ErrBadPath},
			{"control char", "a\nb", CreateOptions{}, ErrBadPath},
			{"DEL char", "a\x7fb", CreateOptions{}, ErrBadPath},
			{"too long", strings.Repeat("p", 1025), CreateOptions{}, ErrBadPath},
			{"fork offset without source", "a", CreateOptions{ForkOffset: offPtr(0)}, ErrForkOffset},
			{"fork sub-offset without source", "a", CreateOptions{ForkSubOffset: 1}, ErrForkOffset},
			{"invalid json data", "j", CreateOptions{ContentType: "application/json", Data: []byte(`{`)}, ErrInvalidJSON},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, created, err := e.Create(ctx, tc.path, tc.opts)
				wantErrIs(t, "Create", err, tc.want)
				if created {
					t.Fatal("created on error")
				}
			})
		}
		// Nothing was left behind by the failed creates.
		for _, p := range []string{"a", "j"} {
			if _, err := e.Head(p); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Head(%q) after failed create: %v", p, err)
			}
		}
		if _, _, err := e.Create(ctx, strings.Repeat("p", 1024), CreateOptions{}); err != nil {
			t.Fatalf("path of exactly MaxPathLen: %v", err)
		}
	})
}

func TestCreateInitialData(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		tests := []struct {
			name     string
			opts     CreateOptions
			wantRead string
			wantTail Offset
			closed   bool
		}{
			{"empty binary", CreateOptions{}, "", 0, false},
			{"binary data", CreateOptions{ContentType: "text/plain", Data: []byte("hello")}, "hello", 5, false},
			{"closed with data", CreateOptions{ContentType: "text/plain", Closed: true, Data: []byte("done")}, "done", 4, true},
			{"closed empty", CreateOptions{Closed: true}, "", 0, true},
			{"json empty array", CreateOptions{ContentType: "application/json", Data: []byte(` [ ] `)}, `[]`, 0, false},
			{"json no data", CreateOptions{ContentType: "application/json"}, `[]`, 0, false},
			{"json array", CreateOptions{ContentType: "application/json", Data: []byte(`[{"a": 1}, 2, "x"]`)}, `[{"a":1},2,"x"]`, Offset(len(`{"a":1},2,"x",`)), false},
			{"json single", CreateOptions{ContentType: "application/json", Data: []byte(`{"k": [1, 2]}`)}, `[{"k":[1,2]}]`, Offset(len(`{"k":[1,2]},`)), false},
			{"json closed", CreateOptions{ContentType: "application/json", Closed: true, Data: []byte(`[1]`)}, `[1]`, 2, true},
			{"binary larger than a segment", CreateOptions{Data: []byte(strings.Repeat("z", 10000))}, strings.Repeat("z", 10000), 10000, false},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				path := "s/" + string(rune('a'+i))
				info := mustCreate(t, e, path, tc.opts)
				if info.Tail != tc.wantTail || info.Closed != tc.closed {
					t.Fatalf("info tail %d closed %v, want %d %v", info.Tail, info.Closed, tc.wantTail, tc.closed)
				}
				if got := readString(t, e, path); got != tc.wantRead {
					t.Fatalf("read %q, want %q", got, tc.wantRead)
				}
				h, err := e.Head(path)
				if err != nil || h.Tail != tc.wantTail || h.Closed != tc.closed {
					t.Fatalf("Head %+v %v", h, err)
				}
				if want := orDefault(tc.opts.ContentType); h.ContentType != want {
					t.Fatalf("content type %q, want %q", h.ContentType, want)
				}
				_, err = e.Append(context.Background(), path, []byte("1"), AppendOptions{})
				if tc.closed {
					var ce *ClosedError
					if !errors.As(err, &ce) || ce.Final != tc.wantTail {
						t.Fatalf("append to stream created closed: %v", err)
					}
				} else if err != nil {
					t.Fatalf("append: %v", err)
				}
			})
		}
	})
}

// ---- Append ----

func TestAppendErrors(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, &Options{Durability: mode, MaxRecordSize: 1000})
		mustCreate(t, e, "bin", CreateOptions{ContentType: "text/plain; charset=utf-8"})
		mustCreate(t, e, "json", CreateOptions{ContentType: "application/json"})
		tests := []struct {
			name string
			path string
			data string
			opts AppendOptions
			want error
		}{
			{"missing stream", "nope", "x", AppendOptions{}, ErrNotFound},
			{"empty append", "bin", "", AppendOptions{}, ErrEmptyAppend},
			{"empty json append", "json", "", AppendOptions{}, ErrEmptyAppend},
			{"invalid json", "json", `{"a":`, AppendOptions{}, ErrInvalidJSON},
			{"json trailing garbage", "json", `1 2`, AppendOptions{}, ErrInvalidJSON},
			{"json empty array", "json", `[]`, AppendOptions{}, ErrEmptyJSONArray},
			{"json empty array spaced", "json", " [ \n ] ", AppendOptions{}, ErrEmptyJSONArray},
			{"content type mismatch", "bin", "x", AppendOptions{ContentType: "application/json"}, ErrContentType},
			{"content type other subtype", "bin", "x", AppendOptions{ContentType: "text/html"}, ErrContentType},
			{"content type same, case differs", "bin", "x", AppendOptions{ContentType: "TEXT/PLAIN"}, nil},
			{"content type same, params differ", "bin", "x", AppendOptions{ContentType: "text/plain; charset=latin1"}, nil},
			{"content type same, spaces", "bin", "x", AppendOptions{ContentType: " text/plain ;q=1"}, nil},
			{"json content type mismatch", "json", "1", AppendOptions{ContentType: "text/plain"}, ErrContentType},
			{"json content type with charset", "json", "1", AppendOptions{ContentType: "Application/JSON; charset=utf-8"}, nil},
			{"empty producer id", "bin", "x", AppendOptions{Producer: &Producer{ID: ""}}, ErrInvalidProducer},
			{"too large", "bin", strings.Repeat("x", 1001), AppendOptions{}, ErrTooLarge},
			{"max size ok", "bin", strings.Repeat("x", 1000), AppendOptions{}, nil},
			// A close-only request is not rejected for its content type.
			{"close-only ignores content type", "json", "", AppendOptions{Close: true, ContentType: "text/plain"}, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before, _ := e.Head(tc.path)
				res, err := e.Append(ctx, tc.path, []byte(tc.data), tc.opts)
				wantErrIs(t, "Append", err, tc.want)
				after, _ := e.Head(tc.path)
				if tc.want != nil && after.Tail != before.Tail {
					t.Fatalf("tail moved on error: %d -> %d", before.Tail, after.Tail)
				}
				if tc.want == nil && res.Tail != after.Tail {
					t.Fatalf("result tail %d, head tail %d", res.Tail, after.Tail)
				}
			})
		}
		mustCreate(t, e, "json2", CreateOptions{ContentType: "application/json"})
		var je *JSONError
		if _, err := e.Append(ctx, "json2", []byte("nul"), AppendOptions{}); !errors.As(err, &je) || je.Msg == "" {
			t.Fatalf("invalid JSON error has no message: %v", err)
		}
	})
}

func TestAppendTailsAndContent(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		mustCreate(t, e, "s", CreateOptions{})
		var want strings.Builder
		for i := 0; i < 300; i++ {
			chunk := strings.Repeat(string(rune('a'+i%26)), 1+i%97)
			res := mustAppend(t, e, "s", chunk, AppendOptions{})
			want.WriteString(chunk)
			if res.Tail != Offset(want.Len()) || res.Closed || res.Duplicate {
				t.Fatalf("append %d: %+v, want tail %d", i, res, want.Len())
			}
		}
		if got := readString(t, e, "s"); got != want.String() {
			t.Fatalf("content differs (len %d vs %d)", len(got), want.Len())
		}
	})
}

func TestStreamSeq(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		mustCreate(t, e, "s", CreateOptions{})
		steps := []struct {
			seq  string
			want error
		}{
			{"", nil},
			{"0001", nil},
			{"0002", nil},
			{"0002", ErrSeqRegression}, // equal
			{"0001", ErrSeqRegression}, // lower
			{"", nil},                  // no seq: not checked, not recorded
			{"0002", ErrSeqRegression}, // still remembered
			{"00020", nil},             // byte-wise: longer with same prefix is greater
			{"0003", nil},
			{"01", nil},
			{"1", nil},
			{"09", ErrSeqRegression}, // byte-wise, not numeric
			{"a", nil},
			{"B", ErrSeqRegression}, // 'B' < 'a'
		}
		n := 0
		for i, st := range steps {
			_, err := e.Append(context.Background(), "s", []byte("x"), AppendOptions{Seq: st.seq})
			if !errors.Is(err, st.want) {
				t.Fatalf("step %d seq %q: err %v, want %v", i, st.seq, err, st.want)
			}
			if err == nil {
				n++
			}
		}
		if got := readString(t, e, "s"); got != strings.Repeat("x", n) {
			t.Fatalf("content %q, want %d x", got, n)
		}
	})
}

func TestProducers(t *testing.T) {
	type step struct {
		id           string
		epoch, seq   uint64
		data         string
		wantErr      error
		wantDup      bool
		wantSeq      uint64 // ProducerSeq on success
		wantEpoch    uint64 // ProducerEpoch on success
		wantExpected uint64 // SeqGapError
		wantCurrent  uint64 // StaleEpochError
	}
	steps := []step{
		{id: "p", epoch: 0, seq: 0, data: "a", wantSeq: 0},
		{id: "p", epoch: 0, seq: 1, data: "b", wantSeq: 1},
		{id: "p", epoch: 0, seq: 1, data: "b", wantDup: true, wantSeq: 1}, // retry of the last
		{id: "p", epoch: 0, seq: 0, data: "a", wantDup: true, wantSeq: 1}, // retry of an older one: ProducerSeq = last
		{id: "p", epoch: 0, seq: 3, data: "d", wantErr: ErrSeqGap, wantExpected: 2},
		{id: "p", epoch: 0, seq: 2, data: "c", wantSeq: 2},
		{id: "q", epoch: 0, seq: 0, data: "Q", wantSeq: 0},               // another producer is independent
		{id: "p", epoch: 1, seq: 1, data: "e", wantErr: ErrEpochSeq},     // new epoch must start at 0
		{id: "p", epoch: 1, seq: 0, data: "e", wantSeq: 0, wantEpoch: 1}, // new epoch
		{id: "p", epoch: 0, seq: 3, data: "zombie", wantErr: ErrStaleEpoch, wantCurrent: 1},
		{id: "p", epoch: 0, seq: 0, data: "zombie", wantErr: ErrStaleEpoch, wantCurrent: 1},
		{id: "p", epoch: 1, seq: 0, data: "e", wantDup: true, wantSeq: 0, wantEpoch: 1},
		{id: "p", epoch: 1, seq: 1, data: "f", wantSeq: 1, wantEpoch: 1},
		{id: "p", epoch: 5, seq: 0, data: "g", wantSeq: 0, wantEpoch: 5}, // epochs may jump
		{id: "q", epoch: 0, seq: 2, data: "Q", wantErr: ErrSeqGap, wantExpected: 1},
	}
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		mustCreate(t, e, "s", CreateOptions{})
		var want strings.Builder
		for i, st := range steps {
			before, _ := e.Head("s")
			res, err := e.Append(context.Background(), "s", []byte(st.data),
				AppendOptions{Producer: &Producer{ID: st.id, Epoch: st.epoch, Seq: st.seq}})
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("step %d (%s e%d s%d): err %v, want %v", i, st.id, st.epoch, st.seq, err, st.wantErr)
			}
			switch {
			case errors.Is(err, ErrSeqGap):
				var ge *SeqGapError
				if !errors.As(err, &ge) || ge.Expected != st.wantExpected || ge.Received != st.seq {
					t.Fatalf("step %d: gap error %+v, want expected %d received %d", i, ge, st.wantExpected, st.seq)
				}
			case errors.Is(err, ErrStaleEpoch):
				var se *StaleEpochError
				if !errors.As(err, &se) || se.Current != st.wantCurrent {
					t.Fatalf("step %d: stale epoch error %+v, want current %d", i, se, st.wantCurrent)
				}
			case err == nil:
				if res.Duplicate != st.wantDup || res.ProducerSeq != st.wantSeq || res.ProducerEpoch != st.wantEpoch {
					t.Fatalf("step %d: %+v, want dup %v seq %d epoch %d", i, res, st.wantDup, st.wantSeq, st.wantEpoch)
				}
				if st.wantDup && res.Tail != before.Tail {
					t.Fatalf("step %d: duplicate moved the tail", i)
				}
				if !st.wantDup {
					want.WriteString(st.data)
				}
			}
		}
		if got := readString(t, e, "s"); got != want.String() {
			t.Fatalf("content %q, want %q", got, want.String())
		}
	})
}

func TestProducerWithStreamSeq(t *testing.T) {
	// A producer retry is answered as a duplicate before Stream-Seq is
	// looked at: the retry carries the same Stream-Seq as the original.
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		mustCreate(t, e, "s", CreateOptions{})
		o := AppendOptions{Seq: "5", Producer: &Producer{ID: "p"}}
		mustAppend(t, e, "s", "a", o)
		res, err := e.Append(context.Background(), "s", []byte("a"), o)
		if err != nil || !res.Duplicate {
			t.Fatalf("retry: %+v %v", res, err)
		}
		_, err = e.Append(context.Background(), "s", []byte("b"), AppendOptions{Seq: "5", Producer: &Producer{ID: "p", Seq: 1}})
		wantErrIs(t, "new producer seq with old Stream-Seq", err, ErrSeqRegression)
		// The rejected append did not advance the producer.
		res = mustAppend(t, e, "s", "b", AppendOptions{Seq: "6", Producer: &Producer{ID: "p", Seq: 1}})
		if res.ProducerSeq != 1 || res.Duplicate {
			t.Fatalf("after regression: %+v", res)
		}
	})
}

// ---- Close ----

func TestClose(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))

		t.Run("close-only idempotent", func(t *testing.T) {
			mustCreate(t, e, "c1", CreateOptions{Data: []byte("abc")})
			res := mustAppend(t, e, "c1", "", AppendOptions{Close: true})
			if !res.Closed || res.Duplicate || res.Tail != 3 {
				t.Fatalf("first close: %+v", res)
			}
			res = mustAppend(t, e, "c1", "", AppendOptions{Close: true})
			if !res.Closed || !res.Duplicate || res.Tail != 3 {
				t.Fatalf("second close: %+v", res)
			}
			h, _ := e.Head("c1")
			if !h.Closed || h.Tail != 3 {
				t.Fatalf("head %+v", h)
			}
		})

		t.Run("append after close", func(t *testing.T) {
			mustCreate(t, e, "c2", CreateOptions{Data: []byte("abc")})
			mustAppend(t, e, "c2", "", AppendOptions{Close: true})
			for _, o := range []AppendOptions{{}, {Close: true}, {Seq: "9"}, {Producer: &Producer{ID: "p"}}} {
				_, err := e.Append(ctx, "c2", []byte("more"), o)
				var ce *ClosedError
				if !errors.As(err, &ce) || !errors.Is(err, ErrClosed) || ce.Final != 3 {
					t.Fatalf("append %+v after close: %v", o, err)
				}
			}
			if got := readString(t, e, "c2"); got != "abc" {
				t.Fatalf("content %q", got)
			}
		})

		t.Run("append and close atomically", func(t *testing.T) {
			mustCreate(t, e, "c3", CreateOptions{Data: []byte("abc")})
			res := mustAppend(t, e, "c3", "def", AppendOptions{Close: true})
			if !res.Closed || res.Tail != 6 || res.Duplicate {
				t.Fatalf("append+close: %+v", res)
			}
			c, err := e.Read("c3", ReadFrom{Kind: FromStart}, ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Release()
			if string(c.Bytes()) != "abcdef" || !c.Closed || !c.UpToDate || c.Next != 6 {
				t.Fatalf("read after append+close: %q %+v", c.Bytes(), c)
			}
			// Append-and-close without a producer is not idempotent.
			_, err = e.Append(ctx, "c3", []byte("def"), AppendOptions{Close: true})
			wantErrIs(t, "repeated append+close", err, ErrClosed)
		})

		t.Run("producer close dedup", func(t *testing.T) {
			mustCreate(t, e, "c4", CreateOptions{})
			p := &Producer{ID: "w", Epoch: 2, Seq: 0}
			mustAppend(t, e, "c4", "x", AppendOptions{Producer: p})
			closer := &Producer{ID: "w", Epoch: 2, Seq: 1}
			res := mustAppend(t, e, "c4", "last", AppendOptions{Producer: closer, Close: true})
			if !res.Closed || res.Duplicate || res.Tail != 5 || res.ProducerSeq != 1 || res.ProducerEpoch != 2 {
				t.Fatalf("closing append: %+v", res)
			}
			res, err := e.Append(ctx, "c4", []byte("last"), AppendOptions{Producer: closer, Close: true})
			if err != nil || !res.Duplicate || !res.Closed || res.Tail != 5 || res.ProducerSeq != 1 || res.ProducerEpoch != 2 {
				t.Fatalf("retry of the closing append: %+v %v", res, err)
			}
			for _, other := range []*Producer{
				{ID: "w", Epoch: 2, Seq: 0}, // an earlier tuple of the same producer
				{ID: "w", Epoch: 2, Seq: 2},
				{ID: "w", Epoch: 3, Seq: 0},
				{ID: "v", Epoch: 2, Seq: 1},
			} {
				_, err := e.Append(ctx, "c4", []byte("last"), AppendOptions{Producer: other, Close: true})
				var ce *ClosedError
				if !errors.As(err, &ce) || ce.Final != 5 {
					t.Fatalf("producer %+v on closed stream: %v", other, err)
				}
			}
			if got := readString(t, e, "c4"); got != "xlast" {
				t.Fatalf("content %q", got)
			}
		})

		t.Run("producer close-only dedup", func(t *testing.T) {
			mustCreate(t, e, "c5", CreateOptions{})
			p := &Producer{ID: "w"}
			res := mustAppend(t, e, "c5", "", AppendOptions{Producer: p, Close: true})
			if !res.Closed || res.Duplicate {
				t.Fatalf("close: %+v", res)
			}
			res = mustAppend(t, e, "c5", "", AppendOptions{Producer: p, Close: true})
			if !res.Closed || !res.Duplicate {
				t.Fatalf("repeated close: %+v", res)
			}
		})

		t.Run("precedence", func(t *testing.T) {
			mustCreate(t, e, "c6", CreateOptions{ContentType: "text/plain"})
			mustAppend(t, e, "c6", "x", AppendOptions{Seq: "5"})
			// Open stream: content type outranks seq regression.
			_, err := e.Append(ctx, "c6", []byte("y"), AppendOptions{ContentType: "image/png", Seq: "1"})
			wantErrIs(t, "content type + regression", err, ErrContentType)
			// Producer fencing applies before Stream-Seq, after content type.
			_, err = e.Append(ctx, "c6", []byte("y"), AppendOptions{ContentType: "image/png", Producer: &Producer{ID: "p", Seq: 7}})
			wantErrIs(t, "content type + gap", err, ErrContentType)
			mustAppend(t, e, "c6", "", AppendOptions{Close: true})
			// Closed outranks everything.
			_, err = e.Append(ctx, "c6", []byte("y"), AppendOptions{ContentType: "image/png", Seq: "1"})
			wantErrIs(t, "closed + content type + regression", err, ErrClosed)

			// JSON: closed and content type outrank an invalid body.
			mustCreate(t, e, "c7", CreateOptions{ContentType: "application/json"})
			_, err = e.Append(ctx, "c7", []byte("{bad"), AppendOptions{ContentType: "text/plain"})
			wantErrIs(t, "json: content type + invalid", err, ErrContentType)
			mustAppend(t, e, "c7", "", AppendOptions{Close: true})
			_, err = e.Append(ctx, "c7", []byte("{bad"), AppendOptions{ContentType: "text/plain"})
			wantErrIs(t, "json: closed + content type + invalid", err, ErrClosed)
			_, err = e.Append(ctx, "c7", []byte("[]"), AppendOptions{})
			wantErrIs(t, "json: closed + empty array", err, ErrClosed)
		})
	})
}

// ---- Delete ----

func TestDelete(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		wantErrIs(t, "delete missing", e.Delete(ctx, "s"), ErrNotFound)
		mustCreate(t, e, "s", CreateOptions{ContentType: "text/plain", Data: []byte(strings.Repeat("old", 3000))})
		mustAppend(t, e, "s", "x", AppendOptions{Seq: "9", Producer: &Producer{ID: "p", Epoch: 3}})
		if err := e.Delete(ctx, "s"); err != nil {
			t.Fatal(err)
		}
		_, err := e.Head("s")
		wantErrIs(t, "head", err, ErrNotFound)
		_, err = e.Read("s", ReadFrom{Kind: FromStart}, ReadOptions{})
		wantErrIs(t, "read", err, ErrNotFound)
		_, err = e.Append(ctx, "s", []byte("x"), AppendOptions{})
		wantErrIs(t, "append", err, ErrNotFound)
		wantErrIs(t, "delete again", e.Delete(ctx, "s"), ErrNotFound)
		wantErrIs(t, "wait", e.Wait(ctx, "s", 0), ErrNotFound)

		// The path is reusable, with a new configuration and no old state.
		info := mustCreate(t, e, "s", CreateOptions{ContentType: "application/json"})
		if info.Tail != 0 || info.ContentType != "application/json" {
			t.Fatalf("recreated: %+v", info)
		}
		if got := readString(t, e, "s"); got != "[]" {
			t.Fatalf("recreated stream content %q", got)
		}
		res := mustAppend(t, e, "s", "1", AppendOptions{Seq: "1", Producer: &Producer{ID: "p", Epoch: 0}})
		if res.Duplicate || res.Tail != 2 {
			t.Fatalf("append to recreated: %+v", res)
		}
		if st := e.Stats(); st.Streams != 1 {
			t.Fatalf("Stats.Streams = %d", st.Streams)
		}
	})
}

func TestDeleteRemovesFiles(t *testing.T) {
	ctx := context.Background()
	e, _ := startEngine(t, smallOpts(DurabilitySync))
	mustCreate(t, e, "s", CreateOptions{Data: []byte(strings.Repeat("d", 20000))})
	s, _ := e.streams.Load("s")
	if files := streamFiles(t, e, s.id); len(files) == 0 {
		t.Fatalf("no stream files before delete")
	}
	if err := e.Delete(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if files := streamFiles(t, e, s.id); len(files) != 0 {
		t.Fatalf("stream files after delete: %v", files)
	}
}

// ---- Forks ----

func TestForkBasics(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		mustCreate(t, e, "src", CreateOptions{ContentType: "text/plain", Data: []byte("hello")})
		mustAppend(t, e, "src", " world", AppendOptions{}) // tail 11
		mustCreate(t, e, "jsrc", CreateOptions{ContentType: "application/json", Data: []byte(`[1,{"a":"x,y"},[3,4]]`)})
		mustAppend(t, e, "jsrc", `"five"`, AppendOptions{})
		jtail, _ := e.Head("jsrc")

		tests := []struct {
			name     string
			path     string
			opts     CreateOptions
			wantErr  error
			wantRead string
			wantTail Offset
			wantFork *Offset // default: wantTail
		}{
			{"at tail", "f/tail", CreateOptions{ForkFrom: "src"}, nil, "hello world", 11, nil},
			{"explicit tail", "f/tail2", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(11)}, nil, "hello world", 11, nil},
			{"earlier offset", "f/early", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(5)}, nil, "hello", 5, nil},
			{"offset zero", "f/zero", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(0)}, nil, "", 0, nil},
			{"beyond tail", "f/beyond", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(12)}, ErrForkOffset, "", 0, nil},
			{"missing source", "f/missing", CreateOptions{ForkFrom: "nope"}, ErrSourceNotFound, "", 0, nil},
			{"type mismatch", "f/ct", CreateOptions{ForkFrom: "src", ContentType: "application/json"}, ErrConfigMismatch, "", 0, nil},
			{"type matches", "f/ct2", CreateOptions{ForkFrom: "src", ContentType: "TEXT/plain; charset=utf-8"}, nil, "hello world", 11, nil},
			{"binary sub-offset", "f/sub", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(0), ForkSubOffset: 3}, nil, "hel", 3, nil},
			{"binary sub-offset to tail", "f/sub2", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(5), ForkSubOffset: 6}, nil, "hello world", 11, nil},
			{"binary sub-offset overshoot", "f/sub3", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(5), ForkSubOffset: 7}, ErrSubOffset, "", 0, nil},
			{"binary sub-offset at tail", "f/sub4", CreateOptions{ForkFrom: "src", ForkSubOffset: 1}, ErrSubOffset, "", 0, nil},
			{"json sub-offset 1", "f/j1", CreateOptions{ForkFrom: "jsrc", ForkOffset: offPtr(0), ForkSubOffset: 1}, nil, `[1]`, 2, nil},
			{"json sub-offset 2 (comma in string)", "f/j2", CreateOptions{ForkFrom: "jsrc", ForkOffset: offPtr(0), ForkSubOffset: 2}, nil, `[1,{"a":"x,y"}]`, Offset(len(`1,{"a":"x,y"},`)), nil},
			{"json sub-offset 3 (nested array)", "f/j3", CreateOptions{ForkFrom: "jsrc", ForkOffset: offPtr(0), ForkSubOffset: 3}, nil, `[1,{"a":"x,y"},[3,4]]`, Offset(len(`1,{"a":"x,y"},[3,4],`)), nil},
			{"json sub-offset from anchor", "f/j4", CreateOptions{ForkFrom: "jsrc", ForkOffset: offPtr(2), ForkSubOffset: 3}, nil, `[1,{"a":"x,y"},[3,4],"five"]`, jtail.Tail, nil},
			{"json sub-offset overshoot", "f/j5", CreateOptions{ForkFrom: "jsrc", ForkOffset: offPtr(0), ForkSubOffset: 5}, ErrSubOffset, "", 0, nil},
			{"with initial data", "f/data", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(5), Data: []byte(" there")}, nil, "hello there", 11, offPtr(5)},
			{"json with initial data", "f/jdata", CreateOptions{ForkFrom: "jsrc", ForkOffset: offPtr(2), Data: []byte(`["x",{}]`)}, nil, `[1,"x",{}]`, 9, offPtr(2)},
			{"json fork inherits type", "f/j6", CreateOptions{ForkFrom: "jsrc"}, nil, `[1,{"a":"x,y"},[3,4],"five"]`, jtail.Tail, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				info, created, err := e.Create(ctx, tc.path, tc.opts)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if err != nil {
					if created {
						t.Fatal("created on error")
					}
					if _, err := e.Head(tc.path); !errors.Is(err, ErrNotFound) {
						t.Fatalf("failed fork left a stream: %v", err)
					}
					return
				}
				wantFork := tc.wantTail
				if tc.wantFork != nil {
					wantFork = *tc.wantFork
				}
				if !created || info.Tail != tc.wantTail || info.ForkedFrom != tc.opts.ForkFrom || info.ForkOffset != wantFork {
					t.Fatalf("info %+v created %v, want tail %d, fork offset %d", info, created, tc.wantTail, wantFork)
				}
				src, _ := e.Head(tc.opts.ForkFrom)
				if info.ContentType != src.ContentType {
					t.Fatalf("fork content type %q, source %q", info.ContentType, src.ContentType)
				}
				if got := readString(t, e, tc.path); got != tc.wantRead {
					t.Fatalf("read %q, want %q", got, tc.wantRead)
				}
			})
		}
		// Forking leaves the source unchanged.
		if got := readString(t, e, "src"); got != "hello world" {
			t.Fatalf("source %q", got)
		}
	})
}

func TestForkReadsAndAppends(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		big := strings.Repeat("0123456789", 1000) // spans several source segments
		mustCreate(t, e, "src", CreateOptions{Data: []byte(big)})
		mustCreate(t, e, "f1", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(5005)})
		mustAppend(t, e, "src", "SRC", AppendOptions{}) // after the fork: not in it
		mustAppend(t, e, "f1", "F1a", AppendOptions{})
		mustAppend(t, e, "f1", strings.Repeat("F", 5000), AppendOptions{})
		want1 := big[:5005] + "F1a" + strings.Repeat("F", 5000)
		if got := readString(t, e, "f1"); got != want1 {
			t.Fatalf("fork content differs: len %d vs %d", len(got), len(want1))
		}
		if got := readString(t, e, "src"); got != big+"SRC" {
			t.Fatal("source content changed by fork appends")
		}
		// A fork of the fork, inside the first fork's own data.
		mustCreate(t, e, "f2", CreateOptions{ForkFrom: "f1", ForkOffset: offPtr(5006)})
		mustAppend(t, e, "f2", "two", AppendOptions{})
		if got, want := readString(t, e, "f2"), want1[:5006]+"two"; got != want {
			t.Fatalf("fork of fork: %q..., want %q...", got[5000:], want[5000:])
		}
		// A fork of the fork, inside the source's data.
		mustCreate(t, e, "f3", CreateOptions{ForkFrom: "f1", ForkOffset: offPtr(100)})
		mustAppend(t, e, "f3", "three", AppendOptions{})
		if got, want := readString(t, e, "f3"), big[:100]+"three"; got != want {
			t.Fatalf("fork of fork below the first fork point: %q", got)
		}
		// Reads from offsets on both sides of each boundary.
		for _, from := range []Offset{0, 4999, 5004, 5005, 5006, 5008, Offset(len(want1))} {
			c, err := e.Read("f1", At(from), ReadOptions{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(c.Bytes()); got != want1[from:] {
				t.Fatalf("read f1 from %d: got %d bytes", from, len(got))
			}
			c.Release()
		}
		// A fork of a closed stream is open.
		mustAppend(t, e, "src", "", AppendOptions{Close: true})
		info := mustCreate(t, e, "f4", CreateOptions{ForkFrom: "src"})
		if info.Closed {
			t.Fatal("fork of a closed stream is closed")
		}
		mustAppend(t, e, "f4", "!", AppendOptions{})
		if got := readString(t, e, "f4"); got != big+"SRC!" {
			t.Fatal("fork of a closed stream content")
		}
	})
}

func TestForkIdempotent(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		mustCreate(t, e, "src", CreateOptions{ContentType: "text/plain", Data: []byte("0123456789")})
		mustCreate(t, e, "other", CreateOptions{ContentType: "text/plain", Data: []byte("0123456789")})
		mustCreate(t, e, "f", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(4), ForkSubOffset: 2})
		mustCreate(t, e, "fd", CreateOptions{ForkFrom: "src"}) // defaulted offset
		mustAppend(t, e, "src", "more", AppendOptions{})
		tests := []struct {
			name string
			path string
			opts CreateOptions
			want error
		}{
			{"same", "f", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(4), ForkSubOffset: 2}, nil},
			{"same with type", "f", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(4), ForkSubOffset: 2, ContentType: "text/plain"}, nil},
			{"other offset", "f", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(6)}, ErrConfigMismatch},
			{"other sub-offset", "f", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(4), ForkSubOffset: 1}, ErrConfigMismatch},
			{"other source", "f", CreateOptions{ForkFrom: "other", ForkOffset: offPtr(4), ForkSubOffset: 2}, ErrConfigMismatch},
			{"not a fork", "f", CreateOptions{ContentType: "text/plain"}, ErrConfigMismatch},
			{"other type", "f", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(4), ForkSubOffset: 2, ContentType: "image/png"}, ErrConfigMismatch},
			{"defaulted again (source grew)", "fd", CreateOptions{ForkFrom: "src"}, nil},
			{"plain stream as fork", "other", CreateOptions{ForkFrom: "src"}, ErrConfigMismatch},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				info, created, err := e.Create(ctx, tc.path, tc.opts)
				wantErrIs(t, "Create", err, tc.want)
				if created {
					t.Fatal("created = true")
				}
				if err == nil && info.ForkedFrom != "src" {
					t.Fatalf("info %+v", info)
				}
			})
		}
		if got := readString(t, e, "f"); got != "012345" {
			t.Fatalf("fork content %q", got)
		}
		if got := readString(t, e, "fd"); got != "0123456789" {
			t.Fatalf("defaulted fork content %q", got)
		}
	})
}

func TestForkWriterStateNotInherited(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		mustCreate(t, e, "src", CreateOptions{})
		for i := uint64(0); i < 3; i++ {
			mustAppend(t, e, "src", "s", AppendOptions{Seq: "m" + string(rune('0'+i)), Producer: &Producer{ID: "p", Epoch: 4, Seq: i}})
		}
		mustCreate(t, e, "fork", CreateOptions{ForkFrom: "src"})
		// On the fork the producer is new: epoch 0 seq 0 is accepted, not
		// fenced as stale and not a duplicate; Stream-Seq starts over.
		res := mustAppend(t, e, "fork", "f", AppendOptions{Seq: "a", Producer: &Producer{ID: "p", Epoch: 0, Seq: 0}})
		if res.Duplicate || res.Tail != 4 || res.ProducerEpoch != 0 || res.ProducerSeq != 0 {
			t.Fatalf("fork append: %+v", res)
		}
		// And the source's state is unchanged.
		res, err := e.Append(context.Background(), "src", []byte("s"), AppendOptions{Producer: &Producer{ID: "p", Epoch: 4, Seq: 2}})
		if err != nil || !res.Duplicate || res.ProducerSeq != 2 {
			t.Fatalf("source retry: %+v %v", res, err)
		}
		_, err = e.Append(context.Background(), "src", []byte("s"), AppendOptions{Seq: "m2"})
		wantErrIs(t, "source Stream-Seq", err, ErrSeqRegression)
		if got := readString(t, e, "fork"); got != "sssf" {
			t.Fatalf("fork %q", got)
		}
	})
}

func TestForkSoftDeleteAndCascade(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, smallOpts(mode))
		data := strings.Repeat("source-data ", 700) // several segments
		mustCreate(t, e, "src", CreateOptions{ContentType: "text/plain", Data: []byte(data)})
		mustCreate(t, e, "f1", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(1000)})
		mustAppend(t, e, "f1", "+f1", AppendOptions{})
		mustCreate(t, e, "f2", CreateOptions{ForkFrom: "f1"})
		mustAppend(t, e, "f2", "+f2", AppendOptions{})
		mustCreate(t, e, "g", CreateOptions{ForkFrom: "src"})
		var ids []uint64
		for _, p := range []string{"src", "f1", "f2", "g"} {
			s, _ := e.streams.Load(p)
			ids = append(ids, s.id)
		}

		if err := e.Delete(ctx, "src"); err != nil {
			t.Fatal(err)
		}
		gone := func(path string) {
			t.Helper()
			_, err := e.Head(path)
			wantErrIs(t, "head "+path, err, ErrGone)
			_, err = e.Read(path, ReadFrom{Kind: FromStart}, ReadOptions{})
			wantErrIs(t, "read "+path, err, ErrGone)
			_, err = e.Append(ctx, path, []byte("x"), AppendOptions{})
			wantErrIs(t, "append "+path, err, ErrGone)
			_, err = e.Append(ctx, path, nil, AppendOptions{Close: true})
			wantErrIs(t, "close "+path, err, ErrGone)
			wantErrIs(t, "delete "+path, e.Delete(ctx, path), ErrGone)
			wantErrIs(t, "wait "+path, e.Wait(ctx, path, 0), ErrGone)
			_, created, err := e.Create(ctx, path, CreateOptions{ContentType: "text/plain"})
			wantErrIs(t, "create on "+path, err, ErrConfigMismatch)
			if created {
				t.Fatal("created over a soft-deleted stream")
			}
			_, _, err = e.Create(ctx, "x/"+path, CreateOptions{ForkFrom: path})
			wantErrIs(t, "fork of soft-deleted "+path, err, ErrSourceDeleted)
		}
		gone("src")
		// Fork reads still see the source's data.
		if got := readString(t, e, "f1"); got != data[:1000]+"+f1" {
			t.Fatal("f1 after source soft-delete")
		}
		if got := readString(t, e, "f2"); got != data[:1000]+"+f1+f2" {
			t.Fatal("f2 after source soft-delete")
		}
		if got := readString(t, e, "g"); got != data {
			t.Fatal("g after source soft-delete")
		}
		mustAppend(t, e, "f1", "!", AppendOptions{})

		// Deleting g leaves the source (f1 still reads it).
		if err := e.Delete(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		_, err := e.Head("g")
		wantErrIs(t, "head g", err, ErrNotFound)
		gone("src")
		// Deleting f1 soft-deletes it (f2 reads it).
		if err := e.Delete(ctx, "f1"); err != nil {
			t.Fatal(err)
		}
		gone("f1")
		gone("src")
		if got := readString(t, e, "f2"); got != data[:1000]+"+f1+f2" {
			t.Fatal("f2 after f1 soft-delete")
		}
		// Deleting the last fork cascades up the chain.
		if err := e.Delete(ctx, "f2"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"src", "f1", "f2"} {
			_, err := e.Head(p)
			wantErrIs(t, "head after cascade "+p, err, ErrNotFound)
		}
		if st := e.Stats(); st.Streams != 0 {
			t.Fatalf("Stats.Streams = %d after cascade", st.Streams)
		}
		if mode == DurabilitySync {
			for _, id := range ids {
				if files := streamFiles(t, e, id); len(files) != 0 {
					t.Fatalf("stream %d files after cascade: %v", id, files)
				}
			}
		}
		// The paths are reusable.
		for _, p := range []string{"src", "f1"} {
			mustCreate(t, e, p, CreateOptions{Data: []byte("new")})
			if got := readString(t, e, p); got != "new" {
				t.Fatalf("recreated %s: %q", p, got)
			}
		}
		// A source whose only fork was deleted first is hard-deleted.
		mustCreate(t, e, "h", CreateOptions{Data: []byte("h")})
		mustCreate(t, e, "hf", CreateOptions{ForkFrom: "h"})
		if err := e.Delete(ctx, "hf"); err != nil {
			t.Fatal(err)
		}
		if err := e.Delete(ctx, "h"); err != nil {
			t.Fatal(err)
		}
		_, err = e.Head("h")
		wantErrIs(t, "head of source deleted after its fork", err, ErrNotFound)
		mustCreate(t, e, "h", CreateOptions{})
	})
}

func TestForkTTLInheritance(t *testing.T) {
	ctx := context.Background()
	clk := newTestClock()
	srcExp := clk.Now().Add(time.Hour)
	forkExp := clk.Now().Add(2 * time.Hour)
	type cfg struct {
		ttl     uint64
		hasTTL  bool
		expires time.Time
	}
	none, srcTTL, srcAt := cfg{}, cfg{ttl: 100, hasTTL: true}, cfg{expires: srcExp}
	forkTTL, forkAt := cfg{ttl: 50, hasTTL: true}, cfg{expires: forkExp}
	tests := []struct {
		name      string
		src, fork cfg
		want      cfg
	}{
		{"none/none", none, none, none},
		{"none/ttl", none, forkTTL, forkTTL},
		{"none/expires", none, forkAt, forkAt},
		{"ttl/none inherits ttl", srcTTL, none, srcTTL},
		{"ttl/ttl", srcTTL, forkTTL, forkTTL},
		{"ttl/expires", srcTTL, forkAt, forkAt},
		{"expires/none inherits expires", srcAt, none, srcAt},
		{"expires/ttl", srcAt, forkTTL, forkTTL},
		{"expires/expires", srcAt, forkAt, forkAt},
	}
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, _ := startEngine(t, clk.opts(smallOpts(mode)))
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				src, fork := "src"+string(rune('0'+i)), "fork"+string(rune('0'+i))
				mustCreate(t, e, src, CreateOptions{TTL: tc.src.ttl, HasTTL: tc.src.hasTTL, ExpiresAt: tc.src.expires, Data: []byte("d")})
				mustCreate(t, e, fork, CreateOptions{ForkFrom: src, TTL: tc.fork.ttl, HasTTL: tc.fork.hasTTL, ExpiresAt: tc.fork.expires})
				h, err := e.Head(fork)
				if err != nil {
					t.Fatal(err)
				}
				if h.HasTTL != tc.want.hasTTL || h.TTL != tc.want.ttl || !h.ExpiresAt.Equal(tc.want.expires) {
					t.Fatalf("fork ttl %v/%d expires %v, want %+v", h.HasTTL, h.TTL, h.ExpiresAt, tc.want)
				}
				// Re-creating the fork with the same request is idempotent.
				_, created, err := e.Create(ctx, fork, CreateOptions{ForkFrom: src, TTL: tc.fork.ttl, HasTTL: tc.fork.hasTTL, ExpiresAt: tc.fork.expires})
				if err != nil || created {
					t.Fatalf("idempotent fork create: %v %v", created, err)
				}
			})
		}
	})
}

// ---- TTL and expiry ----

func TestSlidingTTL(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		clk := newTestClock()
		e, _ := startEngine(t, clk.opts(smallOpts(mode)))
		ttl := CreateOptions{TTL: 10, HasTTL: true}
		type op func(path string) error
		read := func(p string) error {
			c, err := e.Read(p, ReadFrom{Kind: FromStart}, ReadOptions{})
			if err == nil {
				c.Release()
			}
			return err
		}
		appendOp := func(p string) error { _, err := e.Append(ctx, p, []byte("x"), AppendOptions{}); return err }
		head := func(p string) error { _, err := e.Head(p); return err }
		tests := []struct {
			name   string
			touch  op
			resets bool
		}{
			{"read resets", read, true},
			{"append resets", appendOp, true},
			{"head does not reset", head, false},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				p := "ttl" + string(rune('0'+i))
				mustCreate(t, e, p, ttl)
				clk.Advance(6 * time.Second)
				if err := tc.touch(p); err != nil {
					t.Fatal(err)
				}
				clk.Advance(6 * time.Second) // 12 s after create, 6 s after the touch
				_, err := e.Head(p)
				if tc.resets && err != nil {
					t.Fatalf("expired although touched 6 s ago: %v", err)
				}
				if !tc.resets {
					wantErrIs(t, "head after idle TTL", err, ErrNotFound)
					return
				}
				clk.Advance(4 * time.Second) // exactly 10 s idle
				_, err = e.Head(p)
				wantErrIs(t, "head after idle TTL", err, ErrNotFound)
				// Expired streams are gone for every operation, and the path is free.
				wantErrIs(t, "read expired", read(p), ErrNotFound)
				wantErrIs(t, "append expired", appendOp(p), ErrNotFound)
				info := mustCreate(t, e, p, CreateOptions{Data: []byte("fresh")})
				if info.HasTTL || info.Tail != 5 {
					t.Fatalf("recreated %+v", info)
				}
			})
		}
	})
}

func TestExpiresAt(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		clk := newTestClock()
		e, _ := startEngine(t, clk.opts(smallOpts(mode)))
		at := clk.Now().Add(10 * time.Second)
		mustCreate(t, e, "s", CreateOptions{ExpiresAt: at, Data: []byte("abc")})
		clk.Advance(9 * time.Second)
		if got := readString(t, e, "s"); got != "abc" {
			t.Fatal(got)
		}
		mustAppend(t, e, "s", "d", AppendOptions{}) // does not extend an absolute expiry
		clk.Advance(time.Second)
		_, err := e.Head("s")
		wantErrIs(t, "head at expiry", err, ErrNotFound)
		// Create on an expired path makes a new stream.
		_, created, err := e.Create(ctx, "s", CreateOptions{ExpiresAt: at, Data: []byte("x")})
		if err != nil || !created {
			t.Fatalf("create over expired: %v %v", created, err)
		}
		// ... which is itself already expired.
		_, err = e.Head("s")
		wantErrIs(t, "head of stream created past its expiry", err, ErrNotFound)
	})
}

func TestExpirySweep(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		clk := newTestClock()
		o := clk.opts(smallOpts(mode))
		o.ExpiryInterval = 5 * time.Millisecond
		e, _ := startEngine(t, o)
		mustCreate(t, e, "ttl", CreateOptions{TTL: 1, HasTTL: true, Data: []byte("x")})
		mustCreate(t, e, "keep", CreateOptions{Data: []byte("x")})
		clk.Advance(2 * time.Second)
		deadline := time.Now().Add(2 * time.Second)
		for {
			if _, ok := e.streams.Load("ttl"); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("expired stream not swept within 2 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := e.Head("keep"); err != nil {
			t.Fatal(err)
		}
		if st := e.Stats(); st.Streams != 1 {
			t.Fatalf("Stats.Streams = %d", st.Streams)
		}
	})
}

func TestExpiredSourceKeepsForks(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		clk := newTestClock()
		e, _ := startEngine(t, clk.opts(smallOpts(mode)))
		mustCreate(t, e, "src", CreateOptions{TTL: 10, HasTTL: true, Data: []byte("inherited")})
		mustCreate(t, e, "fork", CreateOptions{ForkFrom: "src", TTL: 1000, HasTTL: true})
		clk.Advance(11 * time.Second)
		if _, err := e.Head("src"); err == nil {
			t.Fatal("source did not expire")
		}
		if got := readString(t, e, "fork"); got != "inherited" {
			t.Fatalf("fork after source expiry: %q", got)
		}
		// Fork TTL is refreshed independently of the source.
		clk.Advance(999 * time.Second)
		if got := readString(t, e, "fork"); got != "inherited" {
			t.Fatalf("fork %q", got)
		}
	})
}

// TestExpiredSourceWithForksAnswersConsistently: once a stream with forks
// has expired, every lookup of its path should give the same answer. The
// lookup that notices the expiry says ErrNotFound, later ones ErrGone.
func TestExpiredSourceWithForksAnswersConsistently(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Durability) {
		clk := newTestClock()
		e, _ := startEngine(t, clk.opts(smallOpts(mode)))
		mustCreate(t, e, "src", CreateOptions{TTL: 10, HasTTL: true, Data: []byte("x")})
		mustCreate(t, e, "fork", CreateOptions{ForkFrom: "src", TTL: 1000, HasTTL: true})
		clk.Advance(11 * time.Second)
		_, err0 := e.Head("src")
		_, err1 := e.Head("src")
		if err0 == nil || err0 != err1 {
			t.Fatalf("expired source with a fork: first Head %v, then %v", err0, err1)
		}
	})
}

// ---- Restart persistence ----

// buildRestartState writes a set of streams whose writer state (producers,
// Stream-Seq, closure, forks, soft-delete) must survive a restart. mid runs
// half-way (a checkpoint, or nothing).
func buildRestartState(t *testing.T, e *Engine, mid func()) {
	t.Helper()
	ctx := context.Background()
	mustCreate(t, e, "prod", CreateOptions{ContentType: "text/plain"})
	for i := uint64(0); i < 3; i++ {
		mustAppend(t, e, "prod", "p"+string(rune('0'+i)), AppendOptions{Seq: "00" + string(rune('1'+i)), Producer: &Producer{ID: "w", Epoch: 1, Seq: i}})
	}
	mustCreate(t, e, "closed-by", CreateOptions{})
	mustAppend(t, e, "closed-by", "a", AppendOptions{Producer: &Producer{ID: "c", Epoch: 0, Seq: 0}})
	mustCreate(t, e, "src", CreateOptions{ContentType: "application/json", Data: []byte(`[1,2,3]`)})
	mustCreate(t, e, "fork", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(2), ForkSubOffset: 1})
	mustCreate(t, e, "src2", CreateOptions{Data: []byte(strings.Repeat("s2", 3000))})
	mustCreate(t, e, "fork2", CreateOptions{ForkFrom: "src2", ForkOffset: offPtr(10)})
	mustCreate(t, e, "gone", CreateOptions{Data: []byte("bye")})
	mid()
	mustAppend(t, e, "prod", "p3", AppendOptions{Seq: "004", Producer: &Producer{ID: "w", Epoch: 1, Seq: 3}})
	mustAppend(t, e, "prod", "q0", AppendOptions{Producer: &Producer{ID: "other", Epoch: 7, Seq: 0}})
	mustAppend(t, e, "closed-by", "z", AppendOptions{Producer: &Producer{ID: "c", Epoch: 0, Seq: 1}, Close: true})
	mustCreate(t, e, "closed-only", CreateOptions{Data: []byte("co")})
	mustAppend(t, e, "closed-only", "", AppendOptions{Close: true})
	mustAppend(t, e, "src", `4`, AppendOptions{})
	mustAppend(t, e, "fork", `"f"`, AppendOptions{})
	mustAppend(t, e, "fork2", "+f2", AppendOptions{})
	if err := e.Delete(ctx, "src2"); err != nil {
		t.Fatal(err)
	}
	if err := e.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
}

// checkRestartState verifies what buildRestartState wrote without changing
// anything (only rejected and duplicate requests).
func checkRestartState(t *testing.T, e *Engine) {
	t.Helper()
	ctx := context.Background()
	if got := readString(t, e, "prod"); got != "p0p1p2p3q0" {
		t.Fatalf("prod content %q", got)
	}
	res, err := e.Append(ctx, "prod", []byte("p3"), AppendOptions{Seq: "004", Producer: &Producer{ID: "w", Epoch: 1, Seq: 3}})
	if err != nil || !res.Duplicate || res.ProducerSeq != 3 || res.ProducerEpoch != 1 {
		t.Fatalf("producer retry after restart: %+v %v", res, err)
	}
	res, err = e.Append(ctx, "prod", []byte("p1"), AppendOptions{Producer: &Producer{ID: "w", Epoch: 1, Seq: 1}})
	if err != nil || !res.Duplicate || res.ProducerSeq != 3 {
		t.Fatalf("old producer retry after restart: %+v %v", res, err)
	}
	_, err = e.Append(ctx, "prod", []byte("x"), AppendOptions{Producer: &Producer{ID: "w", Epoch: 1, Seq: 5}})
	var ge *SeqGapError
	if !errors.As(err, &ge) || ge.Expected != 4 {
		t.Fatalf("producer gap after restart: %v", err)
	}
	_, err = e.Append(ctx, "prod", []byte("x"), AppendOptions{Producer: &Producer{ID: "w", Epoch: 0, Seq: 0}})
	var se *StaleEpochError
	if !errors.As(err, &se) || se.Current != 1 {
		t.Fatalf("stale epoch after restart: %v", err)
	}
	_, err = e.Append(ctx, "prod", []byte("x"), AppendOptions{Producer: &Producer{ID: "other", Epoch: 6, Seq: 0}})
	if !errors.As(err, &se) || se.Current != 7 {
		t.Fatalf("stale epoch (other) after restart: %v", err)
	}
	_, err = e.Append(ctx, "prod", []byte("x"), AppendOptions{Seq: "004"})
	wantErrIs(t, "Stream-Seq after restart", err, ErrSeqRegression)

	for path, final := range map[string]Offset{"closed-by": 2, "closed-only": 2} {
		h, err := e.Head(path)
		if err != nil || !h.Closed || h.Tail != final {
			t.Fatalf("%s after restart: %+v %v", path, h, err)
		}
		_, err = e.Append(ctx, path, []byte("x"), AppendOptions{})
		var ce *ClosedError
		if !errors.As(err, &ce) || ce.Final != final {
			t.Fatalf("append to %s after restart: %v", path, err)
		}
		res, err := e.Append(ctx, path, nil, AppendOptions{Close: true})
		if err != nil || !res.Duplicate || !res.Closed {
			t.Fatalf("close-only on %s after restart: %+v %v", path, res, err)
		}
	}
	res, err = e.Append(ctx, "closed-by", []byte("z"), AppendOptions{Producer: &Producer{ID: "c", Epoch: 0, Seq: 1}, Close: true})
	if err != nil || !res.Duplicate || !res.Closed || res.Tail != 2 {
		t.Fatalf("closing producer retry after restart: %+v %v", res, err)
	}
	if got := readString(t, e, "closed-by"); got != "az" {
		t.Fatalf("closed-by %q", got)
	}

	if got := readString(t, e, "src"); got != `[1,2,3,4]` {
		t.Fatalf("src %q", got)
	}
	if got := readString(t, e, "fork"); got != `[1,2,"f"]` {
		t.Fatalf("fork %q", got)
	}
	h, err := e.Head("fork")
	if err != nil || h.ForkedFrom != "src" || h.ForkOffset != 4 || h.ContentType != "application/json" {
		t.Fatalf("fork head %+v %v", h, err)
	}
	if _, created, err := e.Create(ctx, "fork", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(2), ForkSubOffset: 1}); err != nil || created {
		t.Fatalf("idempotent fork create after restart: %v %v", created, err)
	}
	if _, _, err := e.Create(ctx, "fork", CreateOptions{ForkFrom: "src", ForkOffset: offPtr(2)}); !errors.Is(err, ErrConfigMismatch) {
		t.Fatalf("mismatched fork create after restart: %v", err)
	}

	_, err = e.Head("src2")
	wantErrIs(t, "soft-deleted src2 after restart", err, ErrGone)
	if _, _, err := e.Create(ctx, "src2", CreateOptions{}); !errors.Is(err, ErrConfigMismatch) {
		t.Fatalf("create over soft-deleted after restart: %v", err)
	}
	if got := readString(t, e, "fork2"); got != strings.Repeat("s2", 5)+"+f2" {
		t.Fatalf("fork2 %q", got)
	}
	_, err = e.Head("gone")
	wantErrIs(t, "deleted stream after restart", err, ErrNotFound)
	if st := e.Stats(); st.Streams != 7 {
		t.Fatalf("Stats.Streams = %d, want 7", st.Streams)
	}
}

// mutateRestartState checks that the recovered writer state accepts what it
// should, and deletes the last fork of the soft-deleted source.
func mutateRestartState(t *testing.T, e *Engine) {
	t.Helper()
	ctx := context.Background()
	res := mustAppend(t, e, "prod", "p4", AppendOptions{Seq: "005", Producer: &Producer{ID: "w", Epoch: 1, Seq: 4}})
	if res.Duplicate || res.Tail != 12 {
		t.Fatalf("next producer append after restart: %+v", res)
	}
	if err := e.Delete(ctx, "fork2"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"fork2", "src2"} {
		_, err := e.Head(p)
		wantErrIs(t, "after cascade "+p, err, ErrNotFound)
	}
}

func TestRestartCloseReopen(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(dir, smallOpts(DurabilitySync))
	if err != nil {
		t.Fatal(err)
	}
	buildRestartState(t, e, func() {})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e, err = Open(dir, smallOpts(DurabilitySync))
	if err != nil {
		t.Fatal(err)
	}
	checkRestartState(t, e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen, write something unrelated, close: the checkpoint written at
	// this close must still carry every stream recovered from the previous
	// one, including those not touched since.
	e, err = Open(dir, smallOpts(DurabilitySync))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e, "unrelated", CreateOptions{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(dir, smallOpts(DurabilitySync))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Head("unrelated"); err != nil {
		t.Fatalf("unrelated: %v", err)
	}
	if err := e.Delete(context.Background(), "unrelated"); err != nil {
		t.Fatal(err)
	}
	checkRestartState(t, e)
	mutateRestartState(t, e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = startEngineIn(t, dir, smallOpts(DurabilitySync))
	if got := readString(t, e, "prod"); got != "p0p1p2p3q0p4" {
		t.Fatalf("prod after last reopen %q", got)
	}
	for _, p := range []string{"fork2", "src2"} {
		_, err := e.Head(p)
		wantErrIs(t, "cascade after reopen "+p, err, ErrNotFound)
	}
}

// TestCheckpointKeepsRecoveredStreams is the minimal form of a data-loss bug:
// a stream recovered from a checkpoint and not written since must be in the
// next checkpoint too.
func TestCheckpointKeepsRecoveredStreams(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(DurabilitySync)
	e := startEngineIn(t, dir, o)
	mustCreate(t, e, "old", CreateOptions{Data: []byte("precious")})
	if err := e.Close(); err != nil { // checkpoint 1 holds "old"
		t.Fatal(err)
	}
	e = startEngineIn(t, dir, o)
	mustCreate(t, e, "new", CreateOptions{}) // something to checkpoint
	if err := e.Checkpoint(); err != nil {   // checkpoint 2 (drops the WAL before it)
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = startEngineIn(t, dir, o)
	if _, err := e.Head("new"); err != nil {
		t.Fatalf("new: %v", err)
	}
	if _, err := e.Head("old"); err != nil {
		t.Fatalf("stream recovered from checkpoint 1 and not written since is lost after checkpoint 2: %v", err)
	}
	if got := readString(t, e, "old"); got != "precious" {
		t.Fatalf("old: %q", got)
	}
}

func TestRestartCrashImage(t *testing.T) {
	tests := []struct {
		name string
		mid  func(t *testing.T, e *Engine)
		end  func(t *testing.T, e *Engine)
	}{
		{"checkpoint at end", func(*testing.T, *Engine) {}, func(t *testing.T, e *Engine) {
			if err := e.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}},
		{"checkpoint half-way", func(t *testing.T, e *Engine) {
			if err := e.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}, func(*testing.T, *Engine) {}},
		{"no checkpoint (replay only)", func(*testing.T, *Engine) {}, func(*testing.T, *Engine) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, dir := startEngine(t, smallOpts(DurabilitySync))
			buildRestartState(t, e, func() { tc.mid(t, e) })
			tc.end(t, e)
			img := copyTree(t, dir)
			e2 := startEngineIn(t, img, smallOpts(DurabilitySync))
			checkRestartState(t, e2)
			mutateRestartState(t, e2)
			// The image's own second life: crash again (copy), recover again.
			img2 := copyTree(t, img)
			e3 := startEngineIn(t, img2, smallOpts(DurabilitySync))
			if got := readString(t, e3, "prod"); got != "p0p1p2p3q0p4" {
				t.Fatalf("prod after second crash %q", got)
			}
			_, err := e3.Head("src2")
			wantErrIs(t, "src2 after second crash", err, ErrNotFound)
		})
	}
}

// TestTTLAfterReplay: a sliding TTL counts from the last read or write. An
// append that is recovered by replaying the commit log (no checkpoint since)
// must not leave the stream looking idle since its creation.
func TestTTLAfterReplay(t *testing.T) {
	clk := newTestClock()
	e, dir := startEngine(t, clk.opts(smallOpts(DurabilitySync)))
	mustCreate(t, e, "ttl", CreateOptions{TTL: 100, HasTTL: true, Data: []byte("a")})
	clk.Advance(90 * time.Second)
	mustAppend(t, e, "ttl", "b", AppendOptions{}) // last access: +90 s
	img := copyTree(t, dir)
	clk.Advance(30 * time.Second) // +120 s: 30 s idle
	e2 := startEngineIn(t, img, clk.opts(smallOpts(DurabilitySync)))
	if _, err := e2.Head("ttl"); err != nil {
		t.Fatalf("stream written 30 s ago with a 100 s TTL is gone after recovery: %v", err)
	}
}

func TestTTLPersistsAcrossRestart(t *testing.T) {
	clk := newTestClock()
	o := clk.opts(smallOpts(DurabilitySync))
	dir := t.TempDir()
	e := startEngineIn(t, dir, o)
	at := clk.Now().Add(time.Hour)
	mustCreate(t, e, "ttl", CreateOptions{TTL: 100, HasTTL: true})
	mustCreate(t, e, "exp", CreateOptions{ExpiresAt: at})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = startEngineIn(t, dir, o)
	h, err := e.Head("ttl")
	if err != nil || !h.HasTTL || h.TTL != 100 {
		t.Fatalf("ttl after restart: %+v %v", h, err)
	}
	h, err = e.Head("exp")
	if err != nil || !h.ExpiresAt.Equal(at) {
		t.Fatalf("expiry after restart: %+v %v", h, err)
	}
	clk.Advance(2 * time.Hour)
	for _, p := range []string{"ttl", "exp"} {
		_, err := e.Head(p)
		wantErrIs(t, p+" after its time", err, ErrNotFound)
	}
}

func TestEngineClosed(t *testing.T) {
	ctx := context.Background()
	forEachMode(t, func(t *testing.T, mode Durability) {
		e, err := Open(t.TempDir(), smallOpts(mode))
		if err != nil {
			t.Fatal(err)
		}
		mustCreate(t, e, "s", CreateOptions{})
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		wantErrIs(t, "Err", e.Err(), ErrEngineClosed)
		_, _, err = e.Create(ctx, "t", CreateOptions{})
		wantErrIs(t, "Create", err, ErrEngineClosed)
		_, err = e.Append(ctx, "s", []byte("x"), AppendOptions{})
		wantErrIs(t, "Append", err, ErrEngineClosed)
		wantErrIs(t, "Delete", e.Delete(ctx, "s"), ErrEngineClosed)
		wantErrIs(t, "Wait", e.Wait(ctx, "s", 0), ErrEngineClosed)
		if mode == DurabilitySync {
			wantErrIs(t, "Checkpoint", e.Checkpoint(), ErrEngineClosed)
		}
	})
}

func TestOpenOptions(t *testing.T) {
	if _, err := Open("", nil); err == nil {
		t.Error("sync mode without a directory: want error")
	}
	e, err := Open("", &Options{Durability: DurabilityMemory})
	if err != nil {
		t.Fatalf("memory mode without a directory: %v", err)
	}
	e.Close()
	for _, o := range []*Options{
		{Durability: "fast"},
		{WALSegmentSize: 1 << 10},
		{MinSegmentSize: 32},
		{MinSegmentSize: 8192, MaxSegmentSize: 4096},
		{MaxMappedSegments: 8},
		{MaxRecordSize: 2 << 30},
		{CheckpointInterval: -1},
	} {
		if _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("Open with %+v: want a validation error", *o)
		}
	}
	// A directory is locked by one engine at a time.
	dir := t.TempDir()
	e1 := startEngineIn(t, dir, nil)
	if e2, err := Open(dir, nil); err == nil {
		e2.Close()
		t.Fatal("second Open of a locked directory succeeded")
	}
	e1.Close()
	startEngineIn(t, dir, nil)
}

// streamFiles lists a stream's segment and index files.
func streamFiles(t *testing.T, e *Engine, id uint64) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(e.store.fanDir(id), fmt.Sprintf("%016x.*", id)))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestCheckpointV1StillLoads: a checkpoint in the first format (stream
// count in the header, written in one piece) is still read.
func TestCheckpointV1StillLoads(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(DurabilitySync)
	o.MinSegmentSize, o.MaxSegmentSize = 2*maxSlot, 2*maxSlot // files of their own: the old formats have no slab slots
	e := startEngineIn(t, dir, o)
	mustCreate(t, e, "a", CreateOptions{Data: []byte("one")})
	mustCreate(t, e, "b", CreateOptions{ContentType: "application/json", Data: []byte(`[1,2]`)})
	e.opts.ckptV2 = true
	err := e.Close()
	if err != nil {
		t.Fatal(err)
	}
	// As written, v2 loads.
	e = startEngineIn(t, dir, o)
	if got := readString(t, e, "b"); got != "[1,2]" {
		t.Fatalf("b from a v2 checkpoint: %q", got)
	}
	e.Close() // nothing new: the checkpoint stays as it was
	path := filepath.Join(dir, ckptName)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw[:len(ckptMagicV2)]) != string(ckptMagicV2) {
		t.Fatalf("checkpoint starts %q", raw[:len(ckptMagicV2)])
	}
	// Rewrite it as v1: magic, c0, nextID, count, streams, CRC.
	body := raw[:len(raw)-4]
	hdr := len(ckptMagicV2) + 16
	count := body[len(body)-8:]
	v1 := append([]byte(nil), ckptMagicV1...)
	v1 = append(v1, body[len(ckptMagicV2):hdr]...)
	v1 = append(v1, count...)
	v1 = append(v1, body[hdr:len(body)-8]...)
	v1 = binary.LittleEndian.AppendUint32(v1, crc32.Checksum(v1, castagnoli))
	if err := os.WriteFile(path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	e = startEngineIn(t, dir, o)
	if got := readString(t, e, "a"); got != "one" {
		t.Fatalf("a: %q", got)
	}
	if got := readString(t, e, "b"); got != "[1,2]" {
		t.Fatalf("b: %q", got)
	}
}
