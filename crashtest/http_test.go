package crashtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

const streamPrefix = "/v1/stream/"

// reqTimeout bounds every request; a sync append takes milliseconds.
const reqTimeout = 10 * time.Second

func newClient() *http.Client {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: reqTimeout,
	}
	return &http.Client{Transport: tr, Timeout: reqTimeout}
}

// result is a response (status, headers, body) or a transport error.
type result struct {
	status  int
	h       http.Header
	body    []byte
	err     error
	notSent bool // the connection was refused: the server never saw the request
}

func (r result) String() string {
	if r.status == 0 {
		return fmt.Sprintf("error %v", r.err)
	}
	s := fmt.Sprintf("%d", r.status)
	for _, k := range []string{"Stream-Next-Offset", "Stream-Closed", "Producer-Epoch", "Producer-Seq", "Producer-Expected-Seq", "Producer-Received-Seq"} {
		if v := r.h.Get(k); v != "" {
			s += fmt.Sprintf(" %s: %s", k, v)
		}
	}
	if len(r.body) > 0 && r.status >= 300 {
		s += fmt.Sprintf(" body %q", bytes.TrimSpace(r.body[:min(len(r.body), 200)]))
	}
	if r.err != nil {
		s += fmt.Sprintf(" (then %v)", r.err)
	}
	return s
}

func (r result) closedHdr() bool { return r.h.Get("Stream-Closed") == "true" }

// next parses Stream-Next-Offset.
func (r result) next() (uint64, error) {
	v := r.h.Get("Stream-Next-Offset")
	if v == "" {
		return 0, errors.New("no Stream-Next-Offset")
	}
	return parseOffset(v)
}

func (r result) uintHdr(name string) (uint64, bool) {
	v, err := strconv.ParseUint(r.h.Get(name), 10, 64)
	return v, err == nil
}

// do sends one request. hdr holds name, value pairs. A status received
// before an error reading the body is still reported.
func do(ctx context.Context, c *http.Client, method, url string, body []byte, hdr ...string) result {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return result{err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err, notSent: errors.Is(err, syscall.ECONNREFUSED)}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return result{status: resp.StatusCode, h: resp.Header, body: b, err: err}
}

func streamURL(base, name string) string { return base + streamPrefix + name }
