package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// proxied starts a server and a proxy in front of it, and returns a client
// of the proxy that does not retry, and one of the server.
func proxied(t *testing.T) (s *Server, p *Proxy, viaProxy, direct *minio.Client) {
	s = Start(t)
	p = NewProxy(t, s.Endpoint)
	return s, p, newClient(t, p.Endpoint, s.AccessKey, s.SecretKey, 1), s.Client(t)
}

// wantNoAnswer fails unless err is a connection-level failure: no HTTP
// answer at all.
func wantNoAnswer(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want a dropped connection")
	}
	if resp := minio.ToErrorResponse(err); resp.StatusCode != 0 {
		t.Fatalf("got HTTP %d (%v), want no answer", resp.StatusCode, err)
	}
}

func TestProxyPass(t *testing.T) {
	s, p, c, direct := proxied(t)
	ctx := testCtx(t)

	// A name that needs escaping: the signed path must survive the proxy.
	const key = "pass/a b+c=d/ü%2F.seg"
	body := make([]byte, 3<<20)
	rand.Read(body)
	if _, err := c.PutObject(ctx, s.Bucket, key, bytes.NewReader(body), int64(len(body)), createOnly()); err != nil {
		t.Fatalf("PUT: %v", err)
	}
	// A small body: versitygw refuses a conflicting create before reading
	// the body and resets the connection, so a large one may end in a
	// reset (a 502 here) instead of the 412.
	_, err := c.PutObject(ctx, s.Bucket, key, strings.NewReader("again"), 5, createOnly())
	wantS3Error(t, err, http.StatusPreconditionFailed, "PreconditionFailed")

	st, err := c.StatObject(ctx, s.Bucket, key, minio.StatObjectOptions{})
	if err != nil || st.Size != int64(len(body)) || st.ETag != md5Hex(body) {
		t.Fatalf("HEAD: %+v, %v", st, err)
	}
	if got, err := getAll(ctx, c, s.Bucket, key, minio.GetObjectOptions{}); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("GET: %d bytes, %v", len(got), err)
	}
	var rng minio.GetObjectOptions
	rng.SetRange(1<<20, 1<<20+99)
	if got, err := getAll(ctx, c, s.Bucket, key, rng); err != nil || !bytes.Equal(got, body[1<<20:1<<20+100]) {
		t.Fatalf("range GET: %d bytes, %v", len(got), err)
	}
	var listed []string
	for o := range c.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Prefix: "pass/", Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("LIST: %v", o.Err)
		}
		listed = append(listed, o.Key)
	}
	if !slices.Equal(listed, []string{key}) {
		t.Fatalf("LIST: %q", listed)
	}
	if err := c.RemoveObject(ctx, s.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	_, err = direct.StatObject(ctx, s.Bucket, key, minio.StatObjectOptions{})
	wantS3Error(t, err, http.StatusNotFound, "NoSuchKey")

	for method, want := range map[string]int64{"PUT": 2, "HEAD": 1, "GET": 3, "DELETE": 1, "": 7, "post": 0} {
		if got := p.Count(method); got != want {
			t.Errorf("Count(%q) = %d, want %d", method, got, want)
		}
	}
}

func TestProxyFail503(t *testing.T) {
	s, p, c, direct := proxied(t)
	ctx := testCtx(t)
	if _, err := direct.PutObject(ctx, s.Bucket, "there", strings.NewReader("x"), 1, singlePut()); err != nil {
		t.Fatal(err)
	}

	p.SetMode(Fail503)
	_, err := c.PutObject(ctx, s.Bucket, "new", strings.NewReader("x"), 1, createOnly())
	wantS3Error(t, err, http.StatusServiceUnavailable, "SlowDown")
	_, err = getAll(ctx, c, s.Bucket, "there", minio.GetObjectOptions{})
	wantS3Error(t, err, http.StatusServiceUnavailable, "SlowDown")
	_, err = c.StatObject(ctx, s.Bucket, "there", minio.StatObjectOptions{}) // HEAD: no body, status only
	wantS3Error(t, err, http.StatusServiceUnavailable, "")
	_, err = direct.StatObject(ctx, s.Bucket, "new", minio.StatObjectOptions{})
	wantS3Error(t, err, http.StatusNotFound, "NoSuchKey") // nothing forwarded
	if n := p.Count("PUT"); n != 1 {
		t.Fatalf("Count(PUT) = %d, want 1 (no retries)", n)
	}

	// minio-go's own retries see the 503s, then succeed once they stop.
	retrying := newClient(t, p.Endpoint, s.AccessKey, s.SecretKey, 0)
	done := make(chan error, 1)
	go func() {
		_, err := retrying.StatObject(ctx, s.Bucket, "there", minio.StatObjectOptions{})
		done <- err
	}()
	waitFor(t, "a retried HEAD", func() bool { return p.Count("HEAD") >= 2 })
	p.SetMode(Pass)
	if err := <-done; err != nil {
		t.Fatalf("retried HEAD after 503s: %v", err)
	}
}

