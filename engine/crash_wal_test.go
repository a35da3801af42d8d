package engine_test

// Recovery from a damaged commit log. A store is written by one goroutine
// (so the commit-log order of its operations is known), then copied while
// the engine is still open: every acknowledged append is durable in the
// commit log by then, so the copy is a valid crash image (nothing is
// checkpointed: the interval is an hour). The last commit-log segment of the
// copy is then damaged, and the copy must recover to exactly the operations
// whose records lie wholly before the first damaged byte: for every stream a
// prefix of its appends ending on an append boundary, never a partial or
// garbled append, and the same cut for every stream.
//
//	go test ./engine -run 'Recover' -count=1 -v

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/segment"
)

func walTestOptions() *engine.Options {
	return &engine.Options{
		Durability:         engine.DurabilitySync,
		WALSegmentSize:     64 << 10, // the minimum: many segments
		CheckpointInterval: time.Hour,
		MinSegmentSize:     4096,
		MaxSegmentSize:     64 << 10,
	}
}

// walOp is one operation of the single writer, in commit-log order. Each
// writes exactly one commit-log record.
type walOp struct {
	stream string
	create bool
	json   bool
	data   []byte // stored bytes appended (JSON: framed)
	body   []byte // request body
	close  bool
	prod   *engine.Producer
}

type walStore struct {
	dir     string // the crash image
	ops     []walOp
	streams []string
}

// walBuildStore writes a deterministic store with nops appends and returns a
// crash image of it.
func walBuildStore(t testing.TB, seed uint64, nops int) *walStore {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 1))
	live := t.TempDir()
	e, err := engine.Open(live, walTestOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ws := &walStore{}
	closed := map[string]bool{}
	prodSeq := map[string]uint64{}
	do := func(op walOp) {
		if op.create {
			ct := "application/octet-stream"
			if op.json {
				ct = "application/json"
			}
			if _, created, err := e.Create(ctx, op.stream, engine.CreateOptions{ContentType: ct}); err != nil || !created {
				t.Fatalf("create %s: %v %v", op.stream, created, err)
			}
		} else {
			res, err := e.Append(ctx, op.stream, op.body, engine.AppendOptions{Close: op.close, Producer: op.prod})
			if err != nil || res.Duplicate {
				t.Fatalf("append %s: %+v %v", op.stream, res, err)
			}
		}
		ws.ops = append(ws.ops, op)
	}
	for i := range 6 {
		kind := "bin"
		if i%2 == 0 {
			kind = "json"
		}
		p := fmt.Sprintf("wal/%s/%d", kind, i)
		ws.streams = append(ws.streams, p)
		do(walOp{stream: p, create: true, json: kind == "json"})
	}
	for n := range nops {
		p := ws.streams[rng.IntN(len(ws.streams))]
		if closed[p] {
			continue
		}
		op := walOp{stream: p, json: strings.HasPrefix(p, "wal/json/")}
		closing := n > nops/3 && rng.IntN(nops/2) == 0
		if !closing || rng.IntN(2) == 0 {
			if op.json {
				op.body, op.data = crashJSONBody(rng, 0, 1, n)
			} else {
				size := int(math.Exp(rng.Float64() * math.Log(6000)))
				if size > crashTinyMax && size < crashFullMin {
					size = crashFullMin
				}
				op.body = crashBinRecord(max(size, 1), 0, 1, uint32(n))
				op.data = op.body
			}
		}
		op.close = closing
		if rng.IntN(3) == 0 {
			op.prod = &engine.Producer{ID: "p-" + p, Epoch: 1, Seq: prodSeq[p]}
			prodSeq[p]++
		}
		do(op)
		if closing {
			closed[p] = true
		}
	}
	ws.dir = t.TempDir()
	if err := walCopyDir(live, ws.dir); err != nil {
		t.Fatal(err)
	}
	return ws
}

// walCopyDir copies the regular files under src to dst.
func walCopyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
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
}

// walSegInfo describes the commit-log segment holding the end of the log.
type walSegInfo struct {
	path       string
	size       int64
	recordEnds []int64 // end offset of each record in the segment
	opsBefore  int     // operations whose records are in earlier segments
}

