package bench

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// wireConn parses what servers send: chunked bodies (with extensions and
// trailers), Content-Length, bodyless statuses, bodies ended by close, and
// header names in any case; it refuses malformed framing.
func TestWireConn(t *testing.T) {
	responses := []string{
		"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nSTREAM-NEXT-OFFSET: 0000_0010\r\nStream-Cursor: 7\r\n\r\n" +
			"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nStream-Closed: true\r\n\r\nabc",
		"HTTP/1.1 204 No Content\r\nStream-Next-Offset: 0000_0011\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	targets := make(chan string, len(responses)+1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for _, r := range responses {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			targets <- strings.Fields(line)[1]
			for line != "\r\n" { // the rest of the request
				if line, err = br.ReadString('\n'); err != nil {
					return
				}
			}
			c.Write([]byte(r))
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := dialWire(ctx, &url.URL{Scheme: "http", Host: ln.Addr().String()}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	var r wireResp
	sent := 0
	want := []wireResp{
		{status: 200, body: []byte("hello world"), nextOffset: "0000_0010", cursor: "7", keepAlive: true},
		{status: 200, body: []byte("abc"), closed: true, keepAlive: true},
		{status: 204, nextOffset: "0000_0011", keepAlive: true},
		{status: 200, body: []byte("until close")},
	}
	for i, wr := range want {
		target := "/s?offset=" + string(rune('a'+i))
		if err := w.get(target, 5*time.Second, &r, func() { sent++ }); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if got := <-targets; got != target {
			t.Fatalf("request target %q, want %q", got, target)
		}
		if r.status != wr.status || string(r.body) != string(wr.body) || r.nextOffset != wr.nextOffset ||
			r.cursor != wr.cursor || r.closed != wr.closed || r.keepAlive != wr.keepAlive {
			t.Errorf("response %d: %+v, want %+v", i, r, wr)
		}
	}
	if sent != len(want) {
		t.Errorf("sent called %d times", sent)
	}

	for _, bad := range []string{
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"garbage\r\n\r\n",
	} {
		a, b := net.Pipe()
		w := &wireConn{c: a, br: bufio.NewReader(a), stop: func() bool { return true }}
		go func() { b.Write([]byte(bad)); b.Close() }()
		if err := w.read(&r); err == nil {
			t.Errorf("%q: parsed as %+v", bad, r)
		}
		a.Close()
	}
}
