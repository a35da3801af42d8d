package fuzz

// FuzzRecoverWAL damages the end of a store's commit log and recovers it.
// Run it with:
//
//	go test ./fuzz -run=^$ -fuzz=FuzzRecoverWAL -fuzztime=60s
//
// With DURASTREAM_FUZZ_STRICT=1 an Open error wrapping engine.ErrCorrupt
// fails too (by contract it is acceptable, but with only the tail of the
// last segment damaged it should never happen).
//
// The store is built once per process by one writer, so the commit-log order
// of its operations is known, and copied while the engine is open (nothing
// is checkpointed: every acknowledged operation is in the commit log, so the
// copy is a valid crash image). Each input damages the last commit-log
// segment that holds records:
//
//	input[0:4]  little-endian position, taken modulo (log end + 512)
//	input[4]    mode: %4 == 0 XOR the patch in, 1 overwrite with the patch,
//	            2 zero len(patch) bytes, 3 zero everything from the position
//	input[5:]   the patch (at most 1 KiB is used)
//
// Recovery must not panic, must open (see above), and must hold exactly the
// operations whose records lie wholly before the first changed byte: for
// every stream, its acknowledged content cut at an append boundary (never a
// partial or garbled append), closed iff its close is in the cut, and the
// same cut for every stream. The recovered store must accept an append that
// continues each producer.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/segment"
)

func recoverFuzzOptions() *engine.Options {
	return &engine.Options{
		Durability:         engine.DurabilitySync,
		WALSegmentSize:     64 << 10,
		CheckpointInterval: time.Hour,
		MinSegmentSize:     4096,
		MaxSegmentSize:     64 << 10,
	}
}

// rfOp is one operation, in commit-log order; each writes one record.
type rfOp struct {
	stream string
	create bool
	data   []byte // stored bytes
	close  bool
	prod   int64 // producer seq, -1 if none
}

type rfStore struct {
	files     map[string][]byte // the crash image, by relative path
	ops       []rfOp
	streams   []string
	lastWAL   string  // relative path of the last segment with records
	ends      []int64 // record ends in it
	opsBefore int     // operations in earlier segments
}

// rfBuild writes the fixed store and returns its crash image.
func rfBuild(f *testing.F) *rfStore {
	ctx := context.Background()
	live := f.TempDir()
	e, err := engine.Open(live, recoverFuzzOptions())
	if err != nil {
		f.Fatal(err)
	}
	defer e.Close()
	st := &rfStore{files: map[string][]byte{}}
	prodSeq := map[string]int64{}
	closed := map[string]bool{}
	for i := range 4 {
		p, ct := fmt.Sprintf("f/bin/%d", i), "application/octet-stream"
		if i%2 == 0 {
			p, ct = fmt.Sprintf("f/json/%d", i), "application/json"
		}
		if _, _, err := e.Create(ctx, p, engine.CreateOptions{ContentType: ct}); err != nil {
			f.Fatal(err)
		}
		st.streams = append(st.streams, p)
		st.ops = append(st.ops, rfOp{stream: p, create: true, prod: -1})
	}
	for n := range 160 {
		p := st.streams[(n*7+n/3)%len(st.streams)]
		if closed[p] {
			continue
		}
		op := rfOp{stream: p, prod: -1, close: n == 100 || n == 151}
		var body []byte
		if strings.HasPrefix(p, "f/json/") {
			if n%3 == 0 {
				body = fmt.Appendf(nil, `[ {"n": %d, "k": 0}, {"n": %d, "k": 1, "s": "%s"} ]`, n, n, strings.Repeat("x", n*5))
				op.data = fmt.Appendf(nil, `{"n":%d,"k":0},{"n":%d,"k":1,"s":"%s"},`, n, n, strings.Repeat("x", n*5))
			} else {
				body = fmt.Appendf(nil, `{ "n" : %d, "pad": "%s" }`, n, strings.Repeat("y", (n*37)%900))
				op.data = fmt.Appendf(nil, `{"n":%d,"pad":"%s"},`, n, strings.Repeat("y", (n*37)%900))
			}
		} else {
			body = make([]byte, 1+(n*211)%3000)
			for i := range body {
				body[i] = byte(n*13 + i*7)
			}
			if len(body) >= 2 {
				binary.LittleEndian.PutUint16(body, uint16(n))
			}
			op.data = body
		}
		if op.close && n == 151 {
			body, op.data = nil, nil // a bare close
		}
		o := engine.AppendOptions{Close: op.close}
		if n%4 == 1 {
			op.prod = prodSeq[p]
			prodSeq[p]++
			o.Producer = &engine.Producer{ID: "p", Epoch: 3, Seq: uint64(op.prod)}
		}
		if res, err := e.Append(ctx, p, body, o); err != nil || res.Duplicate {
			f.Fatalf("append %d to %s: %+v %v", n, p, res, err)
		}
		if op.close {
			closed[p] = true
		}
		st.ops = append(st.ops, op)
	}
	// The crash image, taken while the engine is open.
	err = filepath.WalkDir(live, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(live, path)
		st.files[rel] = b
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	// The last commit-log segment with records, and their boundaries.
	var wals []string
	for rel := range st.files {
		if strings.HasPrefix(rel, "wal"+string(filepath.Separator)) && strings.HasSuffix(rel, ".wal") {
			wals = append(wals, rel)
		}
	}
	sort.Strings(wals)
	for i := len(wals) - 1; i >= 0 && st.lastWAL == ""; i-- {
		b := st.files[wals[i]]
		var ends []int64
		for pos := int64(0); ; {
			_, next, err := segment.ReadRecord(b, pos)
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Fatalf("%s: %v", wals[i], err)
			}
			ends = append(ends, next)
			pos = next
		}
		if len(ends) > 0 {
			st.lastWAL, st.ends, st.opsBefore = wals[i], ends, len(st.ops)-len(ends)
		}
	}
	if st.lastWAL == "" || st.opsBefore < 0 || len(wals) < 2 {
		f.Fatalf("unexpected commit log: %v, last %q", wals, st.lastWAL)
	}
	return st
}