// walLastSegment finds the last commit-log segment that holds records (a
// prepared spare after it holds none) and its record boundaries.
func walLastSegment(t testing.TB, dir string, nops int) walSegInfo {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no commit-log segments in %s: %v", dir, err)
	}
	sort.Strings(names) // zero-padded LSNs
	for i := len(names) - 1; i >= 0; i-- {
		b, err := os.ReadFile(names[i])
		if err != nil {
			t.Fatal(err)
		}
		info := walSegInfo{path: names[i], size: int64(len(b))}
		var pos int64
		for {
			p, next, err := segment.ReadRecord(b, pos)
			if err != nil {
				if err != io.EOF {
					t.Fatalf("%s: record at %d: %v", names[i], pos, err)
				}
				break
			}
			if len(p) == 1 && p[0] == 1 {
				t.Fatalf("%s: the last segment with records ends with a rollover", names[i])
			}
			info.recordEnds = append(info.recordEnds, next)
			pos = next
		}
		if len(info.recordEnds) == 0 {
			continue
		}
		info.opsBefore = nops - len(info.recordEnds)
		if info.opsBefore < 0 {
			t.Fatalf("%s holds %d records, but only %d operations were made", names[i], len(info.recordEnds), nops)
		}
		return info
	}
	t.Fatalf("no commit-log segment in %s holds records", dir)
	return walSegInfo{}
}

// expectedCut returns how many operations survive damage whose first changed
// byte is at off (or a cut of the segment at off).
func (s walSegInfo) expectedCut(off int64) int {
	n := sort.Search(len(s.recordEnds), func(i int) bool { return s.recordEnds[i] > off })
	return s.opsBefore + n
}

// walStreamState is what the first k operations leave in a stream.
type walStreamState struct {
	exists  bool
	data    []byte
	ends    map[int]int // stored length after each op -> ops of the stream so far
	closed  bool
	prodSeq int64 // last producer seq, -1 if none
	nops    int   // operations on the stream
}

func walStateAt(ops []walOp, k int, stream string) walStreamState {
	st := walStreamState{prodSeq: -1, ends: map[int]int{}}
	for _, op := range ops[:k] {
		if op.stream != stream {
			continue
		}
		st.nops++
		if op.create {
			st.exists = true
			st.ends[0] = st.nops
			continue
		}
		if len(op.data) > 0 {
			st.data = append(st.data, op.data...)
			st.ends[len(st.data)] = st.nops
		}
		st.closed = st.closed || op.close
		if op.prod != nil {
			st.prodSeq = int64(op.prod.Seq)
		}
	}
	return st
}

// walCheckRecovered opens dir and checks that it holds exactly the first
// want operations (want < 0: any prefix, consistently cut across streams).
// It returns the cut it found, and leaves the engine open for the caller.
func walCheckRecovered(t testing.TB, dir string, ws *walStore, want int, what string) (*engine.Engine, int) {
	t.Helper()
	e, err := engine.Open(dir, walTestOptions())
	if err != nil {
		t.Fatalf("%s: open after damage: %v (ErrCorrupt: %v)", what, err, errors.Is(err, engine.ErrCorrupt))
	}
	// For each stream, the number of its operations present.
	lo, hi := 0, len(ws.ops) // the global cut lies in [lo, hi]
	for _, path := range ws.streams {
		full := walStateAt(ws.ops, len(ws.ops), path)
		info, err := e.Head(path)
		var got []byte
		switch {
		case errors.Is(err, engine.ErrNotFound):
		case err != nil:
			t.Fatalf("%s: head %s: %v", what, path, err)
		default:
			c, err := e.Read(path, engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{MaxBytes: 1 << 30})
			if err != nil {
				t.Fatalf("%s: read %s: %v", what, path, err)
			}
			for _, b := range c.Data() {
				got = append(got, b...)
			}
			c.Release()
			if uint64(info.Tail) != uint64(len(got)) {
				t.Fatalf("%s: %s: tail %d, read %d bytes", what, path, info.Tail, len(got))
			}
		}
		present := 0 // operations of this stream present
		if err == nil {
			n, ok := full.ends[len(got)]
			if !ok || !bytes.Equal(got, full.data[:len(got)]) {
				t.Fatalf("%s: %s: recovered %d bytes are not the acked content cut at an append boundary", what, path, len(got))
			}
			present = n
			// Operations without data (a bare close) after the last data
			// op: the close flag says whether they are present.
			for present < full.nops {
				op := walNth(ws.ops, path, present)
				if len(op.data) > 0 || !op.close || !info.Closed {
					break
				}
				present++
			}
			pre := walStateAt(ws.ops, walGlobalIndex(ws.ops, path, present), path)
			if info.Closed != pre.closed {
				t.Fatalf("%s: %s: closed %v, but the ops up to the recovered content say %v", what, path, info.Closed, pre.closed)
			}
		}
		// Global cut: it includes the stream's first `present` ops and not
		// the next one.
		if present > 0 {
			lo = max(lo, walGlobalIndex(ws.ops, path, present))
		}
		if present < full.nops {
			hi = min(hi, walGlobalIndex(ws.ops, path, present+1)-1)
		}
	}
	if lo > hi {
		t.Fatalf("%s: streams were recovered to inconsistent cuts of the commit log (%d > %d): not a prefix", what, lo, hi)
	}
	if want >= 0 && (want < lo || want > hi) {
		t.Fatalf("%s: recovered to a cut in [%d,%d] of %d operations, want exactly %d", what, lo, hi, len(ws.ops), want)
	}
	return e, lo
}

