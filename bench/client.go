package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// client is the generator's HTTP client: one Transport whose idle pool
// holds a connection per worker, so that every worker keeps its connection
// alive. Requests are shallow copies of per-worker templates (URL and
// headers are built once); bodies are readers over shared payloads.
type client struct {
	tr      *http.Transport
	timeout time.Duration
}

func newClient(conns int, timeout time.Duration, bufSize int) *client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // loopback benchmarks: never a proxy from the environment
		DialContext:           d.DialContext,
		MaxIdleConns:          conns + 64,
		MaxIdleConnsPerHost:   conns + 64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: 0,
		DisableCompression:    true, // measure the bytes, not gzip
		WriteBufferSize:       bufSize,
		ReadBufferSize:        bufSize,
	}
	return &client{tr: tr, timeout: timeout}
}

func (c *client) close() { c.tr.CloseIdleConnections() }

// template builds a request to copy per use. hdr is shared by every copy
// and must not be changed afterwards.
func template(ctx context.Context, method, rawURL string, hdr http.Header) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, err
	}
	if hdr != nil {
		req.Header = hdr
	}
	return req, nil
}

// bodyReader is a request body over a shared payload: one allocation.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// send copies tmpl, attaches body and performs the request. The caller
// must close the response body (drain does).
func (c *client) send(tmpl *http.Request, body []byte) (*http.Response, error) {
	req := new(http.Request)
	*req = *tmpl
	if body != nil {
		br := &bodyReader{}
		br.Reset(body)
		req.Body = br
		req.ContentLength = int64(len(body))
	}
	return c.tr.RoundTrip(req)
}

// withPath returns a copy of tmpl with its URL path replaced.
func withPath(tmpl *http.Request, path string) *http.Request {
	u := new(url.URL)
	*u = *tmpl.URL
	u.Path, u.RawPath = path, ""
	req := new(http.Request)
	*req = *tmpl
	req.URL = u
	req.Host = u.Host
	return req
}

// drain reads and closes a response body, returning how many bytes it had.
func drain(resp *http.Response, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, resp.Body.Close()
		}
		if err != nil {
			resp.Body.Close()
			return n, err
		}
	}
}

// exchange performs a request and drains the response, counting it in t.
// It reports whether the status was 2xx.
func (c *client) exchange(t *tally, tmpl *http.Request, body, buf []byte) (ok bool, h http.Header) {
	resp, err := c.send(tmpl, body)
	if err != nil {
		t.fail(err)
		return false, nil
	}
	if _, err := drain(resp, buf); err != nil {
		t.fail(err)
		return false, nil
	}
	return t.status(resp.StatusCode), resp.Header
}

// simple performs one untimed setup request and fails on a non-2xx status.
func (c *client) simple(ctx context.Context, method, rawURL string, hdr http.Header, body []byte) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout+5*time.Second)
	defer cancel()
	tmpl, err := template(ctx, method, rawURL, hdr)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(tmpl, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	var msg [512]byte
	k, _ := io.ReadFull(resp.Body, msg[:])
	if _, err := drain(resp, make([]byte, 32<<10)); err != nil {
		return nil, fmt.Errorf("%s %s: reading the response: %w", method, rawURL, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.Header, fmt.Errorf("%s %s: status %d: %s", method, rawURL, resp.StatusCode, bytes.TrimSpace(msg[:k]))
	}
	return resp.Header, nil
}

func ctHeader(ct string) http.Header { return http.Header{"Content-Type": {ct}} }
