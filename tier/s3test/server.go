package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// Region is the region versitygw is started with; clients that set it
	// skip the bucket-location lookup.
	Region = "us-east-1"

	bucketName   = "durastream-test"
	startTimeout = 10 * time.Second // until versitygw answers
	stopGrace    = 3 * time.Second  // after SIGTERM, before SIGKILL
	startTries   = 3                // fresh ports when one was taken meanwhile
	logTailBytes = 8 << 10
)

// Server is a running versitygw serving Dir, each of whose subdirectories
// is a bucket. Its fields are read-only.
type Server struct {
	Endpoint  string // 127.0.0.1:PORT, no scheme
	Bucket    string // created by Start
	AccessKey string
	SecretKey string
	Dir       string

	bin     string
	logPath string
	metaDir string // sidecar metadata directory when Dir takes no xattrs

	mu   sync.Mutex // serializes Stop and Restart
	proc *process   // nil when stopped
}

// process is one versitygw run; err is set before done is closed.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

var errExited = errors.New("versitygw exited")

// Start runs versitygw on a free 127.0.0.1 port over a temporary directory,
// with random credentials and one bucket, and stops it when the test ends.
// Its output goes to a log file whose tail the test prints if it failed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := requireBinary(t)
	root := t.TempDir() // before the Cleanup below, so removed after it
	s := &Server{
		Bucket:    bucketName,
		AccessKey: rand.Text(),
		SecretKey: rand.Text() + rand.Text(),
		Dir:       filepath.Join(root, "data"),
		bin:       bin,
		logPath:   filepath.Join(root, "versitygw.log"),
	}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	if !xattrOK(s.Dir) {
		s.metaDir = filepath.Join(root, "meta")
		if err := os.Mkdir(s.metaDir, 0o755); err != nil {
			t.Fatalf("s3test: %v", err)
		}
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("s3test: versitygw log ends with:\n%s", s.logTail())
		}
	})

	var err error
	for range startTries {
		if s.Endpoint, err = freeAddr(); err != nil {
			t.Fatalf("s3test: %v", err)
		}
		// Only a versitygw that exited early (its port taken between
		// freeAddr and its listen) is worth another port.
		if err = s.launch(); !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		t.Fatalf("s3test: start versitygw: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("s3test: create bucket %q: %v", s.Bucket, err)
	}
	return s
}

// Stop ends versitygw: SIGTERM, then SIGKILL after a short grace. Stopping
// a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Restart stops versitygw and runs it again on the same port and
// directory, with the same credentials: objects and the bucket come back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	if err := s.launchLocked(); err != nil {
		t.Fatalf("s3test: restart versitygw on %s: %v", s.Endpoint, err)
	}
}

// Client returns a minio client for the server, for tests to inspect,
// create and delete objects directly.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	return newClient(t, s.Endpoint, s.AccessKey, s.SecretKey, 0)
}

// newClient connects to endpoint with path-style addressing and Region;
// maxRetries 0 keeps minio's default (10), 1 disables retries.
func newClient(t testing.TB, endpoint, access, secret string, maxRetries int) *minio.Client {
	t.Helper()
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := minio.New(endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(access, secret, ""),
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    tr,
		MaxRetries:   maxRetries,
	})
	if err != nil {
		t.Fatalf("s3test: minio client for %s: %v", endpoint, err)
	}
	return c
}

func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.launchLocked()
}

// launchLocked starts versitygw and waits until it answers on s.Endpoint.
func (s *Server) launchLocked() error {
	args := []string{
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--port", s.Endpoint, "--region", Region, "--keep-alive",
		"posix",
	}
	if s.metaDir != "" {
		args = append(args, "--sidecar", s.metaDir)
	}
	args = append(args, s.Dir)

	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), s.bin, strings.Join(args, " "))
	cmd := exec.Command(s.bin, args...)
	if n := os.Getenv("DURASTREAM_S3TEST_NICE"); n != "" {
		// Benchmarks: the S3 server stands in for a remote service; at a
		// low priority it takes only CPU the code under test leaves idle.
		cmd = exec.Command("nice", append([]string{"-n", n, s.bin}, args...)...)
	}
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	if err := waitReady(s.Endpoint, p); err != nil {
		s.stopLocked()
		return err
	}
	return nil
}

func (s *Server) stopLocked() {
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitReady polls endpoint until versitygw answers (any S3 answer, even
// 403, will do) or p exits, for at most startTimeout.
func waitReady(endpoint string, p *process) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %v", errExited, p.err)
		default:
		}
		resp, err := client.Get("http://" + endpoint + "/")
		if err == nil {
			resp.Body.Close()
			// Not another program that took the port meanwhile.
			if resp.Header.Get("Server") == "VERSITYGW" {
				return nil
			}
			err = fmt.Errorf("answered by %q", resp.Header.Get("Server"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within %v: %v", endpoint, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr returns a 127.0.0.1 address with a port free at the moment.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// childEnv is the environment without the variables versitygw reads its
// configuration from, so a developer's settings cannot change it.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "VGW_") || strings.HasPrefix(k, "ROOT_ACCESS_KEY") ||
			strings.HasPrefix(k, "ROOT_SECRET") || k == "LOGFILE" || k == "WEBHOOK" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// logTail returns the end of the versitygw log.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
