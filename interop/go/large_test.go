package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"testing"
	"time"

	ds "github.com/durable-streams/durable-streams/packages/client-go"
)

// 11. Large data: an 8 MiB single append, and a 256 MiB stream, each read back
// whole by ONE catch-up read (the server returns everything up to the tail in
// one response). PROTOCOL.md §5.6 lets a server cap a response at a
// "server-defined maximum chunk size"; one response up to the tail is
// durastream's own contract, checked here.
//
// client-go v0.1.0 follows Stream-Next-Offset paging by itself: each
// ChunkIterator.Next is one HTTP response and the iterator keeps going until
// Stream-Up-To-Date. So the client-level check is "the first Next returns all
// the data, up to date", and a raw GET ?offset=-1 checks the same on the wire.

const block = 8 << 20 // 8 MiB

// largeGen makes the blocks of a large stream: block k is one random 8 MiB
// pattern with every 4 KiB page stamped with (k, page), so a misplaced or
// repeated page is detected.
type largeGen struct{ base []byte }

func newLargeGen() *largeGen { return &largeGen{base: randomBytes(11, block)} }

func (g *largeGen) block(k int, dst []byte) []byte {
	dst = append(dst[:0], g.base...)
	for p := 0; p < block/4096; p++ {
		binary.BigEndian.PutUint32(dst[p*4096:], uint32(k))
		binary.BigEndian.PutUint32(dst[p*4096+4:], uint32(p))
	}
	return dst
}

// verify compares got with blocks 0..n-1 and describes the first mismatch.
func (g *largeGen) verify(got []byte, n int) error {
	if len(got) != n*block {
		return fmt.Errorf("got %d bytes, want %d", len(got), n*block)
	}
	var buf []byte
	for k := 0; k < n; k++ {
		buf = g.block(k, buf)
		if g := got[k*block : (k+1)*block]; !bytes.Equal(g, buf) { // bytes.Equal: fast under -race
			i := firstDiff(g, buf)
			return fmt.Errorf("mismatch at byte %d (block %d, byte %d)", k*block+i, k, i)
		}
	}
	return nil
}

func TestLargeSingleAppend8MiB(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	c := newClient()
	path := streamPath(t)
	s := createStream(t, ctx, c, path, "application/octet-stream")
	g := newLargeGen()
	data := g.block(0, nil)
	tail := mustAppend(t, ctx, s, data)

	checkOneCatchUpRead(t, ctx, s, path, tail, func(b []byte) error { return g.verify(b, 1) })
}

func TestLargeStream256MiB(t *testing.T) {
	const n = 32 // 32 x 8 MiB appends = 256 MiB
	ctx := testCtx(t, 90*time.Second)
	c := newClient()
	path := streamPath(t)
	s := createStream(t, ctx, c, path, "application/octet-stream")
	g := newLargeGen()
	var buf []byte
	var tail ds.Offset
	start := time.Now()
	for k := 0; k < n; k++ {
		buf = g.block(k, buf)
		tail = mustAppend(t, ctx, s, buf)
	}
	t.Logf("appended 256 MiB in %v", time.Since(start).Round(time.Millisecond))
	buf = nil

	checkOneCatchUpRead(t, ctx, s, path, tail, func(b []byte) error { return g.verify(b, n) })
}

// checkOneCatchUpRead reads the whole stream with client-go and with one raw
// GET, and asserts that one response carried everything.
func checkOneCatchUpRead(t *testing.T, ctx context.Context, s *ds.Stream, path string, tail ds.Offset, verify func([]byte) error) {
	t.Helper()

	// Client: the first Next (one response) must hold everything.
	start := time.Now()
	it := s.Read(ctx)
	first, err := it.Next()
	if err != nil {
		it.Close()
		t.Fatalf("client catch-up read: %v", err)
	}
	got := first.Data
	chunks := 1
	for {
		ch, err := it.Next()
		if err != nil {
			if err != ds.Done {
				it.Close()
				t.Fatalf("client catch-up read (chunk %d): %v", chunks+1, err)
			}
			break
		}
		chunks++
		got = append(got, ch.Data...)
	}
	it.Close()
	t.Logf("client read %d bytes in %d responses in %v", len(got), chunks, time.Since(start).Round(time.Millisecond))
	vstart := time.Now()
	if err := verify(got); err != nil {
		t.Errorf("client read (all pages): %v", err)
	}
	t.Logf("verified in %v", time.Since(vstart).Round(time.Millisecond))
	if chunks != 1 || !first.UpToDate || first.NextOffset != tail {
		t.Errorf("client catch-up: the first response held %d of %d bytes (up to date %v, next offset %q, tail %q); "+
			"it took %d responses; want all of it in one response", len(first.Data), len(got), first.UpToDate, first.NextOffset, tail, chunks)
	}
	got, first = nil, nil

	// Raw: one GET ?offset=-1 must return everything, up to date.
	start = time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+path+"?offset=-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatalf("raw GET: %v", err)
	}
	var bb bytes.Buffer
	if resp.ContentLength > 0 {
		bb.Grow(int(resp.ContentLength))
	}
	_, err = bb.ReadFrom(resp.Body)
	resp.Body.Close()
	body := bb.Bytes()
	if err != nil {
		t.Fatalf("raw GET body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("raw GET: status %d", resp.StatusCode)
	}
	t.Logf("raw GET read %d bytes in %v", len(body), time.Since(start).Round(time.Millisecond))
	next := resp.Header.Get("Stream-Next-Offset")
	upToDate := resp.Header.Get("Stream-Up-To-Date")
	if next != string(tail) || upToDate != "true" {
		t.Errorf("raw GET ?offset=-1: %d bytes, Stream-Next-Offset %q (tail %q), Stream-Up-To-Date %q; want the whole stream in one response",
			len(body), next, tail, upToDate)
	}
	if err := verify(body); err != nil {
		t.Errorf("raw GET ?offset=-1 body: %v", err)
	}
}
