package server_test

// Whole catch-up reads: with no MaxReadBytes cap, a plain read returns
// everything from its offset up to the tail it found, in one response,
// however many engine pages that takes; JSON stays one array; a response
// that cannot be finished is aborted, never cut short as if whole.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
)

func wholeConfig() server.Config {
	c := testConfig()
	c.MaxReadBytes = 0 // the default: no cap
	c.MaxAppendBytes = 8 << 20
	return c
}

// appendAll appends data in pieces of at most 8 MiB.
func (h *harness) appendAll(name, ct string, data []byte) {
	h.t.Helper()
	for len(data) > 0 {
		n := min(len(data), 8<<20)
		h.appendData(name, ct, data[:n])
		data = data[n:]
	}
}

func TestWholeCatchUpBinary(t *testing.T) {
	for _, d := range []engine.Durability{engine.DurabilityMemory, engine.DurabilitySync} {
		t.Run(string(d), func(t *testing.T) {
			h := newHarnessWith(t, d, wholeConfig())
			data := randBytes(21<<20+123, 5) // 6 engine pages
			h.create("big", "application/octet-stream", nil)
			h.appendAll("big", "application/octet-stream", data)
			for _, from := range []int{-1, 0, 3<<20 + 7, len(data) - 1} {
				off := "-1"
				if from >= 0 {
					off = engine.Offset(from).String()
				}
				r := h.do("GET", "big?offset="+off, nil, "Accept-Encoding", "identity")
				want(t, r, 200, "GET from "+off)
				wantBody := data[max(from, 0):]
				if !bytes.Equal(r.body, wantBody) {
					t.Fatalf("from %s: %d bytes, want the %d up to the tail", off, len(r.body), len(wantBody))
				}
				if cl := r.get("Content-Length"); cl != strconv.Itoa(len(wantBody)) {
					t.Errorf("from %s: Content-Length %q", off, cl)
				}
				if r.get("Stream-Next-Offset") != engine.Offset(len(data)).String() || r.get("Stream-Up-To-Date") != "true" {
					t.Errorf("from %s: next %q up-to-date %q", off, r.get("Stream-Next-Offset"), r.get("Stream-Up-To-Date"))
				}
			}
			// The same ETag twice; If-None-Match gives 304.
			a := h.do("GET", "big?offset=-1", nil, "Accept-Encoding", "identity")
			if tag := a.get("ETag"); tag == "" {
				t.Error("no ETag")
			} else if r := h.do("GET", "big?offset=-1", nil, "If-None-Match", tag, "Accept-Encoding", "identity"); r.status != http.StatusNotModified {
				t.Errorf("If-None-Match: status %d", r.status)
			}
		})
	}
}

func TestWholeCatchUpJSONIsOneArray(t *testing.T) {
	h := newHarnessWith(t, engine.DurabilityMemory, wholeConfig())
	h.create("j", "application/json", nil)
	var all []map[string]any
	for batch := range 12 {
		var b bytes.Buffer
		b.WriteByte('[')
		for i := range 1000 {
			if i > 0 {
				b.WriteByte(',')
			}
			pad := bytes.Repeat([]byte{'x'}, (batch*1000+i)%700)
			fmt.Fprintf(&b, `{"batch":%d,"i":%d,"pad":"%s"}`, batch, i, pad)
			all = append(all, map[string]any{"batch": float64(batch), "i": float64(i), "pad": string(pad)})
		}
		b.WriteByte(']')
		h.appendData("j", "application/json", b.Bytes())
	}
	r := h.do("GET", "j?offset=-1", nil, "Accept-Encoding", "identity")
	want(t, r, 200, "GET")
	if len(r.body) < 4<<20 {
		t.Fatalf("the stream is %d bytes: the test wants more than one engine page", len(r.body))
	}
	var got []map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("not one JSON array: %v (starts %.80q, ends %.80q)", err, r.body, r.body[len(r.body)-80:])
	}
	if len(got) != len(all) {
		t.Fatalf("%d messages, want %d", len(got), len(all))
	}
	for i := range all {
		if got[i]["batch"] != all[i]["batch"] || got[i]["i"] != all[i]["i"] || got[i]["pad"] != all[i]["pad"] {
			t.Fatalf("message %d = %v", i, got[i])
		}
	}
}

