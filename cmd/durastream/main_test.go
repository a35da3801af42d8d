package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clearEnv removes every DURASTREAM_* variable for the test (restored after).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DURASTREAM_") {
			t.Setenv(k, "") // records the old value for restoring
			os.Unsetenv(k)
		}
	}
}

func TestParseServeFlagsDefaults(t *testing.T) {
	clearEnv(t)
	f, err := parseServeFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"addr", f.addr, "localhost:4437"},
		{"data-dir", f.dataDir, "./data"},
		{"durability", f.durability, "sync"},
		{"long-poll-timeout", f.longPoll, 30 * time.Second},
		{"sse-max-duration", f.sseMax, 60 * time.Second},
		{"max-append-bytes", f.maxAppend, int64(64 << 20)},
		{"max-read-bytes", f.maxRead, int64(0)},
		{"live-chunk-bytes", f.liveChunk, int64(1 << 20)},
		{"checkpoint-bytes", f.ckptBytes, int64(256 << 20)},
		{"checkpoint-interval", f.ckptInterval, 30 * time.Second},
		{"stream-prefix", f.prefix, "/v1/stream/"},
		{"tls-cert", f.tlsCert, ""},
		{"tls-key", f.tlsKey, ""},
		{"log-format", f.logFormat, "text"},
		{"log-level", f.logLevel, "info"},
		{"pprof-addr", f.pprofAddr, ""},
		{"shutdown-timeout", f.shutdownTimeout, 10 * time.Second},
		{"gc-percent", f.gcPercent, 50},
		{"memory-limit", f.memLimit, int64(0)},
		{"gc-min-heap", f.gcFloorN, int64(64 << 20)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s default %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseServeFlagsEnvAndFlags(t *testing.T) {
	cases := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(f *serveFlags) error
	}{
		{"env addr", map[string]string{"DURASTREAM_ADDR": "127.0.0.1:9999"}, nil, func(f *serveFlags) error {
			return expect("addr", f.addr, "127.0.0.1:9999")
		}},
		{"env long-poll", map[string]string{"DURASTREAM_LONG_POLL_TIMEOUT": "5s"}, nil, func(f *serveFlags) error {
			return expect("longPoll", f.longPoll, 5*time.Second)
		}},
		{"env dashes become underscores", map[string]string{
			"DURASTREAM_DATA_DIR": "/var/lib/ds", "DURASTREAM_MAX_APPEND_BYTES": "1024",
			"DURASTREAM_SSE_MAX_DURATION": "1m30s", "DURASTREAM_DURABILITY": "memory",
		}, nil, func(f *serveFlags) error {
			return errors.Join(expect("dataDir", f.dataDir, "/var/lib/ds"), expect("maxAppend", f.maxAppend, int64(1024)),
				expect("sseMax", f.sseMax, 90*time.Second), expect("durability", f.durability, "memory"))
		}},
		{"flag beats env", map[string]string{"DURASTREAM_ADDR": "127.0.0.1:1", "DURASTREAM_LONG_POLL_TIMEOUT": "5s"},
			[]string{"--addr", "127.0.0.1:2", "-long-poll-timeout=7s"}, func(f *serveFlags) error {
				return errors.Join(expect("addr", f.addr, "127.0.0.1:2"), expect("longPoll", f.longPoll, 7*time.Second))
			}},
		{"env and flags mix", map[string]string{"DURASTREAM_ADDR": "127.0.0.1:1"}, []string{"--data-dir", "/tmp/x"}, func(f *serveFlags) error {
			return errors.Join(expect("addr", f.addr, "127.0.0.1:1"), expect("dataDir", f.dataDir, "/tmp/x"))
		}},
		{"gc floor from env", map[string]string{"DURASTREAM_GC_MIN_HEAP": "256MiB"}, nil, func(f *serveFlags) error {
			return expect("gcFloorN", f.gcFloorN, int64(256<<20))
		}},
		{"gc floor off", nil, []string{"--gc-min-heap", "0"}, func(f *serveFlags) error {
			return expect("gcFloorN", f.gcFloorN, int64(0))
		}},
		{"tls pair", nil, []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, func(f *serveFlags) error {
			return errors.Join(expect("tlsCert", f.tlsCert, "c.pem"), expect("tlsKey", f.tlsKey, "k.pem"))
		}},
		{"tls pair from env and flag", map[string]string{"DURASTREAM_TLS_CERT": "c.pem"}, []string{"--tls-key", "k.pem"}, func(f *serveFlags) error {
			return errors.Join(expect("tlsCert", f.tlsCert, "c.pem"), expect("tlsKey", f.tlsKey, "k.pem"))
		}},
		{"unrelated env ignored", map[string]string{"DURASTREAM_NO_SUCH_FLAG": "x", "ADDR": "nope"}, nil, func(f *serveFlags) error {
			return expect("addr", f.addr, "localhost:4437")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			f, err := parseServeFlags(c.args)
			if err != nil {
				t.Fatalf("parseServeFlags(%q): %v", c.args, err)
			}
			if err := c.check(f); err != nil {
				t.Error(err)
			}
		})
	}
}