// walNth returns the stream's i-th operation (0-based).
func walNth(ops []walOp, stream string, i int) walOp {
	for _, op := range ops {
		if op.stream == stream {
			if i == 0 {
				return op
			}
			i--
		}
	}
	panic("no such op")
}

// walGlobalIndex returns the number of operations up to and including the
// stream's n-th (1-based) operation.
func walGlobalIndex(ops []walOp, stream string, n int) int {
	if n == 0 {
		return 0
	}
	for g, op := range ops {
		if op.stream == stream {
			n--
			if n == 0 {
				return g + 1
			}
		}
	}
	panic("no such op")
}

// walCheckWritable appends to every recovered open stream (continuing its
// producer), reopens and checks the result: the log must continue cleanly
// after the damage.
func walCheckWritable(t testing.TB, e *engine.Engine, dir string, ws *walStore, cut int, what string) {
	t.Helper()
	ctx := context.Background()
	want := map[string][]byte{}
	wantClosed := map[string]bool{}
	for i, path := range ws.streams {
		st := walStateAt(ws.ops, cut, path)
		if !st.exists {
			continue
		}
		want[path] = st.data
		wantClosed[path] = st.closed
		if st.closed {
			if _, err := e.Append(ctx, path, []byte(`{"x":1}`), engine.AppendOptions{}); !errors.Is(err, engine.ErrClosed) {
				t.Fatalf("%s: append to closed %s: %v", what, path, err)
			}
			continue
		}
		var body, stored []byte
		if strings.HasPrefix(path, "wal/json/") {
			body, stored = crashJSONBody(rand.New(rand.NewPCG(uint64(i), 9)), 9, 9, 9)
		} else {
			body = crashBinRecord(100+i, 9, 9, 9)
			stored = body
		}
		o := engine.AppendOptions{Producer: &engine.Producer{ID: "p-" + path, Epoch: 1, Seq: uint64(st.prodSeq + 1)}}
		res, err := e.Append(ctx, path, body, o)
		if err != nil || res.Duplicate || uint64(res.Tail) != uint64(len(st.data)+len(stored)) {
			t.Fatalf("%s: append to recovered %s (producer seq %d): %+v %v; recovered tail %d",
				what, path, o.Producer.Seq, res, err, len(st.data))
		}
		want[path] = append(append([]byte(nil), st.data...), stored...)
		if i%2 == 0 {
			if _, err := e.Append(ctx, path, nil, engine.AppendOptions{Close: true}); err != nil {
				t.Fatalf("%s: close %s: %v", what, path, err)
			}
			wantClosed[path] = true
		}
	}
	if err := e.Close(); err != nil {
		t.Fatalf("%s: close: %v", what, err)
	}
	e, err := engine.Open(dir, walTestOptions())
	if err != nil {
		t.Fatalf("%s: reopen after writing past the damage: %v", what, err)
	}
	defer e.Close()
	for _, path := range ws.streams {
		info, err := e.Head(path)
		w, ok := want[path]
		if !ok {
			if !errors.Is(err, engine.ErrNotFound) {
				t.Fatalf("%s: %s: head %+v %v, want not found", what, path, info, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %s after reopen: %v", what, path, err)
		}
		c, err := e.Read(path, engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{MaxBytes: 1 << 30})
		if err != nil {
			t.Fatalf("%s: read %s: %v", what, path, err)
		}
		var got []byte
		for _, b := range c.Data() {
			got = append(got, b...)
		}
		c.Release()
		if !bytes.Equal(got, w) || info.Closed != wantClosed[path] {
			t.Fatalf("%s: %s after reopen: %d bytes closed=%v, want %d bytes closed=%v (equal prefix: %v)",
				what, path, len(got), info.Closed, len(w), wantClosed[path], bytes.HasPrefix(got, w))
		}
	}
}

func walSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("DURASTREAM_WAL_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	t.Logf("seed %d (rerun with DURASTREAM_WAL_SEED=%d)", seed, seed)
	return seed
}

// walDamage runs iterations of damage applied by damage(), which gets a
// fresh copy of the image's last segment bytes and returns the new bytes
// (possibly shorter) and the first offset it changed (-1: none).
func walDamage(t *testing.T, iterations int, damage func(rng *rand.Rand, seg walSegInfo, b []byte) ([]byte, int64, string)) {
	seed := walSeed(t)
	ws := walBuildStore(t, 42, 400)
	seg := walLastSegment(t, ws.dir, len(ws.ops))
	t.Logf("store: %d operations; last segment %s holds %d records (%d bytes)",
		len(ws.ops), filepath.Base(seg.path), len(seg.recordEnds), seg.recordEnds[len(seg.recordEnds)-1])
	rng := rand.New(rand.NewPCG(seed, 2))
	cuts := map[int]bool{}
	for it := range iterations {
		dir := filepath.Join(t.TempDir(), "img")
		if err := walCopyDir(ws.dir, dir); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "wal", filepath.Base(seg.path))
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b, first, desc := damage(rng, seg, append([]byte(nil), orig...))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want := len(ws.ops)
		if first >= 0 {
			want = seg.expectedCut(first)
		}
		what := fmt.Sprintf("iteration %d (seed %d): %s", it, seed, desc)
		e, cut := walCheckRecovered(t, dir, ws, want, what)
		cuts[cut] = true
		walCheckWritable(t, e, dir, ws, cut, what)
	}
	t.Logf("%d damaged images recovered to %d distinct cuts", iterations, len(cuts))
}

// firstDiff returns the first offset where a and b differ (a shorter b
// differs at its length), or -1.
func firstDiff(a, b []byte) int64 {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return int64(i)
		}
	}
	if len(a) != len(b) {
		return int64(min(len(a), len(b)))
	}
	return -1
}

