// Package interop drives a real `durastream serve` process with the official
// Go client, github.com/durable-streams/durable-streams/packages/client-go
// (pinned at v0.1.0 in this module's go.mod), plus plain net/http where the
// client cannot show what the protocol requires.
//
// TestMain builds ./cmd/durastream from the repository root, starts it on a
// free 127.0.0.1 port with a fresh data directory (--durability sync, or the
// value of DURASTREAM_DURABILITY, e.g. memory), waits for GET /health, runs
// the tests, then stops it with SIGTERM (SIGKILL after 10s). When a test
// fails, the tail of the server log is printed.
package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ds "github.com/durable-streams/durable-streams/packages/client-go"
)

const streamPrefix = "/v1/stream/"

var (
	// baseURL is the running server, e.g. http://127.0.0.1:40123.
	baseURL string
	// rawClient is a plain net/http client for protocol-level checks. It
	// does not ask for compression, so bodies arrive exactly as stored.
	rawClient = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}}
	// serverLog is the file holding the server's stdout and stderr.
	serverLog string
	streamSeq atomic.Int64
	// serverBin is the durastream binary under test; authSecret the HS256
	// secret of its access control (auth_test.go): streams under
	// interop-go/ are granted to anonymous callers, the rest need a token.
	serverBin, authSecret string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) (code int) {
	// The server gets SIGKILL if this thread dies (Pdeathsig), e.g. when a
	// `go test -timeout` panic skips the cleanup below; lock the main
	// goroutine to its thread so that thread lives as long as the process.
	runtime.LockOSThread()
	_, thisFile, _, ok := runtime.Caller(0)
	if !ok {
		fmt.Fprintln(os.Stderr, "interop: cannot locate the test file")
		return 2
	}
	root, err := filepath.Abs(filepath.Join(filepath.Dir(thisFile), "..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "durastream-interop-go-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 2
	}
	defer os.RemoveAll(tmp)

	bin := filepath.Join(tmp, "durastream")
	build := exec.Command("go", "build", "-o", bin, "./cmd/durastream")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "interop: building the server in %s failed: %v\n%s", root, err, out)
		return 2
	}

	serverBin = bin
	authSecret = fmt.Sprintf("interop-go-%d-%d", time.Now().UnixNano(), os.Getpid())
	opsToken, err := mintToken("--ops")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 2
	}

	durability := os.Getenv("DURASTREAM_DURABILITY")
	if durability == "" {
		durability = "sync"
	}
	serverLog = filepath.Join(tmp, "server.log")
	logFile, err := os.Create(serverLog)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 2
	}
	defer logFile.Close()

	var srv *exec.Cmd
	var proc *serverProc
	// The free port is found by binding :0 and closing it; another process
	// could take it in between, so a failed start is retried.
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			return 2
		}
		srv = exec.Command(bin, "serve",
			"--addr", addr,
			"--data-dir", filepath.Join(tmp, fmt.Sprintf("data-%d", attempt)),
			"--durability", durability,
			"--anonymous", "all:interop-go/**")
		srv.Env = append(os.Environ(), "DURASTREAM_AUTH_HMAC_SECRET="+authSecret)
		srv.Dir = tmp
		srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		srv.Stdout = logFile
		srv.Stderr = logFile
		if err := srv.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "interop: starting the server:", err)
			return 2
		}
		proc = &serverProc{cmd: srv, done: make(chan struct{})}
		go func(p *serverProc) { p.err = p.cmd.Wait(); close(p.done) }(proc)
		baseURL = "http://" + addr
		if err = waitHealthy(baseURL, opsToken, proc, 20*time.Second); err == nil {
			break
		}
		fmt.Fprintf(os.Stderr, "interop: server did not become healthy on %s: %v\n", addr, err)
		proc.stop()
		srv = nil
	}
	if srv == nil {
		printLogTail(os.Stderr)
		return 2
	}
	fmt.Fprintf(os.Stderr, "interop: durastream serving at %s (durability=%s)\n", baseURL, durability)

	code = m.Run()

	closeIdleConnections()
	stopStart := time.Now()
	if err := proc.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "interop: server shutdown:", err)
		if code == 0 {
			code = 1
		}
	}
	if d := time.Since(stopStart); d > 2*time.Second {
		fmt.Fprintf(os.Stderr, "interop: the server took %v to stop after SIGTERM\n", d.Round(time.Millisecond))
	}
	if code != 0 {
		printLogTail(os.Stderr)
	}
	return code
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// serverProc is the running server; done is closed when it has exited, and
// err is then its exit status.
type serverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// mintToken makes an HS256 token with `durastream token` and its flags.
func mintToken(args ...string) (string, error) {
	cmd := exec.Command(serverBin, append([]string{"token"}, args...)...)
	cmd.Env = append(os.Environ(), "DURASTREAM_AUTH_HMAC_SECRET="+authSecret)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("durastream token %v: %w", args, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func waitHealthy(base, token string, p *serverProc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("server exited early: %v", p.err)
		default:
		}
		req, _ := http.NewRequest("GET", base+"/health", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("timed out waiting for GET /health")
}

// stop sends SIGTERM, waits up to 10s, then SIGKILLs.
func (p *serverProc) stop() error {
	select {
	case <-p.done:
		return fmt.Errorf("server had already exited: %v", p.err)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("exit after SIGTERM: %v", p.err)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("server ignored SIGTERM for 10s; killed")
	}
}

func printLogTail(w io.Writer) {
	if serverLog == "" {
		return
	}
	b, err := os.ReadFile(serverLog)
	if err != nil {
		fmt.Fprintln(w, "interop: reading server log:", err)
		return
	}
	const max = 16 << 10
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	fmt.Fprintf(w, "---- tail of server log (%s) ----\n%s---- end of server log ----\n", serverLog, b)
}

// ---------------------------------------------------------------------------
// helpers shared by the tests

var (
	clientsMu sync.Mutex
	clients   []*ds.Client
)

// newClient returns a client-go client as users would create it.
func newClient() *ds.Client {
	c := ds.NewClient(ds.WithBaseURL(baseURL))
	clientsMu.Lock()
	clients = append(clients, c)
	clientsMu.Unlock()
	return c
}

// closeIdleConnections drops the clients' pooled connections before the
// server is stopped. A pooled connection that never carried a request (the
// transport dials one, then reuses another) counts as active for 5s in
// net/http's Server.Shutdown and would only delay the stop.
func closeIdleConnections() {
	clientsMu.Lock()
	defer clientsMu.Unlock()
	for _, c := range clients {
		c.HTTPClient().CloseIdleConnections()
	}
	rawClient.CloseIdleConnections()
}

// streamPath is a fresh stream path for the test, e.g.
// /v1/stream/interop-go/TestBinary-1733000000000-3.
func streamPath(t *testing.T) string {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return fmt.Sprintf("%sinterop-go/%s-%d-%d", streamPrefix, name, time.Now().UnixNano(), streamSeq.Add(1))
}

// testCtx is a context bounded by d and the test's deadline.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createStream creates the stream with the client and fails the test on error.
func createStream(t *testing.T, ctx context.Context, c *ds.Client, path, contentType string) *ds.Stream {
	t.Helper()
	s := c.Stream(path)
	if err := s.Create(ctx, ds.WithContentType(contentType)); err != nil {
		t.Fatalf("create %s (%s): %v", path, contentType, err)
	}
	return s
}

// mustAppend appends with the client and returns the new tail offset.
func mustAppend(t *testing.T, ctx context.Context, s *ds.Stream, data []byte, opts ...ds.AppendOption) ds.Offset {
	t.Helper()
	r, err := s.Append(ctx, data, opts...)
	if err != nil {
		t.Fatalf("append %d bytes to %s: %v", len(data), s.URL(), err)
	}
	if r.NextOffset == "" {
		t.Fatalf("append to %s: no Stream-Next-Offset in the response", s.URL())
	}
	return r.NextOffset
}

// readAll reads the stream with a catch-up iterator until Done and returns
// the concatenated bytes, the chunks and the last offset.
func readAll(t *testing.T, ctx context.Context, s *ds.Stream, opts ...ds.ReadOption) ([]byte, []*ds.Chunk, ds.Offset) {
	t.Helper()
	it := s.Read(ctx, opts...)
	defer it.Close()
	var out []byte
	var chunks []*ds.Chunk
	for {
		ch, err := it.Next()
		if errors.Is(err, ds.Done) {
			return out, chunks, it.Offset
		}
		if err != nil {
			t.Fatalf("catch-up read of %s: %v", s.URL(), err)
		}
		chunks = append(chunks, ch)
		out = append(out, ch.Data...)
	}
}

// rawResponse is a fully read plain-HTTP response.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// rawDo sends one plain HTTP request (no client-go involved).
func rawDo(t *testing.T, ctx context.Context, method, path string, hdr map[string]string, body []byte) rawResponse {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return rawResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// headTail returns the stream's tail offset from a plain HEAD.
func headTail(t *testing.T, ctx context.Context, path string) string {
	t.Helper()
	r := rawDo(t, ctx, http.MethodHead, path, nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("HEAD %s: status %d", path, r.Status)
	}
	off := r.Header.Get("Stream-Next-Offset")
	if off == "" {
		t.Fatalf("HEAD %s: no Stream-Next-Offset", path)
	}
	return off
}

// allBytes is 0x00..0xFF.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}