func TestProxyRefuse(t *testing.T) {
	s, p, c, direct := proxied(t)
	ctx := testCtx(t)

	p.SetMode(Refuse)
	body := make([]byte, 1<<20) // more than the socket buffers: refused mid-body
	_, err := c.PutObject(ctx, s.Bucket, "refused", bytes.NewReader(body), int64(len(body)), createOnly())
	wantNoAnswer(t, err)
	_, err = c.StatObject(ctx, s.Bucket, "refused", minio.StatObjectOptions{})
	wantNoAnswer(t, err)
	_, err = direct.StatObject(ctx, s.Bucket, "refused", minio.StatObjectOptions{})
	wantS3Error(t, err, http.StatusNotFound, "NoSuchKey")

	p.SetMode(Pass)
	if _, err := c.PutObject(ctx, s.Bucket, "refused", bytes.NewReader(body), int64(len(body)), createOnly()); err != nil {
		t.Fatalf("PUT after Pass: %v", err)
	}
}

func TestProxyPerMethod(t *testing.T) {
	s, p, c, direct := proxied(t)
	ctx := testCtx(t)
	if _, err := direct.PutObject(ctx, s.Bucket, "there", strings.NewReader("x"), 1, singlePut()); err != nil {
		t.Fatal(err)
	}
	stat := func() error {
		_, err := c.StatObject(ctx, s.Bucket, "there", minio.StatObjectOptions{})
		return err
	}
	put := func() error {
		_, err := c.PutObject(ctx, s.Bucket, "put", strings.NewReader("x"), 1, singlePut())
		return err
	}

	p.SetModeFor("put", Fail503) // methods are case-insensitive here
	wantS3Error(t, put(), http.StatusServiceUnavailable, "SlowDown")
	if err := stat(); err != nil {
		t.Fatalf("HEAD with only PUT failing: %v", err)
	}

	p.SetModeFor("", Refuse) // the default; the PUT override stays
	wantNoAnswer(t, stat())
	wantS3Error(t, put(), http.StatusServiceUnavailable, "SlowDown")

	p.SetModeFor("PUT", Pass)
	if err := put(); err != nil {
		t.Fatalf("PUT set to Pass: %v", err)
	}
	wantNoAnswer(t, stat())

	p.SetMode(Pass) // clears the overrides too
	if err := stat(); err != nil {
		t.Fatal(err)
	}
	p.SetModeFor("PUT", Fail503)
	p.SetMode(Pass)
	if err := put(); err != nil {
		t.Fatalf("PUT after SetMode(Pass): %v", err)
	}
}

