package server

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// budgetServer serves a memory engine with a 1 MiB append limit and the
// given in-flight body budget.
func budgetServer(t *testing.T, budget int64) (*Server, *httptest.Server) {
	t.Helper()
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(eng, Config{MaxAppendBytes: 1 << 20, MaxInflightBodyBytes: budget})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Shutdown()
		budgetTestTransport.CloseIdleConnections()
		ts.Close()
		eng.Close()
	})
	return s, ts
}

var budgetTestTransport = &http.Transport{DisableCompression: true}

func postBody(t *testing.T, url string, body io.Reader, kv ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := (&http.Client{Transport: budgetTestTransport, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func gzipOf(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func zstdOf(t *testing.T, b []byte, o ...zstd.EOption) []byte {
	zw, err := zstd.NewWriter(nil, o...)
	if err != nil {
		t.Fatal(err)
	}
	return zw.EncodeAll(b, nil)
}

// chunkedBody hides a reader's length so the body is sent chunked.
type chunkedBody struct{ io.Reader }

// TestBodyBudgetReturnsToZero: whatever a body turns out to be (accepted,
// too large, corrupt, truncated, chunked, compressed), every byte it was
// charged is given back.
func TestBodyBudgetReturnsToZero(t *testing.T) {
	s, ts := budgetServer(t, 0)
	u := ts.URL + "/v1/stream/b"
	ct := "application/octet-stream"
	req, _ := http.NewRequest("PUT", u, nil)
	req.Header.Set("Content-Type", ct)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	mib := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	over := append(mib[:len(mib):len(mib)], 'x')
	cases := []struct {
		name   string
		body   func() io.Reader
		enc    string
		status int
	}{
		{"plain", func() io.Reader { return bytes.NewReader(mib[:1000]) }, "", 204},
		{"plain at the limit", func() io.Reader { return bytes.NewReader(mib) }, "", 204},
		{"chunked small", func() io.Reader { return chunkedBody{bytes.NewReader(mib[:100])} }, "", 204},
		{"chunked several blocks", func() io.Reader { return chunkedBody{bytes.NewReader(mib[:300000])} }, "", 204},
		{"chunked at the limit", func() io.Reader { return chunkedBody{bytes.NewReader(mib)} }, "", 204},
		{"chunked over", func() io.Reader { return chunkedBody{bytes.NewReader(over)} }, "", 413},
		{"gzip", func() io.Reader { return bytes.NewReader(gzipOf(t, mib[:5000])) }, "gzip", 204},
		{"gzip at the limit", func() io.Reader { return bytes.NewReader(gzipOf(t, mib)) }, "gzip", 204},
		{"gzip over", func() io.Reader { return bytes.NewReader(gzipOf(t, over)) }, "gzip", 413},
		{"gzip truncated", func() io.Reader { b := gzipOf(t, mib); return bytes.NewReader(b[:len(b)/2]) }, "gzip", 400},
		{"gzip not gzip", func() io.Reader { return strings.NewReader("plainly not gzip") }, "gzip", 400},
		{"zstd", func() io.Reader { return bytes.NewReader(zstdOf(t, mib[:5000])) }, "zstd", 204},
		{"zstd at the limit", func() io.Reader { return bytes.NewReader(zstdOf(t, mib)) }, "zstd", 204},
		{"zstd over", func() io.Reader { return bytes.NewReader(zstdOf(t, over)) }, "zstd", 413},
		{"zstd window over the limit", func() io.Reader {
			// A frame declaring an 8 MiB window (descriptor 13<<3: 2^(10+13))
			// with one raw block of one byte; with a 1 MiB limit at most
			// 2 MiB is accepted.
			return bytes.NewReader([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 13 << 3, 0x09, 0x00, 0x00, 'x'})
		}, "zstd", 413},
		{"zstd window within the limit", func() io.Reader {
			return bytes.NewReader([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 10 << 3, 0x09, 0x00, 0x00, 'x'})
		}, "zstd", 204},
		{"zstd later frame wider than the first", func() io.Reader {
			return bytes.NewReader([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0 << 3, 0x09, 0x00, 0x00, 'x',
				0x28, 0xb5, 0x2f, 0xfd, 0x00, 10 << 3, 0x09, 0x00, 0x00, 'y'})
		}, "zstd", 413},
		{"zstd corrupt", func() io.Reader { return strings.NewReader("definitely not a zstd frame at all") }, "zstd", 400},
		{"zstd truncated", func() io.Reader { b := zstdOf(t, mib); return bytes.NewReader(b[:len(b)/2]) }, "zstd", 400},
	}
	for _, c := range cases {
		kv := []string{"Content-Type", ct}
		if c.enc != "" {
			kv = append(kv, "Content-Encoding", c.enc)
		}
		status, msg, _ := postBody(t, u, c.body(), kv...)
		if status != c.status {
			t.Errorf("%s: status %d (%q), want %d", c.name, status, msg, c.status)
		}
		if n := s.bodies.inUse(); n != 0 {
			t.Errorf("%s: %d bytes still charged after the response", c.name, n)
		}
	}
}

// TestBodyBudget503: bodies that would take the bytes in flight past the
// budget are refused with 503 and Retry-After; once the bodies holding the
// budget are done, appends succeed again.
func TestBodyBudget503(t *testing.T) {
	budget := MinInflightBodyBytes(1 << 20)
	s, ts := budgetServer(t, budget)
	u := ts.URL + "/v1/stream/b"
	req, _ := http.NewRequest("PUT", u, nil)
	req.Header.Set("Content-Type", "text/plain")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	// Hold most of the budget: chunked bodies that send most of a MiB and
	// then wait.
	release := make(chan struct{})
	var held sync.WaitGroup
	var holding atomic.Int32
	for range 4 {
		pr, pw := io.Pipe()
		held.Go(func() {
			// Each holds 1020 KiB (blocks of 4 KiB to 512 KiB); when its
			// body ends it needs 1 MiB more to join them, which not all
			// four may get.
			if status, msg, _ := postBody(t, u, chunkedBody{pr}, "Content-Type", "text/plain"); status != http.StatusNoContent && status != http.StatusServiceUnavailable {
				t.Errorf("held append: %d %q", status, msg)
			}
		})
		go func() {
			pw.Write(bytes.Repeat([]byte{'a'}, 700<<10))
			holding.Add(1)
			<-release
			pw.Close()
		}()
	}
	// Wait until the four hold enough that a 1 MiB body cannot fit: their
	// writers returning is not enough (the bytes may still sit in socket
	// buffers, not yet read and charged by the server).
	deadline := time.Now().Add(5 * time.Second)
	for holding.Load() < 4 || s.bodies.inUse()+bodyCap(1<<20) <= budget {
		if time.Now().After(deadline) {
			t.Fatalf("bodies in flight hold %d of %d bytes", s.bodies.inUse(), budget)
		}
		time.Sleep(10 * time.Millisecond)
	}
	status, msg, h := postBody(t, u, bytes.NewReader(bytes.Repeat([]byte{'b'}, 1<<20)), "Content-Type", "text/plain")
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(msg, "retry") {
		t.Errorf("append over the budget: %d %q (Retry-After %q), want 503 with Retry-After and a message", status, msg, h.Get("Retry-After"))
	}
	close(release)
	held.Wait()
	if n := s.bodies.inUse(); n != 0 {
		t.Errorf("%d bytes still charged", n)
	}
	if status, msg, _ := postBody(t, u, bytes.NewReader(bytes.Repeat([]byte{'c'}, 1<<20)), "Content-Type", "text/plain"); status != http.StatusNoContent {
		t.Errorf("append once the budget is free: %d %q", status, msg)
	}
}

func TestByteBudgetBurstHook(t *testing.T) {
	var calls atomic.Int32
	done := make(chan struct{}, 4)
	b := newByteBudget(1<<30, func() { calls.Add(1); done <- struct{}{} })
	// A small burst: no call.
	b.tryAcquire(1 << 20)
	b.release(1 << 20)
	// A large one, in pieces: one call when the last piece is released.
	for range 4 {
		if !b.tryAcquire(32 << 20) {
			t.Fatal("acquire within the cap refused")
		}
	}
	if b.tryAcquire(1<<30 - 4*32<<20 + 1) {
		t.Fatal("acquire past the cap allowed")
	}
	for i := range 4 {
		b.release(32 << 20)
		if i < 3 && calls.Load() != 0 {
			t.Fatal("burst hook called with bytes still in flight")
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("burst hook not called")
	}
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Errorf("burst hook called %d times, want 1", n)
	}
}
