package crashtest

// Durable fetch across a SIGKILL: a fetch that completed before the kill
// is replayed byte-exact after the restart without calling the upstream
// again; one the kill interrupted is served with everything that was
// stored (at least every byte a reader had seen) and then cut, never
// presented as complete and never left hanging, and /in-progress says it
// is neither in progress nor completed.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tokenUpstream is an upstream that answers every request with an SSE
// token stream: plan gives the number of tokens for a request path and the
// pause after each; the stream ends early when the request is cancelled.
func tokenUpstream(plan func(path string) (n int, every time.Duration)) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, every := plan(r.URL.Path)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range n {
			fmt.Fprintf(w, "data:  token %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(every):
			case <-r.Context().Done():
				return
			}
		}
	}))
}

// fetchDoorFlags are serve flags that put the durablefetch API on a free
// loopback port (allowing loopback upstreams); door is its URL.
func fetchDoorFlags(t testing.TB) (flags []string, door string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return []string{"--fetch-addr", addr, "--proxy-allow", "http://127.0.0.1:*/**"}, "http://" + addr
}

// tokens is what tokenUpstream sends for n tokens.
func tokens(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "data:  token %d\n\n", i)
	}
	return b.Bytes()
}

func TestFetchSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the server; skipped with -short")
	}
	bin, err := buildServer(t.TempDir(), os.Getenv("DURASTREAM_TORTURE_RACE") == "1")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	up := tokenUpstream(func(path string) (int, time.Duration) {
		calls.Add(1)
		if path == "/slow" {
			return 2000, 10 * time.Millisecond
		}
		return 20, 0
	})
	defer up.Close()
	upHost := strings.TrimPrefix(up.URL, "http://")

	flags, door := fetchDoorFlags(t)
	data := filepath.Join(t.TempDir(), "data")
	srv, _, err := startServer(bin, data, flags...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.kill() }()
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableCompression: true}}

	// A fetch that completes before the kill.
	quick := door + "/" + upHost + "/quick?id=1"
	resp, err := hc.Get(quick)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(body, tokens(20)) {
		t.Fatalf("quick fetch before the kill: %v, %d bytes", err, len(body))
	}

	// A fetch the kill interrupts: read a part of it, then SIGKILL.
	slow := door + "/" + upHost + "/slow?id=2"
	resp, err = hc.Get(slow)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	var seen []byte
	for bytes.Count(seen, []byte("\n\n")) < 50 {
		line, err := rd.ReadBytes('\n')
		seen = append(seen, line...)
		if err != nil {
			t.Fatalf("slow fetch before the kill: %v", err)
		}
	}
	if err := srv.kill(); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	srv, _, err = startServer(bin, data, flags...)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	before := calls.Load()

	resp, err = hc.Get(quick)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, tokens(20)) {
		t.Fatalf("quick fetch after the restart: status %d, %v, %d bytes", resp.StatusCode, err, len(body))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", slow, nil)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case ctx.Err() != nil:
		t.Fatal("the interrupted fetch's body hangs after the restart")
	case err == nil:
		t.Fatalf("the interrupted fetch's body ended cleanly after %d bytes: presented as complete", len(body))
	case !bytes.HasPrefix(body, seen):
		t.Fatalf("after the restart the interrupted fetch's body lacks bytes a reader saw before the kill (%d stored, %d seen)", len(body), len(seen))
	case !bytes.HasPrefix(tokens(2000), body):
		t.Fatal("the interrupted fetch's stored bytes are not the upstream's")
	}
	if n := calls.Load() - before; n != 0 {
		t.Fatalf("the upstream was called %d times after the restart", n)
	}

	resp, err = hc.Post(door+"/in-progress", "application/json", strings.NewReader(`{"url":"`+up.URL+`/slow?id=2"}`))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		InProgress, Completed bool
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.InProgress || st.Completed {
		t.Fatalf("in-progress of the interrupted fetch: %+v, %v", st, err)
	}
}
