package main

// Hostile input against the built binary, over raw TCP: what the server
// package's tests check in process, checked here where net/http, the
// listener and the flags are the ones operators run.

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exchange writes raw to a new connection and reads responses until the
// server closes the connection (closed) or sends nothing for quiet.
func exchange(t *testing.T, addr, raw string, quiet time.Duration) (resps []*http.Response, bodies []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return resps, bodies, !(errors.As(err, &ne) && ne.Timeout())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resps, bodies = append(resps, resp), append(bodies, string(b))
	}
}

func TestHostileInputAgainstBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	srv := startServer(t, bin, "serve", "--addr", "127.0.0.1:0", "--durability", "memory",
		"--log-format", "json", "--body-read-timeout", "1s")
	addr := strings.TrimPrefix(srv.base, "http://")
	stream := func(p string) string { return srv.base + "/v1/stream/" + p }
	tail := func(p string) string {
		resp, _ := httpDo(t, "HEAD", stream(p), nil)
		return resp.Header.Get("Stream-Next-Offset")
	}
	for _, p := range []string{"front", "victim"} {
		if resp, b := httpDo(t, "PUT", stream(p), nil, "Content-Type", "text/plain"); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s: %d %q", p, resp.StatusCode, b)
		}
	}

	t.Run("request smuggling", func(t *testing.T) {
		const smuggled = "POST /v1/stream/victim HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nEVIL"
		const chunked = "5\r\nhello\r\n0\r\n\r\n"
		for _, raw := range []string{
			"POST /v1/stream/front HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: " +
				strconv.Itoa(len(chunked+smuggled)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + smuggled,
			"POST /v1/stream/front HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: text/plain\r\n" +
				"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello" + smuggled,
		} {
			before := tail("victim")
			resps, _, closed := exchange(t, addr, raw, 3*time.Second)
			if len(resps) != 1 || !closed {
				t.Errorf("%d responses, closed %v; want 1 and closed", len(resps), closed)
			}
			if got := tail("victim"); got != before {
				t.Fatalf("the smuggled append ran: %s -> %s", before, got)
			}
		}
	})

	t.Run("Expect", func(t *testing.T) {
		resps, bodies, _ := exchange(t, addr, "POST /v1/stream/front HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\n"+
			"Content-Type: text/plain\r\nContent-Length: 1\r\n\r\nx", 3*time.Second)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusExpectationFailed || strings.TrimSpace(bodies[0]) == "" ||
			!strings.HasPrefix(resps[0].Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%d responses: %v %q", len(resps), resps, bodies)
		}
	})

	t.Run("far-future expiry", func(t *testing.T) {
		resp, b := httpDo(t, "PUT", stream("far"), nil, "Content-Type", "text/plain", "Stream-Expires-At", "9999-12-31T00:00:00Z")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "2262") {
			t.Fatalf("PUT: %d %q", resp.StatusCode, b)
		}
		resp, b = httpDo(t, "PUT", stream("ttl"), nil, "Content-Type", "text/plain", "Stream-TTL", "10000000000")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("PUT with a TTL of 10^10 s: %d %q", resp.StatusCode, b)
		}
	})

	t.Run("slow body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, "POST /v1/stream/front HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 50\r\n\r\n")
		go func() {
			for range 40 {
				time.Sleep(200 * time.Millisecond)
				if _, err := io.WriteString(c, "x"); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(6 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to a trickling body after %v: %v", time.Since(start), err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("status %d, want 408", resp.StatusCode)
		}
		deadline := time.Now().Add(2 * time.Second)
		for !srv.log.has("request body too slow: 408") {
			if time.Now().After(deadline) {
				t.Fatalf("no log line:\n%s", srv.log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("JSON read inside a message", func(t *testing.T) {
		if resp, b := httpDo(t, "PUT", stream("j"), []byte(`[{"a":"b,c"},{"d":1}]`), "Content-Type", "application/json"); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %d %q", resp.StatusCode, b)
		}
		for off, status := range map[int]int{0: 200, 3: 400, 11: 400, 12: 200, 13: 400, 20: 200} {
			resp, b := httpDo(t, "GET", stream("j")+"?offset=0000000000000000_"+strings.Repeat("0", 14)+strconv.Itoa(100 + off)[1:], nil)
			if resp.StatusCode != status {
				t.Errorf("offset %d: %d %q, want %d", off, resp.StatusCode, b, status)
			}
		}
	})
}
