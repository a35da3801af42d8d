package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// wireConn is a bare HTTP/1.1 client connection for the long-poll
// subscribers. A long-poll fan-out makes one request per subscriber per
// delivery, and through net/http's Transport (a reader and a writer
// goroutine per connection, channels between them, a header map per
// response) the generator spent more CPU than the server under test; here
// a request is one write of prebuilt bytes and a response is parsed in
// place, keeping only the headers the subscriber uses.
type wireConn struct {
	c    net.Conn
	br   *bufio.Reader
	req  []byte // request being built
	host string
	stop func() bool // unregisters the close-on-cancel hook
}

// wireResp is what a subscriber needs of a response. body is reused by
// the next request.
type wireResp struct {
	status             int
	nextOffset, cursor string
	closed, keepAlive  bool
	body               []byte
}

// maxWireBody bounds a response body a subscriber will read.
const maxWireBody = 64 << 20

// dialWire connects to u's host (TLS for https, HTTP/1.1 by ALPN). The
// connection closes when ctx is done, which ends a request in flight.
func dialWire(ctx context.Context, u *url.URL, timeout time.Duration) (*wireConn, error) {
	host := u.Host
	addr := host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	d := &net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second}
	var c net.Conn
	var err error
	if u.Scheme == "https" {
		c, err = (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	w := &wireConn{c: c, br: bufio.NewReaderSize(c, 16<<10), host: host}
	w.stop = context.AfterFunc(ctx, func() { c.Close() })
	return w, nil
}

func (w *wireConn) close() {
	w.stop()
	w.c.Close()
}

// get sends GET target (path and query) and reads the response into r.
// sent is called once the request is written. Any error leaves the
// connection unusable.
func (w *wireConn) get(target string, timeout time.Duration, r *wireResp, sent func()) error {
	w.req = append(w.req[:0], "GET "...)
	w.req = append(w.req, target...)
	w.req = append(w.req, " HTTP/1.1\r\nHost: "...)
	w.req = append(w.req, w.host...)
	w.req = append(w.req, "\r\nUser-Agent: durastream-bench\r\n\r\n"...)
	if err := w.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := w.c.Write(w.req); err != nil {
		return err
	}
	if sent != nil {
		sent()
	}
	return w.read(r)
}

// read parses a response: status line, the headers r keeps, and a body
// sized by Content-Length, chunked, or (neither) read to the end.
func (w *wireConn) read(r *wireResp) error {
	*r = wireResp{body: r.body[:0], keepAlive: true}
	line, err := w.line()
	if err != nil {
		return err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return fmt.Errorf("malformed status line %q", line)
	}
	if r.status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return fmt.Errorf("malformed status line %q", line)
	}
	if line[7] == '0' {
		r.keepAlive = false
	}
	var chunked, sized bool
	var length int64
	for {
		line, err := w.line()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fmt.Errorf("malformed header line %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(v), 10, 64); err != nil || length < 0 {
				return fmt.Errorf("bad Content-Length %q", v)
			}
			sized = true
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				r.keepAlive = false
			}
		case bytes.EqualFold(k, []byte("Stream-Next-Offset")):
			r.nextOffset = string(v)
		case bytes.EqualFold(k, []byte("Stream-Cursor")):
			r.cursor = string(v)
		case bytes.EqualFold(k, []byte("Stream-Closed")):
			r.closed = bytes.EqualFold(v, []byte("true"))
		}
	}
	var body io.Reader
	switch {
	case r.status == 204 || r.status == 304 || r.status < 200:
		return nil
	case chunked:
		body = httputil.NewChunkedReader(w.br)
	case sized:
		body = io.LimitReader(w.br, length)
	default:
		r.keepAlive = false
		body = w.br
	}
	buf := bytes.NewBuffer(r.body)
	n, err := buf.ReadFrom(io.LimitReader(body, maxWireBody+1))
	r.body = buf.Bytes()
	switch {
	case err != nil:
		return err
	case n > maxWireBody:
		return fmt.Errorf("body over %d bytes: too large for a subscriber", maxWireBody)
	case sized && n != length:
		return io.ErrUnexpectedEOF
	}
	for chunked { // trailers, up to the empty line
		line, err := w.line()
		if err != nil || len(line) == 0 {
			return err
		}
	}
	return nil
}

// line reads a CRLF- (or LF-) terminated line without its terminator. It
// is valid until the next read.
func (w *wireConn) line() ([]byte, error) {
	line, err := w.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, errors.New("response line longer than 16 KiB")
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
