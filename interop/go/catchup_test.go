package interop

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	ds "github.com/durable-streams/durable-streams/packages/client-go"
)

// randomBytes is n deterministic pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'i', 'n', 't', 'e', 'r', 'o', 'p'})
	_, _ = r.Read(b)
	return b
}

// 1. Binary stream: every byte value survives append and catch-up read.
func TestBinaryCatchUp(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	c := newClient()
	path := streamPath(t)
	s := createStream(t, ctx, c, path, "application/octet-stream")

	rev := allBytes()
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	pieces := [][]byte{
		allBytes(),
		{0x00},
		[]byte("\r\n\x00\xff\n\r"),
		randomBytes(1, 64<<10),
		rev,
		{0xff, 0xfe, 0xfd},
		[]byte("data: not sse\n\n"),
	}
	var want []byte
	var last ds.Offset
	for i, p := range pieces {
		off := mustAppend(t, ctx, s, p)
		if last != "" && !(off > last) {
			t.Fatalf("append %d: offset %q not after previous %q (offsets must sort lexicographically)", i, off, last)
		}
		last = off
		want = append(want, p...)
	}

	got, chunks, end := readAll(t, ctx, s)
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, want %d; first difference at byte %d", len(got), len(want), firstDiff(got, want))
	}
	if end != last {
		t.Errorf("iterator ended at offset %q, want the last append's offset %q", end, last)
	}
	if n := len(chunks); n == 0 || !chunks[n-1].UpToDate {
		t.Errorf("last chunk not marked up to date (%d chunks)", n)
	}

	meta, err := s.Head(ctx)
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	if meta.ContentType != "application/octet-stream" {
		t.Errorf("HEAD Content-Type %q, want application/octet-stream", meta.ContentType)
	}
	if meta.NextOffset != last {
		t.Errorf("HEAD Stream-Next-Offset %q, want %q", meta.NextOffset, last)
	}

	// Reading from the tail yields nothing and ends.
	got, _, end = readAll(t, ctx, s, ds.WithOffset(last))
	if len(got) != 0 || end != last {
		t.Errorf("read from tail: %d bytes, end offset %q; want 0 bytes at %q", len(got), end, last)
	}
}

// 2. JSON stream: objects and arrays (flattened one level) read back item-exact.
func TestJSONItems(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	c := newClient()
	path := streamPath(t)
	s := createStream(t, ctx, c, path, "application/json")

	var want []string // one JSON text per expected item
	appendJSON := func(v any, items ...string) {
		t.Helper()
		if _, err := s.AppendJSON(ctx, v); err != nil {
			t.Fatalf("AppendJSON(%v): %v", v, err)
		}
		want = append(want, items...)
	}
	appendRaw := func(raw string, items ...string) {
		t.Helper()
		mustAppend(t, ctx, s, []byte(raw))
		want = append(want, items...)
	}

	appendJSON(map[string]any{"a": 1, "s": "héllo ✓ 日本 🎉", "nested": map[string]any{"x": []int{1, 2}}},
		`{"a":1,"s":"héllo ✓ 日本 🎉","nested":{"x":[1,2]}}`)
	appendJSON([]map[string]any{{"b": 2}, {"c": []int{1, 2}}},
		`{"b":2}`, `{"c":[1,2]}`)
	// An array of arrays is flattened one level only.
	appendJSON([][]int{{1, 2}, {3}},
		`[1,2]`, `[3]`)
	appendRaw(`"just a string"`, `"just a string"`)
	appendRaw(`42`, `42`)
	appendRaw(`null`, `null`)
	appendRaw(`[[]]`, `[]`)
	appendRaw(`[ {"sp" : "aced"} ,  true ]`, `{"sp":"aced"}`, `true`)

	// Invalid appends are rejected with 400 and leave the stream unchanged.
	for _, bad := range []string{`[]`, `{"a":`, `not json`} {
		_, err := s.Append(ctx, []byte(bad))
		var se *ds.StreamError
		if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest {
			t.Errorf("append %q: got %v, want a 400 StreamError", bad, err)
		}
	}

	// Item by item through the Go 1.23 iterator.
	var got []json.RawMessage
	for item, err := range ds.JSONItems[json.RawMessage](ctx, s) {
		if err != nil {
			t.Fatalf("JSONItems: %v", err)
		}
		got = append(got, item)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d items, want %d:\n got: %s\nwant: %s", len(got), len(want), joinRaw(got), strings.Join(want, " "))
	}
	for i := range want {
		if !jsonEqual(t, got[i], []byte(want[i])) {
			t.Errorf("item %d = %s, want %s", i, got[i], want[i])
		}
	}

	// The same items live over SSE (the client's JSON batches ride on SSE
	// data events).
	tail := ds.Offset(headTail(t, ctx, path))
	sit := ds.ReadJSON[json.RawMessage](ctx, s, ds.WithLive(ds.LiveModeSSE))
	defer sit.Close()
	var viaSSE []json.RawMessage
	for sit.Offset < tail {
		b, err := sit.Next()
		if err != nil {
			t.Fatalf("JSON over SSE: %v", err)
		}
		viaSSE = append(viaSSE, b.Items...)
	}
	if len(viaSSE) != len(want) {
		t.Fatalf("SSE read %d items, want %d:\n got: %s\nwant: %s", len(viaSSE), len(want), joinRaw(viaSSE), strings.Join(want, " "))
	}
	for i := range want {
		if !jsonEqual(t, viaSSE[i], []byte(want[i])) {
			t.Errorf("SSE item %d = %s, want %s", i, viaSSE[i], want[i])
		}
	}

	// On the wire, a JSON read is one JSON array.
	r := rawDo(t, ctx, http.MethodGet, path+"?offset=-1", nil, nil)
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("raw GET: status %d, Content-Type %q", r.Status, r.Header.Get("Content-Type"))
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(r.Body, &arr); err != nil || len(arr) != len(want) {
		t.Errorf("raw GET body is not a JSON array of %d items (err %v): %s", len(want), err, r.Body)
	}
}

