package crashtest

// Building, starting, killing and stopping the real durastream binary.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// recoveryLimit is how long a (re)started server has to become healthy.
const recoveryLimit = 15 * time.Second

// repoRoot finds the module root with `go env GOMOD`.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("go env GOMOD: not in a module")
	}
	return filepath.Dir(mod), nil
}

// buildServer builds ./cmd/durastream into dir (with -race if asked).
func buildServer(dir string, race bool) (string, error) {
	return buildServerTags(dir, race, "")
}

// buildServerTags is buildServer with build tags (comma-separated), e.g.
// durastream_unsafe_nowalsync for the power-loss torture's negative control.
func buildServerTags(dir string, race bool, tags string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "durastream")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "./cmd/durastream")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// logSink keeps the server's stderr: the last lines for diagnostics, the
// bound address from the "durastream serving" line, and ERROR lines.
type logSink struct {
	mu      sync.Mutex
	partial []byte
	lines   []string // ring of the last maxLines
	errors  []string
	addr    chan string
	sent    bool
}

const maxLines = 200

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, line)
		if len(l.lines) > maxLines {
			l.lines = l.lines[len(l.lines)-maxLines:]
		}
		var e struct {
			Msg   string `json:"msg"`
			Addr  string `json:"addr"`
			Level string `json:"level"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			// Not a log record: a panic, a race report, a fatal error.
			l.errors = append(l.errors, line)
			continue
		}
		if e.Level == "ERROR" {
			l.errors = append(l.errors, line)
		}
		if e.Msg == "durastream serving" && !l.sent {
			l.sent = true
			l.addr <- e.Addr
		}
	}
	return len(p), nil
}

func (l *logSink) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (l *logSink) takeErrors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.errors
	l.errors = nil
	return e
}

// serverProc is one running server process.
type serverProc struct {
	cmd     *exec.Cmd
	base    string // http://127.0.0.1:port
	logs    *logSink
	done    chan struct{} // closed when the process has exited
	waitErr error
	took    time.Duration // start to healthy
}

func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DURASTREAM_") {
			env = append(env, kv)
		}
	}
	return env
}

// startServer starts the server on dataDir and waits until it reports its
// address and /health answers 200, at most recoveryLimit in all. extra are
// more serve flags.
func startServer(bin, dataDir string, extra ...string) (*serverProc, time.Duration, error) {
	start := time.Now()
	logs := &logSink{addr: make(chan string, 1)}
	args := append([]string{"serve", "--durability", "sync", "--data-dir", dataDir,
		"--addr", "127.0.0.1:0", "--log-format", "json", "--long-poll-timeout", "500ms"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = serverEnv()
	cmd.Stderr = logs
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	p := &serverProc{cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	deadline := start.Add(recoveryLimit)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case addr := <-logs.addr:
		p.base = "http://" + addr
	case <-p.done:
		return nil, 0, fmt.Errorf("server exited during startup (%v); log:\n%s", p.waitErr, logs.tail(40))
	case <-timer.C:
		p.kill()
		return nil, 0, fmt.Errorf("server did not report its address within %v (recovery hangs?); log:\n%s", recoveryLimit, logs.tail(40))
	}
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(p.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				hc.CloseIdleConnections()
				return p, time.Since(start), nil
			}
		}
		select {
		case <-p.done:
			return nil, 0, fmt.Errorf("server exited before it was healthy (%v); log:\n%s", p.waitErr, logs.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			p.kill()
			status := "no answer"
			if err == nil {
				status = resp.Status
			}
			return nil, 0, fmt.Errorf("server not healthy within %v (last /health: %s); log:\n%s", recoveryLimit, status, logs.tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *serverProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the server process and waits for it to exit.
func (p *serverProc) kill() error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.exited() {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("server did not exit 10s after SIGKILL")
	}
}

// stop shuts the server down gracefully (SIGTERM) and expects exit status 0.
func (p *serverProc) stop(timeout time.Duration) error {
	if p.exited() {
		return fmt.Errorf("server had already exited: %v", p.waitErr)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		if p.waitErr != nil {
			return fmt.Errorf("graceful shutdown: %v; log:\n%s", p.waitErr, p.logs.tail(20))
		}
		return nil
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("graceful shutdown did not finish in time; killed; log:\n%s", p.logs.tail(20))
	}
}
