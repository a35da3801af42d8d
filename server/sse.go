package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"strings"

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
	bw := bufio.NewWriterSize(w, 4<<10) // larger events go straight through
	cursor := clientCursor(r)           // parsed once, not per event

	s.readers.Add(1)
	defer s.readers.Add(-1)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.SSEMaxDuration)
	defer cancel()
	stop := context.AfterFunc(s.life, cancel)
	defer stop()

	first := true
	for {
		if c.Next > c.Start || first || c.Closed {
			if c.Next > c.Start {
				writeDataEvent(bw, c, binary)
			}
			s.writeControl(bw, cursor, c)
			first = false
		}
		c.Release()
		if err := bw.Flush(); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if c.Closed {
			return
		}
		next := c.Next
		if !c.UpToDate {
			if c, err = s.readLive(name, engine.At(next)); err != nil {
				return
			}
			continue
		}
		if err := s.eng.Wait(ctx, name, next); err != nil {
			return // timeout, client gone, shutdown, or the stream was deleted
		}
		if c, err = s.readLive(name, engine.At(next)); err != nil {
			return
		}
	}
}

// writeDataEvent writes one "data" event: the chunk's wire body, split into
// data: lines (text may hold newlines; base64 for binary streams).
func writeDataEvent(bw *bufio.Writer, c *engine.Chunk, binary bool) {
	bw.WriteString("event: data\n")
	if binary {
		raw := chunkBytes(c)
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 0 {
			n := min(len(enc), 16<<10)
			bw.WriteString("data:")
			bw.WriteString(enc[:n])
			bw.WriteByte('\n')
			enc = enc[n:]
		}
		bw.WriteByte('\n')
		return
	}
	// SSE ends a line at \n, \r or \r\n; each line becomes one data: field
	// and the client joins them with \n.
	body := chunkBytes(c)
	for {
		i := bytes.IndexAny(body, "\r\n")
		line := body
		if i >= 0 {
			line = body[:i]
		}
		writeDataField(bw, line)
		if i < 0 {
			break
		}
		if body[i] == '\r' && i+1 < len(body) && body[i+1] == '\n' {
			i++
		}
		body = body[i+1:]
	}
	bw.WriteByte('\n')
}

// writeDataField writes one "data:" line. Every SSE parser drops exactly
// one space after the colon, so a line that starts with a space (an LLM
// token, say) gets one more; others go bare, as the conformance suite
// expects ("data:line1", "data:{...}").
func writeDataField(bw *bufio.Writer, line []byte) {
	bw.WriteString("data:")
	if len(line) > 0 && line[0] == ' ' {
		bw.WriteByte(' ')
	}
	bw.Write(line)
	bw.WriteByte('\n')
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

// chunkBytes is the chunk's wire body in one slice, copied only when it
// spans buffers.
func chunkBytes(c *engine.Chunk) []byte {
	b := c.Buffers()
	if len(b) == 1 {
		return b[0]
	}
	return bytes.Join(b, nil)
}