// TestRecoverTruncatedWAL cuts the log short. zeroed-tail is what a crash
// leaves (segments are preallocated, so a torn write leaves zeros or stale
// bytes after the last whole record); shortened-file also makes the file
// itself shorter, which a crash does not do, but recovery should cope.
func TestRecoverTruncatedWAL(t *testing.T) {
	t.Run("zeroed-tail", func(t *testing.T) {
		walDamage(t, 50, func(rng *rand.Rand, seg walSegInfo, b []byte) ([]byte, int64, string) {
			orig := append([]byte(nil), b...)
			end := seg.recordEnds[len(seg.recordEnds)-1]
			// A cut inside the written part, often exactly at a record
			// boundary or inside a record header.
			off := rng.Int64N(end + 1)
			switch rng.IntN(4) {
			case 0:
				off = seg.recordEnds[rng.IntN(len(seg.recordEnds))]
			case 1:
				off = seg.recordEnds[rng.IntN(len(seg.recordEnds))] + rng.Int64N(segment.HeaderSize)
			}
			off = min(off, end)
			clear(b[off:])
			return b, firstDiff(orig, b), fmt.Sprintf("zeroed from %d to the end of the file (log end %d)", off, end)
		})
	})
	t.Run("shortened-file", func(t *testing.T) {
		// The file ends at or inside the log: recovery must succeed and
		// the log must go on, even with no room left for a rollover record.
		first := true
		walDamage(t, 12, func(rng *rand.Rand, seg walSegInfo, b []byte) ([]byte, int64, string) {
			end := seg.recordEnds[len(seg.recordEnds)-1]
			n := end // the first time: exactly at the log end
			switch {
			case first:
				first = false
			case rng.IntN(3) == 0:
				n = seg.recordEnds[rng.IntN(len(seg.recordEnds))] + rng.Int64N(segment.HeaderSize+2)
			default:
				n = 1 + rng.Int64N(end)
			}
			n = min(n, end)
			return b[:n], firstDiff(b, b[:n]), fmt.Sprintf("file shortened to %d bytes (log end %d)", n, end)
		})
	})
}

