package server

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// net/http answers a few malformed HTTP/1 requests itself, before any
// handler runs. Its 400, 431 and 501 answers carry a short message; its
// 417, for an Expect header other than 100-continue, has an empty body.
// PrepareHTTPServer makes that one carry a message too:
//
//   - the listener's connections are wrapped (exchangeConn);
//   - hs.ConnState marks a connection when net/http has read a request's
//     headers (StateActive), and the handler clears the mark when it runs
//     (ServeHTTP finds the connection through hs.ConnContext);
//   - a write while the mark is set is net/http's own answer, since on an
//     HTTP/1 connection every response of a handler has been written out
//     before the next request's headers are read; if it is the 417, it is
//     replaced with one that says what was wrong.
//
// Over TLS (ServeTLS wraps the listener again, above this one) nothing is
// rewritten: HTTP/2 requests reach the handler, which answers a bad Expect
// itself; HTTP/1.1 over TLS keeps net/http's empty 417.

// PrepareHTTPServer sets hooks on hs, the http.Server that serves a
// Server, and returns ln wrapped for hs.Serve; see above. Hooks already set
// on hs still run.
func PrepareHTTPServer(hs *http.Server, ln net.Listener) net.Listener {
	prevState, prevCtx := hs.ConnState, hs.ConnContext
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		if ec, ok := c.(*exchangeConn); ok && st == http.StateActive {
			ec.ownAnswer.Store(true)
		}
		if prevState != nil {
			prevState(c, st)
		}
	}
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, c)
		}
		if ec, ok := c.(*exchangeConn); ok {
			ctx = context.WithValue(ctx, exchangeConnKey{}, ec)
		}
		return ctx
	}
	return exchangeListener{ln}
}

type exchangeListener struct{ net.Listener }

func (l exchangeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &exchangeConn{Conn: c}, nil
}

type exchangeConnKey struct{}

// exchangeConn is a connection whose net/http-made 417 is replaced.
type exchangeConn struct {
	net.Conn
	// ownAnswer: a request's headers were read and its handler has not
	// started, so what is written now is net/http's own answer.
	ownAnswer atomic.Bool
}

// handlerStarted clears the connection's mark: the writes that follow are
// the handler's response.
func handlerStarted(r *http.Request) {
	if ec, ok := r.Context().Value(exchangeConnKey{}).(*exchangeConn); ok {
		ec.ownAnswer.Store(false)
	}
}

func (c *exchangeConn) Write(p []byte) (int, error) {
	if c.ownAnswer.Load() && (bytes.HasPrefix(p, []byte("HTTP/1.1 417 ")) || bytes.HasPrefix(p, []byte("HTTP/1.0 417 "))) {
		if _, err := c.Conn.Write(expectationFailed(p[:len("HTTP/1.x")])); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// msgExpect is the message of every 417.
const msgExpect = "unsupported Expect header: only 100-continue is supported"

// expectationFailed is the 417 response net/http's is replaced with: the
// same status line and connection close, the headers every error carries
// and the message.
func expectationFailed(proto []byte) []byte {
	body := msgExpect + "\n"
	var b bytes.Buffer
	b.Write(proto)
	b.WriteString(" 417 Expectation Failed\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nCross-Origin-Resource-Policy: cross-origin\r\n" +
		"Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: " + corsExposeHeaders + "\r\n")
	b.WriteString("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.WriteString(body)
	return b.Bytes()
}

var valClose = []string{"close"}

// mayBeSmuggled reports whether the connection must be closed after r, as
// RFC 9112 requires for a request whose framing is in doubt (6.1, 6.3):
// one with both Transfer-Encoding and Content-Length, or an HTTP/1.0 one
// with Transfer-Encoding. A proxy in front may have framed such a request
// by the other header, and the bytes after what the server read as its
// body would then run as a request of their own (request smuggling).
//
// net/http cannot tell us which requests those are: it frames a chunked
// body by the chunks and deletes Content-Length from the header map, and
// it ignores and deletes Transfer-Encoding on HTTP/1.0 (any coding other
// than a lone "chunked" it refuses itself, with 501, and closes; so does
// it conflicting Content-Lengths, with 400). So every HTTP/1.1 request
// with a chunked body and every HTTP/1.0 request closes its connection.
// Clients that send Content-Length, which is nearly all of them, keep
// their connections; HTTP/2 does not frame by these headers.
func mayBeSmuggled(r *http.Request) bool {
	return r.ProtoMajor == 1 && (r.ProtoMinor == 0 || len(r.TransferEncoding) > 0)
}

// expectOK reports whether r's Expect header, if any, asks for nothing but
// 100-continue; other expectations are answered 417 (RFC 9110 10.1.1).
// net/http answers those itself on HTTP/1 (see PrepareHTTPServer); this
// covers HTTP/2 and what else reaches the handler.
func expectOK(r *http.Request) bool {
	for _, v := range r.Header["Expect"] {
		for m := range strings.SplitSeq(v, ",") {
			if m = strings.TrimSpace(m); m != "" && !strings.EqualFold(m, "100-continue") {
				return false
			}
		}
	}
	return true
}
