package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/durastream/durastream/engine"
)

// serveSSE streams data and control events (protocol 5.8) until the stream
// closes, SSEMaxDuration passes, the client leaves or the server shuts down.
// Every data event is followed by a control event; binary streams are base64.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, name string, from engine.ReadFrom) {
	c, err := s.readLive(name, from)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	binary := !c.JSON && !strings.HasPrefix(strings.ToLower(engine.MediaType(c.ContentType)), "text/")
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if binary {
		h.Set(hSSEEncoding, "base64")
	}
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	cursor := clientCursor(r) // parsed once, not per event

	s.readers.Add(1)
	defer s.readers.Add(-1)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.SSEMaxDuration)
	defer cancel()
	stop := context.AfterFunc(s.life, cancel)
	defer stop()
	// A write to a reader that stopped reading blocks until its socket
	// drains, which may be never: when ctx ends, a write deadline ends it
	// (sseWriteGrace later, so that a reader that does read gets the event
	// in progress). A handler that returns by itself lifts the deadline
	// again, so that its response ends cleanly.
	rc := http.NewResponseController(w)
	deadlineSet := make(chan struct{})
	stopDeadline := context.AfterFunc(ctx, func() {
		rc.SetWriteDeadline(time.Now().Add(sseWriteGrace))
		close(deadlineSet)
	})
	defer func() {
		if !stopDeadline() {
			<-deadlineSet
			rc.SetWriteDeadline(time.Time{})
		}
	}()

	first := true
	for {
		if c.Next > c.Start || first || c.Closed {
			err = s.writeEvents(w, cursor, c, binary)
			first = false
		}
		c.Release()
		if err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if c.Closed || ctx.Err() != nil {
			return
		}
		next, id := c.Next, c.StreamID
		if !c.UpToDate {
			if c, err = s.readLiveNext(name, next, id); err != nil {
				return
			}
			continue
		}
		if err := s.eng.Wait(ctx, name, next); err != nil {
			return // timeout, client gone, shutdown, or the stream was deleted
		}
		if c, err = s.readLiveNext(name, next, id); err != nil {
			return
		}
	}
}

// sseWriteGrace is how long a write in progress may still take once an SSE
// connection is to end (SSEMaxDuration, shutdown).
const sseWriteGrace = 2 * time.Second

// sseWriters buffer the small writes of an event. Taken only while an event
// is written, so a reader waiting for data holds none.
var sseWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// writeEvents writes c's data event (if it has data) and the control
// event after it, and flushes them to w.
func (s *Server) writeEvents(w http.ResponseWriter, cursor int64, c *engine.Chunk, binary bool) error {
	bw := sseWriters.Get().(*bufio.Writer)
	bw.Reset(w) // larger writes go straight through
	if c.Next > c.Start {
		writeDataEvent(bw, c, binary)
	}
	s.writeControl(bw, cursor, c)
	err := bw.Flush()
	bw.Reset(nil)
	sseWriters.Put(bw)
	return err
}

// writeDataEvent writes one "data" event: the chunk's wire body, split into
// data: lines (text may hold newlines; base64 for binary streams). It
// writes straight from the chunk's views, in pieces, as the connection
// takes them: nothing is joined, and base64 is encoded one line at a time
// into a pooled buffer, so a reader that stops reading holds at most that
// buffer and bw besides the views (which are mapped stream data).
func writeDataEvent(bw *bufio.Writer, c *engine.Chunk, binary bool) {
	bw.WriteString("event: data\n")
	if binary {
		writeBase64Lines(bw, c.Data())
	} else {
		writeTextLines(bw, c.Buffers())
	}
	bw.WriteByte('\n')
}

