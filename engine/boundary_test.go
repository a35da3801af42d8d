package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// jsonBoundaries appends the stored form of each message to a JSON stream,
// one append per group, and returns the set of message boundaries (every
// offset where a message starts, plus the tail).
func jsonBoundaries(t *testing.T, e *Engine, path string, groups [][]string) map[Offset]bool {
	t.Helper()
	ctx := context.Background()
	c, err := e.Read(path, ReadFrom{Kind: FromNow}, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	off := c.Next
	c.Release()
	b := map[Offset]bool{off: true}
	for _, g := range groups {
		if _, err := e.Append(ctx, path, []byte("["+strings.Join(g, ",")+"]"), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, m := range g {
			off += Offset(len(m) + 1)
			b[off] = true
		}
	}
	return b
}

// tricky holds messages whose bytes include commas, brackets, quotes and
// escapes inside strings, so that a scanner that miscounts lands inside one.
func tricky(i int) string {
	switch i % 5 {
	case 0:
		return fmt.Sprintf(`{"k":"a,b],}{[\"%d\\"}`, i)
	case 1:
		return fmt.Sprintf(`[%d,[",",{"x":"]"}],"\u00e9"]`, i)
	case 2:
		return fmt.Sprintf(`"%s,%d"`, strings.Repeat("z", i%97), i)
	case 3:
		return fmt.Sprint(i * 1000003)
	default:
		return `{"nested":{"deeper":[{"a":",,,"},null,true,false]}}`
	}
}

// checkAllOffsets reads the stream at every offset up to its tail: a
// boundary gives valid JSON, anything else ErrNotBoundary.
func checkAllOffsets(t *testing.T, e *Engine, path string, bounds map[Offset]bool, tail Offset) {
	t.Helper()
	bad := 0
	for off := Offset(0); off <= tail; off++ {
		c, err := e.Read(path, At(off), ReadOptions{MaxBytes: 1 << 20})
		if !bounds[off] {
			if !errors.Is(err, ErrNotBoundary) {
				if err == nil {
					c.Release()
				}
				if bad++; bad < 5 {
					t.Errorf("read at %d (inside a message): %v, want ErrNotBoundary", off, err)
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("read at boundary %d: %v", off, err)
		}
		if body := c.Bytes(); !json.Valid(body) {
			t.Errorf("read at boundary %d: invalid JSON %.80q", off, body)
		}
		c.Release()
	}
	if bad > 0 {
		t.Fatalf("%d offsets inside messages were readable", bad)
	}
}

func TestReadJSONOnlyAtMessageBoundaries(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []Durability{DurabilitySync, DurabilityMemory} {
		t.Run(string(mode), func(t *testing.T) {
			// Small segments and index spacing: the walks cross segment
			// starts and index entries.
			e := openTest(t, t.TempDir(), &Options{Durability: mode, MinSegmentSize: 256, MaxSegmentSize: 1024, IndexEvery: 200})
			defer e.Close()
			if _, _, err := e.Create(ctx, "j", CreateOptions{ContentType: "application/json"}); err != nil {
				t.Fatal(err)
			}
			var groups [][]string
			for i := 0; i < 60; i++ {
				g := []string{tricky(i)}
				if i%7 == 0 { // several messages in one append: no index entries between them
					g = append(g, tricky(i+1), tricky(i+2), tricky(i+3))
				}
				groups = append(groups, g)
			}
			bounds := jsonBoundaries(t, e, "j", groups)
			info, err := e.Head("j")
			if err != nil {
				t.Fatal(err)
			}
			checkAllOffsets(t, e, "j", bounds, info.Tail)

			// A reader that continues from an earlier chunk's Next skips
			// the check; a chunk's Next is always a boundary.
			c, err := e.Read("j", ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 300})
			if err != nil {
				t.Fatal(err)
			}
			next, id := c.Next, c.StreamID
			c.Release()
			if !bounds[next] {
				t.Fatalf("chunk ends at %d, not a boundary", next)
			}
			if c, err = e.Read("j", At(next), ReadOptions{Continues: id}); err != nil {
				t.Fatal(err)
			}
			c.Release()

			// Forks: offsets below the fork point are checked in the source.
			var fork Offset
			for off := range bounds {
				if off > info.Tail/2 && (fork == 0 || off < fork) {
					fork = off
				}
			}
			if _, _, err := e.Create(ctx, "f", CreateOptions{ForkFrom: "j", ForkOffset: &fork}); err != nil {
				t.Fatal(err)
			}
			fb := map[Offset]bool{}
			for off := range bounds {
				if off <= fork {
					fb[off] = true
				}
			}
			for off, ok := range jsonBoundaries(t, e, "f", [][]string{{tricky(3), tricky(4)}, {tricky(0)}}) {
				fb[off] = ok
			}
			fi, err := e.Head("f")
			if err != nil {
				t.Fatal(err)
			}
			checkAllOffsets(t, e, "f", fb, fi.Tail)

			// A fork may not start inside a message either.
			mid := fork - 1
			for bounds[mid] {
				mid--
			}
			if _, _, err := e.Create(ctx, "g", CreateOptions{ForkFrom: "j", ForkOffset: &mid}); !errors.Is(err, ErrNotBoundary) {
				t.Fatalf("fork at %d inside a message: %v, want ErrNotBoundary", mid, err)
			}
			// A sub-offset counts messages from a boundary.
			if _, _, err := e.Create(ctx, "h", CreateOptions{ForkFrom: "j", ForkOffset: &fork, ForkSubOffset: 2}); err != nil {
				t.Fatal(err)
			}

			// Byte streams have no boundaries to check.
			if _, _, err := e.Create(ctx, "b", CreateOptions{ContentType: "text/plain", Data: []byte(`{"a":1},`)}); err != nil {
				t.Fatal(err)
			}
			if c, err = e.Read("b", At(3), ReadOptions{}); err != nil {
				t.Fatal(err)
			}
			c.Release()
		})
	}
}

func TestCreateRefusesUnrepresentableExpiry(t *testing.T) {
	ctx := context.Background()
	e := openTest(t, t.TempDir(), &Options{Durability: DurabilityMemory})
	defer e.Close()
	far := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		o    CreateOptions
		ok   bool
	}{
		{"expiry in year 9999", CreateOptions{ExpiresAt: far}, false},
		{"expiry one ns past the limit", CreateOptions{ExpiresAt: MaxExpiresAt.Add(1)}, false},
		{"expiry before 1970", CreateOptions{ExpiresAt: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}, false},
		{"expiry at the epoch", CreateOptions{ExpiresAt: time.Unix(0, 0)}, false},
		{"TTL above the limit", CreateOptions{TTL: MaxTTL + 1, HasTTL: true}, false},
		{"TTL of 2^40 s", CreateOptions{TTL: 1 << 40, HasTTL: true}, false},
		{"TTL of 2^64-1 s", CreateOptions{TTL: math.MaxUint64, HasTTL: true}, false},
		{"expiry at the limit", CreateOptions{ExpiresAt: MaxExpiresAt}, true},
		{"TTL at the limit", CreateOptions{TTL: MaxTTL, HasTTL: true}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := strings.ReplaceAll(c.name, " ", "-")
			info, _, err := e.Create(ctx, path, c.o)
			if !c.ok {
				if !errors.Is(err, ErrBadTTL) {
					t.Fatalf("create: %v, want ErrBadTTL", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Not expired at once, and reported as asked.
			h, err := e.Head(path)
			if err != nil {
				t.Fatalf("head right after create: %v", err)
			}
			if !h.ExpiresAt.Equal(c.o.ExpiresAt) || h.TTL != c.o.TTL || h.HasTTL != c.o.HasTTL || h != info {
				t.Fatalf("head %+v, create %+v, options %+v", h, info, c.o)
			}
		})
	}
}