func FuzzRecoverWAL(f *testing.F) {
	st := rfBuild(f)
	end := st.ends[len(st.ends)-1]
	seed := func(pos int64, mode byte, patch ...byte) {
		b := binary.LittleEndian.AppendUint32(nil, uint32(pos))
		f.Add(append(append(b, mode), patch...))
	}
	seed(0, 0, 0x01)
	seed(3, 0, 0x80)             // the first record's length
	seed(5, 1, 0, 0, 0, 0)       // the first record's CRC
	seed(st.ends[0], 2, 0, 0, 0) // zero the second record's header
	seed(end-1, 0, 0xff)         // the last byte of the last record
	seed(end, 1, 9, 0, 0, 0, 1)  // a header past the end
	seed(end+100, 1, 'g', 'a', 'r', 'b', 'a', 'g', 'e')
	seed(end/2, 3)                   // a torn tail
	seed(st.ends[len(st.ends)/2], 3) // a cut at a record boundary
	seed(end/3, 1, bytes.Repeat([]byte{0xAB}, 300)...)

	strict := os.Getenv("DURASTREAM_FUZZ_STRICT") != ""
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 5 {
			return
		}
		orig := st.files[st.lastWAL]
		pos := int64(binary.LittleEndian.Uint32(in)) % (end + 512)
		mode, patch := in[4]%4, in[5:]
		if len(patch) > 1024 {
			patch = patch[:1024]
		}
		b := append([]byte(nil), orig...)
		hi := min(pos+int64(len(patch)), int64(len(b)))
		switch mode {
		case 0:
			for i := pos; i < hi; i++ {
				b[i] ^= patch[i-pos]
			}
		case 1:
			copy(b[pos:hi], patch)
		case 2:
			clear(b[pos:hi])
		case 3:
			clear(b[pos:])
		}
		first := int64(-1)
		for i := range b {
			if b[i] != orig[i] {
				first = int64(i)
				break
			}
		}
		want := len(st.ops)
		if first >= 0 {
			want = st.opsBefore + sort.Search(len(st.ends), func(i int) bool { return st.ends[i] > first })
		}

		dir := t.TempDir()
		for rel, data := range st.files {
			if rel == st.lastWAL {
				data = b
			}
			p := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		e, err := engine.Open(dir, recoverFuzzOptions())
		if err != nil {
			if errors.Is(err, engine.ErrCorrupt) && !strict {
				return // acceptable by contract
			}
			t.Fatalf("open after damage at %d (mode %d, %d bytes): %v", pos, mode, len(patch), err)
		}
		defer e.Close()
		rfCheck(t, e, st, want, fmt.Sprintf("damage at %d (first changed byte %d, mode %d, %d bytes)", pos, first, mode, len(patch)))
	})
}

// rfCheck checks that e holds exactly the first want operations of st, and
// accepts more.
func rfCheck(t *testing.T, e *engine.Engine, st *rfStore, want int, what string) {
	ctx := context.Background()
	for _, path := range st.streams {
		var exp []byte
		exists, closed, prod := false, false, int64(-1)
		for _, op := range st.ops[:want] {
			if op.stream != path {
				continue
			}
			exists = exists || op.create
			exp = append(exp, op.data...)
			closed = closed || op.close
			if op.prod >= 0 {
				prod = op.prod
			}
		}
		info, err := e.Head(path)
		if !exists {
			if !errors.Is(err, engine.ErrNotFound) {
				t.Fatalf("%s: %s should not exist (its create is past the cut %d): %+v %v", what, path, want, info, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %s: head: %v (cut %d)", what, path, err, want)
		}
		c, err := e.Read(path, engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{MaxBytes: 1 << 30})
		if err != nil {
			t.Fatalf("%s: %s: read: %v", what, path, err)
		}
		var got []byte
		for _, b := range c.Data() {
			got = append(got, b...)
		}
		c.Release()
		if !bytes.Equal(got, exp) || info.Closed != closed || uint64(info.Tail) != uint64(len(exp)) {
			// Tell a wrong cut from garbled or partial content.
			var full []byte
			for _, op := range st.ops {
				if op.stream == path {
					full = append(full, op.data...)
				}
			}
			kind := "garbled or partial content"
			if bytes.HasPrefix(full, got) {
				kind = "a prefix, but at the wrong cut"
			}
			t.Fatalf("%s: %s: recovered %d bytes closed=%v tail %d, want %d bytes closed=%v (cut %d of %d ops): %s",
				what, path, len(got), info.Closed, info.Tail, len(exp), closed, want, len(st.ops), kind)
		}
		// The stream continues: closed ones refuse, open ones take the
		// producer's next request.
		body := []byte(`{"after":1}`)
		res, err := e.Append(ctx, path, body, engine.AppendOptions{Producer: &engine.Producer{ID: "p", Epoch: 3, Seq: uint64(prod + 1)}})
		if closed {
			if !errors.Is(err, engine.ErrClosed) {
				t.Fatalf("%s: %s: append to a closed stream: %+v %v", what, path, res, err)
			}
			continue
		}
		if err != nil || res.Duplicate || uint64(res.Tail) != uint64(len(exp)+len(body)+btoi(strings.HasPrefix(path, "f/json/"))) {
			t.Fatalf("%s: %s: append after recovery (producer seq %d): %+v %v", what, path, prod+1, res, err)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