func TestRecoverCorruptWAL(t *testing.T) {
	walDamage(t, 50, func(rng *rand.Rand, seg walSegInfo, b []byte) ([]byte, int64, string) {
		orig := append([]byte(nil), b...)
		end := seg.recordEnds[len(seg.recordEnds)-1]
		off := rng.Int64N(end)
		if rng.IntN(4) == 0 { // hit a record header
			off = seg.recordEnds[rng.IntN(len(seg.recordEnds))] + rng.Int64N(segment.HeaderSize)
			off = min(off, end-1)
		}
		var desc string
		switch rng.IntN(5) {
		case 0, 1:
			bit := byte(1) << rng.IntN(8)
			b[off] ^= bit
			desc = fmt.Sprintf("flipped bit %#x at %d", bit, off)
		case 2:
			n := 1 + rng.Int64N(512)
			clear(b[off:min(off+n, int64(len(b)))])
			desc = fmt.Sprintf("zeroed [%d,%d)", off, off+n)
		case 3:
			n := 1 + rng.Int64N(64)
			for i := off; i < min(off+n, int64(len(b))); i++ {
				b[i] = byte(rng.Uint32())
			}
			desc = fmt.Sprintf("garbage in [%d,%d)", off, off+n)
		case 4:
			// Garbage after the end of the log: must be ignored, unless it
			// lands on the zero header that marks the end.
			off = end + rng.Int64N(min(4096, int64(len(b))-end))
			n := 1 + rng.Int64N(64)
			for i := off; i < min(off+n, int64(len(b))); i++ {
				b[i] = byte(rng.Uint32())
			}
			desc = fmt.Sprintf("garbage after the log end %d in [%d,%d)", end, off, off+n)
		}
		first := firstDiff(orig, b)
		return b, first, desc
	})
}

// TestRecoverConcurrentCrashImage writes from many goroutines with small
// commit-log segments (so segments roll over constantly while the segment
// preparer works), stops, takes a crash image of the open store and checks
// that every acknowledged append is in it.
func TestRecoverConcurrentCrashImage(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	seed := walSeed(t)
	for round := range 5 {
		walConcurrentImage(t, seed+uint64(round))
		if t.Failed() {
			t.Fatalf("round %d failed (seed %d)", round, seed+uint64(round))
		}
	}
}

func walConcurrentImage(t *testing.T, seed uint64) {
	ctx := context.Background()
	live := t.TempDir()
	e, err := engine.Open(live, walTestOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const writers, streams, perWriter = 16, 8, 150
	for i := range streams {
		if _, _, err := e.Create(ctx, fmt.Sprintf("c/%d", i), engine.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	type ack struct {
		start, end uint64
		hash       uint64
	}
	var mu sync.Mutex
	acks := map[string][]ack{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for n := range perWriter {
				p := fmt.Sprintf("c/%d", rng.IntN(streams))
				body := crashBinRecord(crashFullMin+rng.IntN(8000), uint32(w), 1, uint32(n))
				res, err := e.Append(ctx, p, body, engine.AppendOptions{})
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				acks[p] = append(acks[p], ack{uint64(res.Tail) - uint64(len(body)), uint64(res.Tail), crashHash(body)})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	time.Sleep(50 * time.Millisecond) // let the segment preparer settle
	img := t.TempDir()
	if err := walCopyDir(live, img); err != nil {
		t.Fatal(err)
	}
	e2, err := engine.Open(img, walTestOptions())
	if err != nil {
		t.Fatalf("open crash image: %v", err)
	}
	defer e2.Close()
	total := 0
	for p, as := range acks {
		c, err := e2.Read(p, engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{MaxBytes: 1 << 30})
		if err != nil {
			t.Errorf("crash image: read %s: %v", p, err)
			continue
		}
		var data []byte
		for _, b := range c.Data() {
			data = append(data, b...)
		}
		c.Release()
		lost := 0
		for _, a := range as {
			if a.end > uint64(len(data)) || crashHash(data[a.start:a.end]) != a.hash {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("crash image: %s: %d of %d acked appends missing or wrong (recovered %d bytes)", p, lost, len(as), len(data))
		}
		total += len(as)
	}
	names, _ := filepath.Glob(filepath.Join(live, "wal", "*.wal"))
	t.Logf("seed %d: %d acked appends checked in the crash image (%d commit-log files in the live store)", seed, total, len(names))
}
