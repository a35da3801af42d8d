package main

// Connection-level limits of the http.Server the binary builds
// (newHTTPServer): header read timeout and idle timeout against slowloris,
// and the header size limit. Limits inside the handler are tested in
// package server (limits_test.go).

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
)

// startLimitServer parses args as serve flags and serves a memory-mode
// durastream with newHTTPServer on a loopback port; it returns the address.
func startLimitServer(t *testing.T, args ...string) string {
	t.Helper()
	clearEnv(t)
	f, err := parseServeFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory, MaxPathLen: f.maxPathBytes})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(eng, server.Config{MaxPathBytes: f.maxPathBytes, MaxLiveReaders: f.maxLiveReaders})
	if err != nil {
		t.Fatal(err)
	}
	hs := newHTTPServer(srv, f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() {
		srv.Shutdown()
		hs.Close()
		eng.Close()
	})
	return ln.Addr().String()
}

// waitClosed reads from c until the server closes it (or limit passes) and
// returns how long that took from start, and what was read.
func waitClosed(t *testing.T, c net.Conn, start time.Time, limit time.Duration) (time.Duration, string) {
	t.Helper()
	c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (read %q)", limit, b)
	}
	return time.Since(start), string(b)
}

func TestSlowlorisHeaderTimeout(t *testing.T) {
	addr := startLimitServer(t, "--read-header-timeout=300ms", "--idle-timeout=10s")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	// A partial request line, then one byte every 50 ms, forever: each
	// byte arrives well within any per-read timeout, but the headers never
	// finish.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		c.Write([]byte("GET /v1/str"))
		for _, b := range []byte(strings.Repeat("eam/slowly-sent-path", 100)) {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	took, got := waitClosed(t, c, start, 5*time.Second)
	if took < 250*time.Millisecond {
		t.Errorf("closed after %v, before the 300ms header timeout", took)
	}
	if took > 2*time.Second {
		t.Errorf("closed after %v, long after the 300ms header timeout", took)
	}
	if strings.Contains(got, "200 OK") {
		t.Errorf("slow request was served: %q", got)
	}
}

func TestSlowlorisHeadersAfterRequestLine(t *testing.T) {
	// The request line is complete, the headers trickle in.
	addr := startLimitServer(t, "--read-header-timeout=300ms")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		c.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\n"))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte("X-A: b\r\n")); err != nil {
				return
			}
		}
	}()
	took, got := waitClosed(t, c, start, 5*time.Second)
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("closed after %v, want about the 300ms header timeout", took)
	}
	if strings.Contains(got, "200 OK") {
		t.Errorf("slow request was served: %q", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	addr := startLimitServer(t, "--idle-timeout=300ms", "--read-header-timeout=10s")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Two requests on the keep-alive connection, then silence.
	for range 2 {
		if _, err := c.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("health: %d", resp.StatusCode)
		}
	}
	idle := time.Now()
	c.SetReadDeadline(idle.Add(5 * time.Second))
	_, err = br.ReadByte()
	took := time.Since(idle)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read error %v, want EOF (server closed it)", err)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("idle connection closed after %v, want about 300ms", took)
	}
}