// writeTextLines writes the pieces, read as one text, as data: lines. SSE
// ends a line at \n, \r or \r\n; each line becomes one data: field and
// the client joins them with \n. Every SSE parser drops exactly one space
// after the colon, so a line that starts with a space (an LLM token, say)
// gets one more; others go bare, as the conformance suite expects
// ("data:line1", "data:{...}"). A line may span pieces (and a \r\n may
// be split between two): it is written piece by piece.
func writeTextLines(bw *bufio.Writer, pieces [][]byte) {
	atStart := true  // the next byte begins a line
	afterCR := false // the last byte was a \r: a \n now ends no line
	for _, p := range pieces {
		for len(p) > 0 {
			if afterCR {
				afterCR = false
				if p[0] == '\n' {
					p = p[1:]
					continue
				}
			}
			if atStart {
				bw.WriteString("data:")
				if p[0] == ' ' {
					bw.WriteByte(' ')
				}
				atStart = false
			}
			i := bytes.IndexAny(p, "\r\n")
			if i < 0 {
				bw.Write(p)
				break
			}
			bw.Write(p[:i])
			bw.WriteByte('\n')
			atStart, afterCR = true, p[i] == '\r'
			p = p[i+1:]
		}
	}
	if atStart { // empty, or ends with a line break: an empty last line
		bw.WriteString("data:")
	}
	bw.WriteByte('\n')
}

// Base64 data lines: 16 KiB of characters, the encoding of 12 KiB of data
// (a multiple of 3 bytes, so no line but the last has padding and the
// lines joined are the encoding of the whole event).
const (
	b64LineChars = 16 << 10
	b64LineBytes = b64LineChars / 4 * 3
)

// b64Lines holds one data: line being encoded.
var b64Lines = sync.Pool{New: func() any {
	b := make([]byte, 0, len("data:")+b64LineChars+1)
	return &b
}}

// writeBase64Lines writes the pieces, as one byte string, base64-encoded
// in data: lines of b64LineChars characters (the last may be shorter).
// Each line is encoded into a pooled buffer from the pieces, carrying the
// one or two bytes of a 3-byte group that a piece boundary splits.
func writeBase64Lines(bw *bufio.Writer, pieces [][]byte) {
	bp := b64Lines.Get().(*[]byte)
	e := b64Writer{bw: bw, line: (*bp)[:0]}
	for _, p := range pieces {
		if e.nc > 0 {
			k := copy(e.carry[e.nc:], p)
			e.nc += k
			p = p[k:]
			if e.nc < 3 {
				continue
			}
			e.encode(e.carry[:3])
			e.nc = 0
		}
		n := len(p) / 3 * 3
		e.encode(p[:n])
		e.nc = copy(e.carry[:], p[n:])
	}
	e.encode(e.carry[:e.nc]) // the last group, padded
	if len(e.line) > 0 {
		e.endLine()
	}
	*bp = e.line[:0]
	b64Lines.Put(bp)
}

type b64Writer struct {
	bw    *bufio.Writer
	line  []byte // "data:" and the characters so far
	in    int    // bytes encoded into line
	carry [3]byte
	nc    int
}

// encode adds p to the lines; len(p) is a multiple of 3 except for the
// last call of an event.
func (e *b64Writer) encode(p []byte) {
	for len(p) > 0 {
		if len(e.line) == 0 {
			e.line = append(e.line, "data:"...)
		}
		n := min(len(p), b64LineBytes-e.in)
		e.line = base64.StdEncoding.AppendEncode(e.line, p[:n])
		e.in += n
		p = p[n:]
		if e.in == b64LineBytes {
			e.endLine()
		}
	}
}

func (e *b64Writer) endLine() {
	e.line = append(e.line, '\n')
	e.bw.Write(e.line)
	e.line, e.in = e.line[:0], 0
}

// writeControl writes the "control" event that follows data (or opens the
// stream): next offset, cursor while open, up-to-date, closed.
func (s *Server) writeControl(bw *bufio.Writer, cursor int64, c *engine.Chunk) {
	bw.WriteString("event: control\ndata:{\"streamNextOffset\":\"")
	bw.WriteString(c.Next.String())
	bw.WriteByte('"')
	if !c.Closed {
		bw.WriteString(",\"streamCursor\":\"")
		bw.WriteString(s.nextCursor(cursor))
		bw.WriteByte('"')
	}
	if c.UpToDate {
		bw.WriteString(",\"upToDate\":true")
	}
	if c.Closed {
		bw.WriteString(",\"streamClosed\":true")
	}
	bw.WriteString("}\n\n")
}
