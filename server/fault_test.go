package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/vfs/errorfs"
)

// faultServer serves a real (sync) engine over fs; do makes a request and
// returns the response and its body.
func faultServer(t *testing.T, fs *errorfs.FS) (do func(method, path, body string) (*http.Response, string)) {
	t.Helper()
	eng, err := engine.Open(t.TempDir(), &engine.Options{FS: fs, CheckpointInterval: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	srv, err := New(eng, Config{LongPollTimeout: 100e6})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return func(method, path, body string) (*http.Response, string) {
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "text/plain")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
}

// Faults injected under a real (sync) engine, seen through HTTP.
func TestHTTPDiskFullAndSyncFailure(t *testing.T) {
	fs := errorfs.New(nil)
	do := faultServer(t, fs)
	if resp, _ := do("PUT", "/v1/stream/a", "first;"); resp.StatusCode != 201 {
		t.Fatalf("create: %d", resp.StatusCode)
	}

	// Disk full: a new stream whose first bytes do not fit a slab slot
	// needs a file. 507 with a message; reads work.
	big := strings.Repeat("d", 5000)
	fs.Inject(errorfs.Rule{Op: errorfs.Fallocate, PathContains: "/streams/", Err: syscall.ENOSPC})
	resp, msg := do("PUT", "/v1/stream/b", big)
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(msg, "no space") {
		t.Fatalf("create on a full disk: %d %q", resp.StatusCode, msg)
	}
	if resp, body := do("GET", "/v1/stream/a?offset=-1", ""); resp.StatusCode != 200 || body != "first;" {
		t.Fatalf("read on a full disk: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do("GET", "/health", ""); resp.StatusCode != 200 {
		t.Fatalf("health on a full disk: %d (a full disk is not a failure)", resp.StatusCode)
	}
	fs.Clear()
	if resp, _ := do("PUT", "/v1/stream/b", big); resp.StatusCode != 201 {
		t.Fatalf("create after space returned: %d", resp.StatusCode)
	}

	// A failed commit sync: 503, writes stop, health says so, reads work.
	fs.Inject(errorfs.Rule{Op: errorfs.Fdatasync, PathContains: "/wal/", Err: syscall.EIO, Times: 1})
	if resp, msg := do("POST", "/v1/stream/a", "second;"); resp.StatusCode != http.StatusServiceUnavailable || msg == "" {
		t.Fatalf("append whose sync failed: %d %q", resp.StatusCode, msg)
	}
	if resp, _ := do("POST", "/v1/stream/a", "third;"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("append after a failed sync: %d", resp.StatusCode)
	}
	resp, msg = do("GET", "/health", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(msg, "unavailable") {
		t.Fatalf("health after a failed sync: %d %q", resp.StatusCode, msg)
	}
	if resp, body := do("GET", "/v1/stream/a?offset=-1", ""); resp.StatusCode != 200 || body != "first;" {
		t.Fatalf("read after a failed sync: %d %q", resp.StatusCode, body)
	}
}

// A commit-log sync that fails with ENOSPC stops writes like any failed
// sync: the append in flight and every write after it get the same 503
// with Retry-After until a restart, never a 507 that invites a retry
// against an engine that has stopped.
func TestHTTPSyncENOSPCIsOneAnswer(t *testing.T) {
	fs := errorfs.New(nil)
	do := faultServer(t, fs)
	if resp, _ := do("PUT", "/v1/stream/a", "first;"); resp.StatusCode != 201 {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	fs.Inject(errorfs.Rule{Op: errorfs.Fdatasync, PathContains: "/wal/", Err: syscall.ENOSPC, Times: 1})
	_, first := do("POST", "/v1/stream/a", "second;")
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/v1/stream/a", "second;"},
		{"POST", "/v1/stream/a", "third;"},
		{"PUT", "/v1/stream/new", "x"},
		{"DELETE", "/v1/stream/a", ""},
	} {
		resp, msg := do(w.method, w.path, w.body)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || msg != first {
			t.Fatalf("%s %s after a sync failed with ENOSPC: %d Retry-After %q %q (the first answer: %q)",
				w.method, w.path, resp.StatusCode, resp.Header.Get("Retry-After"), msg, first)
		}
	}
	if resp, body := do("GET", "/v1/stream/a?offset=-1", ""); resp.StatusCode != 200 || body != "first;" {
		t.Fatalf("read after a failed sync: %d %q", resp.StatusCode, body)
	}
}