// 3. Resuming from a saved offset returns only newer data.
func TestResumeFromSavedOffset(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		ctx := testCtx(t, 20*time.Second)
		c := newClient()
		s := createStream(t, ctx, c, streamPath(t), "text/plain")
		saved := mustAppend(t, ctx, s, []byte("one|"))
		mustAppend(t, ctx, s, []byte("two|"))
		tail := mustAppend(t, ctx, s, []byte("three|"))

		// A fresh handle, as a restarted process would have.
		s2 := newClient().Stream(s.URL())
		got, chunks, end := readAll(t, ctx, s2, ds.WithOffset(saved))
		if string(got) != "two|three|" {
			t.Errorf("resume from %q read %q, want %q", saved, got, "two|three|")
		}
		if end != tail || len(chunks) == 0 || chunks[len(chunks)-1].NextOffset != tail {
			t.Errorf("resume ended at %q, want %q", end, tail)
		}
		got, _, end = readAll(t, ctx, s2, ds.WithOffset(tail))
		if len(got) != 0 || end != tail {
			t.Errorf("resume from tail read %q ending at %q, want nothing at %q", got, end, tail)
		}
	})
	t.Run("json", func(t *testing.T) {
		ctx := testCtx(t, 20*time.Second)
		c := newClient()
		s := createStream(t, ctx, c, streamPath(t), "application/json")
		if _, err := s.AppendJSON(ctx, map[string]int{"n": 1}); err != nil {
			t.Fatal(err)
		}
		// Save the offset a reader saw after its first batch.
		it := ds.ReadJSON[map[string]int](ctx, s)
		b, err := it.Next()
		it.Close()
		if err != nil || len(b.Items) != 1 || b.Items[0]["n"] != 1 {
			t.Fatalf("first read: %+v, %v", b, err)
		}
		saved := b.NextOffset
		if _, err := s.AppendJSON(ctx, map[string]int{"n": 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendJSON(ctx, []map[string]int{{"n": 3}, {"n": 4}}); err != nil {
			t.Fatal(err)
		}
		var got []int
		for item, err := range ds.JSONItems[map[string]int](ctx, s, ds.WithOffset(saved)) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, item["n"])
		}
		if !reflect.DeepEqual(got, []int{2, 3, 4}) {
			t.Errorf("resume from %q read items %v, want [2 3 4]", saved, got)
		}
	})
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) == len(b) {
		return -1
	}
	return n
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if err := da.Decode(&x); err != nil {
		t.Errorf("invalid JSON %s: %v", a, err)
		return false
	}
	if err := db.Decode(&y); err != nil {
		t.Fatalf("invalid expected JSON %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func joinRaw(items []json.RawMessage) string {
	var sb strings.Builder
	for i, it := range items {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.Write(it)
	}
	return sb.String()
}