func expect[T comparable](name string, got, want T) error {
	if got != want {
		return fmt.Errorf("%s = %v, want %v", name, got, want)
	}
	return nil
}

func TestParseServeFlagsErrors(t *testing.T) {
	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		errHas string
		errIs  error
	}{
		{name: "bad env duration", env: map[string]string{"DURASTREAM_LONG_POLL_TIMEOUT": "abc"}, errHas: "DURASTREAM_LONG_POLL_TIMEOUT"},
		{name: "bad env integer", env: map[string]string{"DURASTREAM_MAX_APPEND_BYTES": "lots"}, errHas: "DURASTREAM_MAX_APPEND_BYTES"},
		{name: "bad env even when the flag is given", env: map[string]string{"DURASTREAM_SSE_MAX_DURATION": "1 minute"},
			args: []string{"--sse-max-duration", "5s"}, errHas: "DURASTREAM_SSE_MAX_DURATION"},
		{name: "bad flag duration", args: []string{"--long-poll-timeout", "soon"}},
		{name: "unknown flag", args: []string{"--no-such-flag"}},
		{name: "positional args", args: []string{"extra"}, errHas: "unexpected"},
		{name: "tls cert without key", args: []string{"--tls-cert", "c.pem"}, errHas: "tls"},
		{name: "tls key without cert", args: []string{"--tls-key", "k.pem"}, errHas: "tls"},
		{name: "tls cert from env without key", env: map[string]string{"DURASTREAM_TLS_CERT": "c.pem"}, errHas: "tls"},
		{name: "help", args: []string{"-h"}, errIs: flag.ErrHelp},
		{name: "bad memory limit", args: []string{"--memory-limit", "lots"}, errHas: "memory-limit"},
		{name: "bad gc floor", args: []string{"--gc-min-heap", "-1"}, errHas: "gc-min-heap"},
		{name: "zero gc percent", env: map[string]string{"DURASTREAM_GC_PERCENT": "0"}, errHas: "gc-percent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			f, err := parseServeFlags(c.args)
			if err == nil {
				t.Fatalf("parseServeFlags(%q) = %+v, want an error", c.args, f)
			}
			if c.errHas != "" && !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("error %q does not mention %q", err, c.errHas)
			}
			if c.errIs != nil && !errors.Is(err, c.errIs) {
				t.Errorf("error %v, want %v", err, c.errIs)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	cases := []struct {
		format, level string
		ok            bool
	}{
		{"text", "info", true},
		{"json", "debug", true},
		{"text", "warn", true},
		{"json", "ERROR", true},
		{"xml", "info", false},
		{"", "info", false},
		{"TEXT", "info", false},
		{"text", "verbose", false},
		{"text", "", false},
	}
	for _, c := range cases {
		l, err := newLogger(c.format, c.level)
		if (err == nil) != c.ok {
			t.Errorf("newLogger(%q, %q): err %v, want ok=%v", c.format, c.level, err, c.ok)
		}
		if c.ok && l == nil {
			t.Errorf("newLogger(%q, %q) returned nil", c.format, c.level)
		}
	}
}

// ---------------------------------------------------------------------------
// End to end: the built binary.

// buildBinary compiles the command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "durastream")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// logWatcher collects a child's JSON log lines and reports the address it
// serves on.
type logWatcher struct {
	mu    sync.Mutex
	buf   []byte
	lines []string
	addr  chan string
}

func (w *logWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		w.lines = append(w.lines, line)
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "durastream serving" && rec.Addr != "" {
			select {
			case w.addr <- rec.Addr:
			default:
			}
		}
	}
	return len(p), nil
}

