package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A protocol-level SSE reader (plain net/http), used where client-go v0.1.0
// cannot show what the protocol requires: it ignores the
// Stream-Sse-Data-Encoding header and the streamClosed control field.

// sseEvent is one dispatched SSE event, parsed per the WHATWG rules: lines
// end at \r\n, \r or \n; one space after "data:" is dropped; data lines are
// joined with \n.
type sseEvent struct {
	Type string
	Data string
}

// sseControl is the JSON body of an "event: control".
type sseControl struct {
	StreamNextOffset string `json:"streamNextOffset"`
	StreamCursor     string `json:"streamCursor"`
	UpToDate         bool   `json:"upToDate"`
	StreamClosed     bool   `json:"streamClosed"`
}

func (e sseEvent) control(t *testing.T) sseControl {
	t.Helper()
	var c sseControl
	if err := json.Unmarshal([]byte(e.Data), &c); err != nil {
		t.Fatalf("control event %q: %v", e.Data, err)
	}
	if c.StreamNextOffset == "" {
		t.Fatalf("control event %q has no streamNextOffset", e.Data)
	}
	return c
}

// openSSE sends GET path?offset=...&live=sse and checks the status and
// Content-Type. The caller closes the body (or cancels ctx).
func openSSE(t *testing.T, ctx context.Context, path, offset string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+path+"?offset="+offset+"&live=sse", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatalf("SSE GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("SSE GET %s: status %d: %s", path, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("SSE GET %s: Content-Type %q, want text/event-stream", path, ct)
	}
	return resp
}

// sseReader parses events from an SSE body.
type sseReader struct {
	sc *bufio.Scanner
}

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	sc.Split(splitSSELines)
	return &sseReader{sc: sc}
}

// Next returns the next dispatched event, or io.EOF when the server ended
// the response.
func (r *sseReader) Next() (sseEvent, error) {
	var typ string
	var data strings.Builder
	hasData := false
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if !hasData {
				typ = ""
				continue
			}
			d := data.String()
			d = strings.TrimSuffix(d, "\n")
			if typ == "" {
				typ = "message"
			}
			return sseEvent{Type: typ, Data: d}, nil
		}
		if strings.HasPrefix(line, ":") {
			continue // comment
		}
		field, value, found := strings.Cut(line, ":")
		if found && strings.HasPrefix(value, " ") {
			value = value[1:]
		}
		switch field {
		case "event":
			typ = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		}
	}
	if err := r.sc.Err(); err != nil {
		return sseEvent{}, err
	}
	// Per the SSE rules an incomplete event at EOF is discarded.
	return sseEvent{}, io.EOF
}

// splitSSELines splits at \r\n, \r or \n.
func splitSSELines(data []byte, atEOF bool) (int, []byte, error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\r' {
			if i+1 == len(data) && !atEOF {
				return 0, nil, nil // need one more byte to see a possible \n
			}
			if i+1 < len(data) && data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
		}
		return i + 1, data[:i], nil
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func (e sseEvent) String() string {
	d := e.Data
	if len(d) > 120 {
		d = d[:120] + "..."
	}
	return fmt.Sprintf("event:%s data:%q", e.Type, d)
}