func TestProxyHang(t *testing.T) {
	s, p, c, direct := proxied(t)
	ctx := testCtx(t)
	if _, err := direct.PutObject(ctx, s.Bucket, "there", strings.NewReader("held"), 4, singlePut()); err != nil {
		t.Fatal(err)
	}

	t.Run("UntilDeadline", func(t *testing.T) {
		p.SetMode(Hang)
		defer p.SetMode(Pass)
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.StatObject(short, s.Bucket, "there", minio.StatObjectOptions{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("held HEAD: %v, want the deadline", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("held HEAD took %v to give up", d)
		}
	})

	// A held request goes on per the mode it is released into.
	for _, tc := range []struct {
		release Mode
		check   func(t *testing.T, err error)
	}{
		{Pass, func(t *testing.T, err error) {
			if err != nil {
				t.Fatalf("released GET: %v", err)
			}
		}},
		{Fail503, func(t *testing.T, err error) { wantS3Error(t, err, http.StatusServiceUnavailable, "SlowDown") }},
		{Refuse, wantNoAnswer},
	} {
		t.Run("Into"+tc.release.String(), func(t *testing.T) {
			p.SetModeFor("GET", Hang)
			defer p.SetMode(Pass)
			before := p.Count("GET")
			done := make(chan error, 1)
			go func() {
				got, err := getAll(ctx, c, s.Bucket, "there", minio.GetObjectOptions{})
				if err == nil && string(got) != "held" {
					err = errors.New("released GET read " + string(got))
				}
				done <- err
			}()
			waitFor(t, "the GET to arrive", func() bool { return p.Count("GET") > before })

			// Other methods go through meanwhile.
			if _, err := c.StatObject(ctx, s.Bucket, "there", minio.StatObjectOptions{}); err != nil {
				t.Fatalf("HEAD while GETs hang: %v", err)
			}
			p.SetModeFor("PUT", Fail503) // a change elsewhere keeps the GET held
			select {
			case err := <-done:
				t.Fatalf("GET released by another method's change: %v", err)
			case <-time.After(50 * time.Millisecond):
			}

			p.SetModeFor("GET", tc.release)
			select {
			case err := <-done:
				tc.check(t, err)
			case <-time.After(2 * time.Second):
				t.Fatal("GET still held after its mode changed")
			}
		})
	}
}

// TestProxyServerDown checks that the proxy answers 502 while the server is
// stopped and forwards again once it is back on the same port.
func TestProxyServerDown(t *testing.T) {
	s, _, c, _ := proxied(t)
	ctx := testCtx(t)
	if _, err := c.PutObject(ctx, s.Bucket, "kept", strings.NewReader("kept"), 4, singlePut()); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	_, err := c.StatObject(ctx, s.Bucket, "kept", minio.StatObjectOptions{})
	wantS3Error(t, err, http.StatusBadGateway, "")
	s.Restart(t)
	if got, err := getAll(ctx, c, s.Bucket, "kept", minio.GetObjectOptions{}); err != nil || string(got) != "kept" {
		t.Fatalf("after restart: %q, %v", got, err)
	}
}

func TestProxyCloseReleasesHeld(t *testing.T) {
	s := Start(t)
	done := make(chan error, 1)
	t.Run("inner", func(t *testing.T) {
		p := NewProxy(t, s.Endpoint)
		c := newClient(t, p.Endpoint, s.AccessKey, s.SecretKey, 1)
		p.SetMode(Hang)
		go func() {
			_, err := c.PutObject(context.Background(), s.Bucket, "held", strings.NewReader("x"), 1, singlePut())
			done <- err
		}()
		waitFor(t, "the PUT to arrive", func() bool { return p.Count("PUT") == 1 })
		// The subtest's cleanup closes the proxy with the PUT held.
	})
	select {
	case err := <-done:
		wantNoAnswer(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("held PUT not released by the proxy's cleanup")
	}
}

// TestProxyStripRange: a ranged GET through StripRange gets the whole
// object with 200 and no Content-Range (minio-go accepts it); other
// requests pass.
func TestProxyStripRange(t *testing.T) {
	s, p, c, _ := proxied(t)
	p.SignWith(s.AccessKey, s.SecretKey)
	ctx := testCtx(t)
	body := []byte("0123456789abcdef")
	if _, err := c.PutObject(ctx, s.Bucket, "strip", bytes.NewReader(body), int64(len(body)), singlePut()); err != nil {
		t.Fatal(err)
	}
	var rng minio.GetObjectOptions
	rng.SetRange(4, 7)
	get := func() ([]byte, http.Header) {
		t.Helper()
		rc, _, h, err := minio.Core{Client: c}.GetObject(ctx, s.Bucket, "strip", rng)
		if err != nil {
			t.Fatalf("range GET: %v", err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("range GET: %v", err)
		}
		return got, h
	}
	if got, h := get(); string(got) != "4567" || h.Get("Content-Range") != "bytes 4-7/16" {
		t.Fatalf("Pass: %q, Content-Range %q", got, h.Get("Content-Range"))
	}
	p.SetModeFor(http.MethodGet, StripRange)
	if got, h := get(); string(got) != string(body) || h.Get("Content-Range") != "" {
		t.Fatalf("StripRange: %q, Content-Range %q; want the whole object and none", got, h.Get("Content-Range"))
	}
	if _, err := c.StatObject(ctx, s.Bucket, "strip", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("HEAD with GET stripped: %v", err)
	}
}
