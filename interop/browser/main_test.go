package browser

import (
	"bufio"
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
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"testing"
)

var (
	// fetchURL is durastream's durablefetch API, e.g. http://127.0.0.1:40124.
	fetchURL string
	// upstreamURL is the demo's fake LLM, e.g. http://127.0.0.1:40125.
	upstreamURL string
	// pageURL is the demo's chat page, e.g. http://127.0.0.1:40126/.
	pageURL string
	// chromiumPath is the browser binary; "" with skipReason set when none.
	chromiumPath string
	skipReason   string

	logs []string // log files printed when a test fails
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) (code int) {
	// Children get SIGKILL if this thread dies (Pdeathsig), e.g. when a
	// `go test -timeout` panic skips the cleanup below; lock the main
	// goroutine to its thread so that thread lives as long as the process.
	runtime.LockOSThread()
	chromiumPath, skipReason = findChromium()

	_, thisFile, _, ok := runtime.Caller(0)
	if !ok {
		fmt.Fprintln(os.Stderr, "browser: cannot locate the test file")
		return 2
	}
	root, err := filepath.Abs(filepath.Join(filepath.Dir(thisFile), "..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "durastream-interop-browser-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		return 2
	}
	defer os.RemoveAll(tmp)
	// Runs after the deferred stops below, so the logs include shutdown.
	defer func() {
		if code != 0 || os.Getenv("INTEROP_SHOW_LOGS") != "" {
			printLogs(os.Stderr)
		}
	}()

	bins := map[string]string{}
	for _, pkg := range []string{"./cmd/durastream", "./examples/fetchdemo"} {
		bin := filepath.Join(tmp, filepath.Base(pkg))
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "browser: building %s in %s failed: %v\n%s", pkg, root, err, out)
			return 2
		}
		bins[pkg] = bin
	}

	// durastream, with the durablefetch API on its own listener. The free
	// ports are found by binding :0 and closing; another process could take
	// one in between, so a failed start is retried.
	dsLog := filepath.Join(tmp, "durastream.log")
	logs = append(logs, dsLog)
	var ds *proc
	for attempt := 0; attempt < 3 && ds == nil; attempt++ {
		addr, fetchAddr := freeAddr(), freeAddr()
		p, err := startProc(dsLog, tmp, bins["./cmd/durastream"], "serve",
			"--durability", "sync",
			"--data-dir", filepath.Join(tmp, fmt.Sprintf("data-%d", attempt)),
			"--addr", addr,
			"--fetch-addr", fetchAddr,
			"--proxy-allow", "http://127.0.0.1:*/**",
			"--log-level", "debug")
		if err != nil {
			fmt.Fprintln(os.Stderr, "browser: starting durastream:", err)
			return 2
		}
		if err := waitReady(p, "http://"+addr, "http://"+fetchAddr, 20*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "browser: durastream did not start on %s/%s: %v\n", addr, fetchAddr, err)
			p.stop()
			continue
		}
		ds, fetchURL = p, "http://"+fetchAddr
	}
	if ds == nil {
		return 2
	}
	defer func() {
		if err := ds.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "browser: durastream shutdown:", err)
			if code == 0 {
				code = 1
			}
		}
	}()

	// The demo: fake LLM upstream and chat page, on ports it picks.
	demoLog := filepath.Join(tmp, "fetchdemo.log")
	logs = append(logs, demoLog)
	demo, err := startProc(demoLog, tmp, bins["./examples/fetchdemo"],
		"-durablefetch", fetchURL, "-addr", "127.0.0.1:0", "-upstream-addr", "127.0.0.1:0",
		"-tokens", fmt.Sprint(answerTokens), "-interval", tokenInterval.String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser: starting fetchdemo:", err)
		return 2
	}
	defer func() {
		if err := demo.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "browser: fetchdemo shutdown:", err)
		}
	}()
	if upstreamURL, pageURL, err = demoURLs(demo, demoLog, 20*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "browser: fetchdemo:", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "browser: durablefetch %s, upstream %s, page %s, chromium %q\n",
		fetchURL, upstreamURL, pageURL, chromiumPath)

	return m.Run()
}

// findChromium returns the browser to drive, or "" and why there is none.
func findChromium() (string, string) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", "$CHROMIUM=" + p + ": " + err.Error()
		}
		return p, ""
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", ""
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, ""
		}
	}
	return "", "no Chromium: /usr/bin/chromium is missing (install it with " +
		"`apt-get install -y chromium`, or set $CHROMIUM to a Chromium/Chrome binary)"
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a child process; done is closed when it has exited, and err is
// then its exit status.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts bin with args, its stdout and stderr appended to logPath.
func startProc(logPath, dir, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "---- %s %s\n", filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM, waits up to 10s, then SIGKILLs.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return fmt.Errorf("had already exited: %v", p.err)
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
		return errors.New("ignored SIGTERM for 10s; killed")
	}
}

func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("exited early: %v", p.err)
	default:
		return nil
	}
}

// waitReady waits for durastream's GET /health and for its durablefetch
// listener to answer POST /in-progress.
func waitReady(p *proc, base, fetchBase string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: time.Second}
	ok := func(resp *http.Response, err error) bool {
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for time.Now().Before(deadline) {
		if err := p.exited(); err != nil {
			return err
		}
		if ok(c.Get(base+"/health")) &&
			ok(c.Post(fetchBase+"/in-progress", "application/json", strings.NewReader(`{"url":"http://127.0.0.1:1/ready"}`))) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("timed out waiting for GET /health and POST /in-progress")
}

var (
	reUpstream = regexp.MustCompile(`fetchdemo: fake LLM upstream at (http://\S+)`)
	rePage     = regexp.MustCompile(`fetchdemo: chat page at (http://\S+)`)
)

// demoURLs reads the upstream's and the page's URLs from the demo's log.
func demoURLs(p *proc, logPath string, limit time.Duration) (up, page string, err error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if m := reUpstream.FindStringSubmatch(sc.Text()); m != nil {
				up = m[1]
			}
			if m := rePage.FindStringSubmatch(sc.Text()); m != nil {
				page = m[1]
			}
		}
		if up != "" && page != "" {
			return up, page, nil
		}
		if err := p.exited(); err != nil {
			return "", "", err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", "", errors.New("timed out waiting for its URLs on stdout")
}

func printLogs(w io.Writer) {
	const max = 16 << 10
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(w, "browser: reading log:", err)
			continue
		}
		if len(b) > max {
			b = b[len(b)-max:]
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				b = b[i+1:]
			}
		}
		fmt.Fprintf(w, "---- tail of %s ----\n%s---- end of %s ----\n", filepath.Base(path), b, filepath.Base(path))
	}
}

// getJSON GETs url into v.
func getJSON(ctx context.Context, url string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	return doJSON(req, v)
}

// postJSON POSTs body to url and decodes the answer into v.
func postJSON(ctx context.Context, url, body string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return doJSON(req, v)
}