func TestMaxHeaderBytes(t *testing.T) {
	cases := []struct {
		args   []string
		header int // bytes in one header value
		status int
	}{
		// net/http allows 4 KiB of slack on top of MaxHeaderBytes.
		{nil, 32 << 10, http.StatusOK},
		{nil, 100 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{[]string{"--max-header-bytes=1024"}, 512, http.StatusOK},
		{[]string{"--max-header-bytes=1024"}, 8 << 10, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, c := range cases {
		addr := startLimitServer(t, c.args...)
		req, _ := http.NewRequest("GET", "http://"+addr+"/health", nil)
		req.Header.Set("X-Big", strings.Repeat("b", c.header))
		tr := &http.Transport{}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%v, %d-byte header: %v", c.args, c.header, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != c.status {
			t.Errorf("%v, %d-byte header: status %d, want %d", c.args, c.header, resp.StatusCode, c.status)
		}
		if resp.StatusCode >= 400 && len(strings.TrimSpace(string(body))) == 0 {
			t.Errorf("%d without a message", resp.StatusCode)
		}
	}
}

func TestLongURLIsRejected(t *testing.T) {
	// A request line longer than the header limit never reaches the
	// handler; a long stream path within it gets the handler's 414.
	addr := startLimitServer(t, "--max-header-bytes=4096", "--max-path-bytes=100")
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/v1/stream/" + strings.Repeat("p", 200), http.StatusRequestURITooLong},
		{"/v1/stream/" + strings.Repeat("p", 20000), http.StatusRequestHeaderFieldsTooLarge},
	} {
		resp, err := http.Get("http://" + addr + c.path + "?offset=-1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("GET of a %d-byte path: %d, want %d", len(c.path), resp.StatusCode, c.status)
		}
	}
}

func TestLimitFlags(t *testing.T) {
	clearEnv(t)
	f, err := parseServeFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"read-header-timeout", f.readHeaderTimeout, 10 * time.Second},
		{"idle-timeout", f.idleTimeout, 120 * time.Second},
		{"max-header-bytes", f.maxHeaderBytes, 64 << 10},
		{"max-path-bytes", f.maxPathBytes, 1024},
		{"max-live-readers", f.maxLiveReaders, 10000},
		{"rate-limit", f.rateLimit, 0.0},
		{"rate-burst", f.rateBurst, 0},
		{"trust-forwarded-for", f.trustForwardedFor, false},
	} {
		if c.got != c.want {
			t.Errorf("%s default %v, want %v", c.name, c.got, c.want)
		}
	}
	hs := newHTTPServer(http.NotFoundHandler(), f, slog.Default())
	if hs.ReadHeaderTimeout != 10*time.Second || hs.IdleTimeout != 120*time.Second || hs.MaxHeaderBytes != 64<<10 {
		t.Errorf("http.Server limits %v %v %d", hs.ReadHeaderTimeout, hs.IdleTimeout, hs.MaxHeaderBytes)
	}

	env := map[string]string{
		"DURASTREAM_READ_HEADER_TIMEOUT": "2s",
		"DURASTREAM_IDLE_TIMEOUT":        "30s",
		"DURASTREAM_MAX_HEADER_BYTES":    "8192",
		"DURASTREAM_MAX_PATH_BYTES":      "300",
		"DURASTREAM_MAX_LIVE_READERS":    "-1",
		"DURASTREAM_RATE_LIMIT":          "2.5",
		"DURASTREAM_RATE_BURST":          "10",
		"DURASTREAM_TRUST_FORWARDED_FOR": "true",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	f, err = parseServeFlags([]string{"--rate-burst=20"})
	if err != nil {
		t.Fatal(err)
	}
	if f.readHeaderTimeout != 2*time.Second || f.idleTimeout != 30*time.Second || f.maxHeaderBytes != 8192 ||
		f.maxPathBytes != 300 || f.maxLiveReaders != -1 || f.rateLimit != 2.5 || f.rateBurst != 20 || !f.trustForwardedFor {
		t.Errorf("from the environment (and --rate-burst=20): %+v", f)
	}
	clearEnv(t)

	for _, args := range [][]string{
		{"--read-header-timeout=-1s"},
		{"--idle-timeout=-1s"},
		{"--max-header-bytes=0"},
		{"--max-path-bytes=0"},
		{"--max-live-readers=0"},
		{"--rate-limit=-1"},
		{"--rate-limit=NaN"},
		{"--rate-limit=Inf"},
		{"--rate-burst=-1"},
	} {
		if _, err := parseServeFlags(args); err == nil {
			t.Errorf("parseServeFlags(%q) accepted", args)
		}
	}
}
