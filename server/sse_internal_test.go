package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
)

// oldDataEvent is the data event as writeDataEvent wrote it from one joined
// body before it wrote from the chunk's views: the format the piecewise
// writers must reproduce byte for byte.
func oldDataEvent(body []byte, binary bool) []byte {
	var out bytes.Buffer
	out.WriteString("event: data\n")
	if binary {
		enc := base64.StdEncoding.EncodeToString(body)
		for len(enc) > 0 {
			n := min(len(enc), 16<<10)
			out.WriteString("data:" + enc[:n] + "\n")
			enc = enc[n:]
		}
		out.WriteByte('\n')
		return out.Bytes()
	}
	for {
		i := bytes.IndexAny(body, "\r\n")
		line := body
		if i >= 0 {
			line = body[:i]
		}
		out.WriteString("data:")
		if len(line) > 0 && line[0] == ' ' {
			out.WriteByte(' ')
		}
		out.Write(line)
		out.WriteByte('\n')
		if i < 0 {
			break
		}
		if body[i] == '\r' && i+1 < len(body) && body[i+1] == '\n' {
			i++
		}
		body = body[i+1:]
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// splitPieces cuts b into pieces at random points (some empty).
func splitPieces(rng *rand.Rand, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 0
		switch rng.IntN(4) {
		case 0: // tiny pieces split \r\n pairs and 3-byte groups
			n = rng.IntN(4)
		case 1:
			n = rng.IntN(100)
		default:
			n = rng.IntN(40 << 10)
		}
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// sseTextBody is text heavy in line breaks of every kind and leading spaces.
func sseTextBody(rng *rand.Rand, n int) []byte {
	alphabet := []byte("ab \r\n\r\n  x\t")
	b := make([]byte, n)
	for i := range b {
		if rng.IntN(50) == 0 {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		} else {
			b[i] = 'a' + byte(rng.IntN(26))
		}
		if rng.IntN(10) == 0 {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
	}
	return b
}

func TestDataEventPiecewiseMatchesJoined(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 2, 3, 4, 5, 100, b64LineBytes - 1, b64LineBytes, b64LineBytes + 1, 2 * b64LineBytes, 3*b64LineBytes + 2, 100 << 10}
	for _, binary := range []bool{false, true} {
		for _, n := range sizes {
			for round := 0; round < 20; round++ {
				var body []byte
				if binary {
					body = make([]byte, n)
					for i := range body {
						body[i] = byte(rng.Uint32())
					}
				} else {
					body = sseTextBody(rng, n)
				}
				if round == 0 {
					body = bytes.Repeat([]byte{'\n'}, n)
				}
				if round == 1 {
					body = bytes.Repeat([]byte("\r\n"), n/2+1)
				}
				pieces := splitPieces(rng, body)
				var got bytes.Buffer
				bw := bufio.NewWriterSize(&got, 4<<10)
				bw.WriteString("event: data\n")
				if binary {
					writeBase64Lines(bw, pieces)
				} else {
					writeTextLines(bw, pieces)
				}
				bw.WriteByte('\n')
				bw.Flush()
				if want := oldDataEvent(body, binary); !bytes.Equal(got.Bytes(), want) {
					t.Fatalf("binary %v, %d bytes in %d pieces: event differs from the joined body's\ngot  %.200q\nwant %.200q",
						binary, len(body), len(pieces), got.Bytes(), want)
				}
			}
		}
	}
}

// TestDataEventAllocations: writing an event allocates nothing in
// proportion to its size (the base64 line buffer is pooled).
func TestDataEventAllocations(t *testing.T) {
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	pieces := [][]byte{body[:333333], body[333333:700001], body[700001:]}
	bw := bufio.NewWriterSize(discardWriter{}, 4<<10)
	for _, binary := range []bool{false, true} {
		allocs := testing.AllocsPerRun(20, func() {
			if binary {
				writeBase64Lines(bw, pieces)
			} else {
				writeTextLines(bw, pieces)
			}
		})
		if allocs > 1 {
			t.Errorf("binary %v: %.1f allocations per 1 MiB event", binary, allocs)
		}
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// TestStalledSSEReaderEndsAtMaxDuration: a reader that stops reading in the
// middle of an event does not keep its handler (and what it holds) past
// SSEMaxDuration: the write it is blocked in gets a deadline.
func TestStalledSSEReaderEndsAtMaxDuration(t *testing.T) {
	eng, err := engine.Open(t.TempDir(), &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(eng, Config{SSEMaxDuration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer func() {
		s.Shutdown()
		ts.Close()
		eng.Close()
	}()
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 31)
	}
	if _, _, err := eng.Create(context.Background(), "big", engine.CreateOptions{ContentType: "application/octet-stream", Data: data}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET /v1/stream/big?offset=-1&live=sse HTTP/1.1\r\nHost: x\r\n\r\n")
	start := time.Now()
	for s.readers.Load() == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the SSE read never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for s.readers.Load() != 0 {
		if time.Since(start) > 500*time.Millisecond+sseWriteGrace+3*time.Second {
			t.Fatalf("a stalled SSE reader still held its handler %v after it started (SSEMaxDuration 500ms)", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("stalled reader's handler ended %v after it started", time.Since(start).Round(time.Millisecond))
}