func (w *logWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n") + string(w.buf)
}

func (w *logWatcher) has(msg string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if strings.Contains(l, `"msg":"`+msg+`"`) {
			return true
		}
	}
	return false
}

type child struct {
	cmd  *exec.Cmd
	log  *logWatcher
	base string // http://addr
	done chan error
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DURASTREAM_") {
			env = append(env, kv)
		}
	}
	return env
}

// startServer runs the binary and waits for it to log its address.
func startServer(t *testing.T, bin string, args ...string) *child {
	t.Helper()
	return startServerEnv(t, bin, nil, args...)
}

// startServerEnv is startServer with more environment variables.
func startServerEnv(t *testing.T, bin string, env []string, args ...string) *child {
	t.Helper()
	c := &child{log: &logWatcher{addr: make(chan string, 1)}, done: make(chan error, 1)}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = append(cleanEnv(), env...)
	c.cmd.Stderr = c.log
	c.cmd.Stdout = c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	select {
	case addr := <-c.log.addr:
		c.base = "http://" + addr
	case err := <-c.done:
		t.Fatalf("server exited before serving: %v\n%s", err, c.log)
	case <-time.After(10 * time.Second):
		t.Fatalf("server did not log its address\n%s", c.log)
	}
	return c
}

// stop sends SIGTERM and expects a clean exit within 10 s.
func (c *child) stop(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("server exited with %v\n%s", err, c.log)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("server did not exit within 10s of SIGTERM\n%s", c.log)
	}
	if !c.log.has("stopped") {
		t.Errorf("no \"stopped\" log line\n%s", c.log)
	}
}

func httpDo(t *testing.T, method, url string, body []byte, kv ...string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, b
}

func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	dataDir := filepath.Join(t.TempDir(), "data")

	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	first, second := data[:100<<10], data[100<<10:]

	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--durability", "sync",
		"--log-format", "json", "--shutdown-timeout", "5s"}
	srv := startServer(t, bin, args...)
	stream := srv.base + "/v1/stream/e2e/bin"
	resp, body := httpDo(t, "PUT", stream, first, "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %q", resp.StatusCode, body)
	}
	resp, body = httpDo(t, "POST", stream, second, "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	tail := resp.Header.Get("Stream-Next-Offset")
	resp, body = httpDo(t, "GET", stream+"?offset=-1", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d, %d bytes (want %d identical)", resp.StatusCode, len(body), len(data))
	}
	txt := srv.base + "/v1/stream/e2e/closed"
	resp, _ = httpDo(t, "PUT", txt, []byte("final words"), "Content-Type", "text/plain", "Stream-Closed", "true")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT closed: %d", resp.StatusCode)
	}
	resp, body = httpDo(t, "GET", srv.base+"/health", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Errorf("health: %d %q", resp.StatusCode, body)
	}
	// A live read in flight does not hold up a graceful stop.
	lp := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", stream+"?offset=now&live=long-poll", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			lp <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lp <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	srv.stop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
	select {
	case code := <-lp:
		if code != http.StatusNoContent {
			t.Errorf("long-poll in flight at shutdown: %d, want 204", code)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("long-poll in flight did not finish")
	}

	// Restart on the same directory: everything is still there.
	srv2 := startServer(t, bin, args...)
	stream = srv2.base + "/v1/stream/e2e/bin"
	resp, body = httpDo(t, "GET", stream+"?offset=-1", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET after restart: %d, %d bytes (want %d identical)\n%s", resp.StatusCode, len(body), len(data), srv2.log)
	}
	if got := resp.Header.Get("Stream-Next-Offset"); got != tail {
		t.Errorf("tail after restart %s, want %s", got, tail)
	}
	resp, body = httpDo(t, "GET", srv2.base+"/v1/stream/e2e/closed?offset=-1", nil)
	if string(body) != "final words" || resp.Header.Get("Stream-Closed") != "true" {
		t.Errorf("closed stream after restart: %q, Stream-Closed %q", body, resp.Header.Get("Stream-Closed"))
	}
	// Appends continue after the restart.
	resp, _ = httpDo(t, "POST", stream, []byte("more"), "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("POST after restart: %d", resp.StatusCode)
	}
	srv2.stop(t)
}

func TestCommandLineErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	cases := []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"version", []string{"version"}, 0, "durastream dev"},
		{"unknown command", []string{"frobnicate"}, 1, "unknown command"},
		{"bad durability", []string{"serve", "--addr", "127.0.0.1:0", "--durability", "sometimes", "--data-dir", t.TempDir()}, 1, "durability"},
		{"bad log level", []string{"--log-level", "loud"}, 1, "log level"},
		{"tls half", []string{"--tls-cert", "x.pem"}, 1, "tls"},
		{"help", []string{"serve", "-h"}, 0, "-addr"},
		{"open on every interface", []string{"serve", "--addr", ":0", "--durability", "memory"}, 1, "--allow-anonymous"},
		{"open on a LAN address", []string{"serve", "--addr", "0.0.0.0:0", "--durability", "memory"}, 1, "no access control is configured"},
		{"open fetch door", []string{"serve", "--addr", "127.0.0.1:0", "--fetch-addr", "[::]:0", "--durability", "memory"}, 1, "--fetch-addr"},
		// pprof has no access control: tokens on or --allow-anonymous do not open it.
		{"open pprof with tokens on", []string{"serve", "--addr", "127.0.0.1:0", "--auth-hmac-secret", strings.Repeat("s", 32), "--pprof-addr", "0.0.0.0:0", "--durability", "memory"}, 1, "--pprof-addr 0.0.0.0:0 listens beyond this machine"},
		{"open pprof with --allow-anonymous", []string{"serve", "--addr", "127.0.0.1:0", "--allow-anonymous", "--pprof-addr", ":0", "--durability", "memory"}, 1, "--allow-remote-pprof"},
		{"fetch TTL under twice the idle timeout", []string{"serve", "--addr", "127.0.0.1:0", "--fetch-ttl", "19m", "--durability", "memory"}, 1, "--fetch-ttl must be at least 20m0s"},
		{"short hmac secret", []string{"serve", "--addr", "127.0.0.1:0", "--auth-hmac-secret", "short", "--durability", "memory"}, 1, "at least 32 bytes"},
		{"bad anonymous grant", []string{"serve", "--addr", "127.0.0.1:0", "--auth-hmac-secret", strings.Repeat("s", 32), "--anonymous", "write:**", "--durability", "memory"}, 1, "unknown operation"},
		{"anonymous without auth", []string{"serve", "--addr", "127.0.0.1:0", "--anonymous", "read:**", "--durability", "memory"}, 1, "restricts nothing"},
		{"unreachable jwks", []string{"serve", "--addr", "127.0.0.1:0", "--auth-jwks-url", "http://127.0.0.1:1/jwks.json", "--durability", "memory"}, 1, "JWKS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, c.args...)
			cmd.Env = cleanEnv()
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s", code, c.code, out)
			}
			if !strings.Contains(string(out), c.output) {
				t.Errorf("output lacks %q:\n%s", c.output, out)
			}
		})
	}
}