func TestWholeCatchUpGzip(t *testing.T) {
	h := newHarnessWith(t, engine.DurabilityMemory, wholeConfig())
	data := bytes.Repeat([]byte("durable streams, whole reads; "), 400_000) // 12 MB
	h.create("z", "text/plain", nil)
	h.appendAll("z", "text/plain", data)
	r := h.do("GET", "z?offset=-1", nil, "Accept-Encoding", "gzip")
	want(t, r, 200, "GET")
	if r.get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", r.get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip body: %v", err)
	}
	if !bytes.Equal(plain, data) {
		t.Fatalf("%d bytes decompressed, want %d", len(plain), len(data))
	}
}

// With MaxReadBytes set, catch-up reads page as before.
func TestCappedCatchUpPages(t *testing.T) {
	cfg := wholeConfig()
	cfg.MaxReadBytes = 1 << 20
	h := newHarnessWith(t, engine.DurabilityMemory, cfg)
	data := randBytes(3<<20, 6)
	h.create("p", "application/octet-stream", data[:1<<20])
	h.appendAll("p", "application/octet-stream", data[1<<20:])
	r := h.do("GET", "p?offset=-1", nil, "Accept-Encoding", "identity")
	if len(r.body) != 1<<20 || r.get("Stream-Up-To-Date") != "" || r.get("Stream-Next-Offset") != engine.Offset(1<<20).String() {
		t.Fatalf("capped read: %d bytes, next %q, up-to-date %q", len(r.body), r.get("Stream-Next-Offset"), r.get("Stream-Up-To-Date"))
	}
}

// A stream deleted while its whole read is being sent: the response is
// aborted (the client's read fails), never ended early as if complete.
func TestWholeCatchUpDeletedMidResponseAborts(t *testing.T) {
	h := newHarnessWith(t, engine.DurabilityMemory, wholeConfig())
	data := randBytes(48<<20, 7) // far more than loopback socket buffers hold
	h.create("d", "application/octet-stream", nil)
	h.appendAll("d", "application/octet-stream", data)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.hc.Do(h.newRequest(ctx, "GET", "d?offset=-1", nil, "Accept-Encoding", "identity"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Fatalf("status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	r := h.do("DELETE", "d", nil)
	want(t, r, http.StatusNoContent, "DELETE")
	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the response ended cleanly after %d of %d bytes; want an aborted body", len(first)+len(rest), len(data))
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("body error: %v", err)
	}
	got := append(first, rest...)
	if !bytes.Equal(got, data[:len(got)]) {
		t.Fatal("the bytes sent before the abort are not the stream's")
	}
}

// Whole catch-up reads have no cap, but long-polls keep bounded chunks: a
// long-poll from the start of a large stream answers at most LiveChunkBytes,
// and following Stream-Next-Offset gives the stream exactly.
func TestLongPollChunksStayBounded(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, engine.DurabilityMemory, wholeConfig())
	data := randBytes(300<<10+17, 9)
	h.create("lp", "application/octet-stream", data)
	var got []byte
	for off, n := "-1", 0; ; n++ {
		r := h.do("GET", "lp?live=long-poll&offset="+off, nil)
		want(t, r, 200, "long-poll at "+off)
		if int64(len(r.body)) > testConfig().LiveChunkBytes {
			t.Fatalf("long-poll at %s: %d bytes, more than the live chunk (%d)", off, len(r.body), testConfig().LiveChunkBytes)
		}
		got = append(got, r.body...)
		off = r.get("Stream-Next-Offset")
		if r.get("Stream-Up-To-Date") == "true" {
			break
		}
		if n > 100 {
			t.Fatal("long-poll never up to date")
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("long-polls gave %d bytes, want the %d written", len(got), len(data))
	}
}
