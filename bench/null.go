package bench

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/durastream/durastream/server"
)

// NullHandler answers the Durable Streams requests the scenarios make
// without storing anything durable: the HTTP ceiling of this machine for
// the same net/http stack. PUT is 201, POST drains the body and is 204, both
// with a Stream-Next-Offset; a stream is a byte counter per path. The last
// few thousand small appends (up to 1 KiB) of a path are kept in a ring so
// that live readers get real messages (the fan-out scenarios measure
// delivery); every other byte reads as zeros from a static buffer, up to
// MaxReadBytes per response. GET without live answers at once (empty and up
// to date at the tail); long-poll and SSE wait for the next append like a
// real server, long-poll for at most LongPollTimeout.
type NullHandler struct {
	LongPollTimeout time.Duration // default 1 s
	SSEMaxDuration  time.Duration // default 60 s
	MaxReadBytes    int           // default 1 MiB

	streams sync.Map // path -> *nullStream
}

type nullStream struct {
	mu   sync.Mutex
	tail int64
	ring []nullEntry   // grows to nullRing, then wraps
	n    int64         // appends so far; ring holds the last min(n, nullRing)
	wake chan struct{} // closed and replaced on every append
}

const (
	nullRing     = 4096
	nullKeep     = 1 << 10
	nullMaxRead  = 1 << 20
	offsetFormat = "%016d_%016d"
)

type nullEntry struct {
	start int64
	size  int64
	body  []byte // nil: zeros
}

var zeros = make([]byte, nullMaxRead)

// NewNullHandler returns a NullHandler with the defaults.
func NewNullHandler() *NullHandler { return &NullHandler{} }

func formatOffset(n int64) string { return fmt.Sprintf(offsetFormat, 0, n) }

func (h *NullHandler) maxRead() int {
	if h.MaxReadBytes > 0 && h.MaxReadBytes <= nullMaxRead {
		return h.MaxReadBytes
	}
	return nullMaxRead
}

func (h *NullHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	server.SetCommonHeaders(w.Header()) // the same response headers as durastream
	st := h.stream(r.URL.Path, r.Method == http.MethodPut || r.Method == http.MethodPost)
	switch r.Method {
	case http.MethodPut:
		io.Copy(io.Discard, r.Body)
		tail := st.tailNow()
		w.Header().Set("Content-Type", orDefault(r.Header.Get("Content-Type"), "application/octet-stream"))
		w.Header().Set("Stream-Next-Offset", formatOffset(tail))
		w.WriteHeader(http.StatusCreated)
	case http.MethodPost:
		st.append(w, r)
	case http.MethodDelete:
		h.streams.Delete(r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodHead:
		tail := st.tailNow()
		w.Header().Set("Stream-Next-Offset", formatOffset(tail))
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		h.get(w, r, st)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// stream returns the path's state; a read of a path never written reads
// an empty stream that is not kept.
func (h *NullHandler) stream(path string, keep bool) *nullStream {
	if v, ok := h.streams.Load(path); ok {
		return v.(*nullStream)
	}
	if !keep {
		return &nullStream{}
	}
	v, _ := h.streams.LoadOrStore(path, &nullStream{})
	return v.(*nullStream)
}

func (st *nullStream) tailNow() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.tail
}

func (h *nullStream) append(w http.ResponseWriter, r *http.Request) {
	var small [nullKeep + 1]byte
	n, err := io.ReadFull(r.Body, small[:])
	size := int64(n)
	var keep []byte
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		keep = append([]byte(nil), small[:n]...)
	} else if err == nil {
		m, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		size += m
	} else {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	if h.wake == nil {
		h.wake = make(chan struct{})
	}
	e := nullEntry{start: h.tail, size: size, body: keep}
	if len(h.ring) < nullRing {
		h.ring = append(h.ring, e)
	} else {
		h.ring[h.n%nullRing] = e
	}
	h.n++
	h.tail += size
	tail := h.tail
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
	w.Header().Set("Stream-Next-Offset", formatOffset(tail))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// parseNullOffset accepts -1, now and the offsets this handler prints.
func (h *nullStream) parseOffset(s string) (int64, bool) {
	switch s {
	case "", "-1":
		return 0, true
	case "now":
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.tail, true
	}
	_, b, ok := strings.Cut(s, "_")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(b, 10, 64)
	return n, err == nil && n >= 0
}

// read returns the data from off (at most maxRead bytes), the next offset,
// the tail, and a channel closed by the next append.
func (h *nullStream) read(off int64, maxRead int) (data []byte, next, tail int64, wake chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wake == nil {
		h.wake = make(chan struct{})
	}
	tail, wake = h.tail, h.wake
	if off >= tail {
		return nil, off, tail, wake
	}
	limit := min(tail, off+int64(maxRead))
	oldest := h.n - min(h.n, nullRing)
	firstKept := tail
	if h.n > oldest {
		firstKept = h.ring[oldest%nullRing].start
	}
	if off < firstKept {
		end := min(limit, firstKept)
		return zeros[:end-off], end, tail, wake
	}
	// Find the entry holding off, from the newest back.
	i := h.n - 1
	for i > oldest && h.ring[i%nullRing].start > off {
		i--
	}
	// Only zeros in the range (large appends): no copy.
	onlyZeros := true
	for j := i; j < h.n && h.ring[j%nullRing].start < limit; j++ {
		if h.ring[j%nullRing].body != nil {
			onlyZeros = false
			break
		}
	}
	if onlyZeros {
		return zeros[:limit-off], limit, tail, wake
	}
	pos := off
	for ; i < h.n && pos < limit; i++ {
		e := h.ring[i%nullRing]
		from := pos - e.start
		to := min(e.size, limit-e.start)
		if e.body != nil {
			data = append(data, e.body[from:to]...)
		} else {
			data = append(data, zeros[:to-from]...)
		}
		pos = e.start + to
	}
	return data, pos, tail, wake
}

func (h *NullHandler) get(w http.ResponseWriter, r *http.Request, st *nullStream) {
	q := r.URL.Query()
	off, ok := st.parseOffset(q.Get("offset"))
	if !ok {
		http.Error(w, "malformed offset", http.StatusBadRequest)
		return
	}
	switch q.Get("live") {
	case "sse":
		h.sse(w, r, st, off)
		return
	case "long-poll":
		timeout := h.LongPollTimeout
		if timeout <= 0 {
			timeout = time.Second
		}
		data, next, tail, wake := st.read(off, h.maxRead())
		if len(data) == 0 {
			t := time.NewTimer(timeout)
			select {
			case <-wake:
				data, next, tail, _ = st.read(off, h.maxRead())
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
		hd := w.Header()
		hd.Set("Stream-Next-Offset", formatOffset(next))
		hd.Set("Stream-Cursor", "0")
		if next >= tail {
			hd.Set("Stream-Up-To-Date", "true")
		}
		if len(data) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		hd.Set("Content-Type", "application/octet-stream")
		w.Write(data)
	default:
		data, next, tail, _ := st.read(off, h.maxRead())
		hd := w.Header()
		hd.Set("Content-Type", "application/octet-stream")
		hd.Set("Stream-Next-Offset", formatOffset(next))
		if next >= tail {
			hd.Set("Stream-Up-To-Date", "true")
		}
		hd.Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	}
}

func (h *NullHandler) sse(w http.ResponseWriter, r *http.Request, st *nullStream, off int64) {
	maxDur := h.SSEMaxDuration
	if maxDur <= 0 {
		maxDur = 60 * time.Second
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	bw := bufio.NewWriterSize(w, 16<<10)
	deadline := time.NewTimer(maxDur)
	defer deadline.Stop()
	first := true
	for {
		data, next, tail, wake := st.read(off, h.maxRead())
		if len(data) > 0 {
			bw.WriteString("event: data\n")
			for _, line := range strings.Split(string(data), "\n") {
				bw.WriteString("data:")
				bw.WriteString(line)
				bw.WriteByte('\n')
			}
			bw.WriteByte('\n')
		}
		if len(data) > 0 || first {
			fmt.Fprintf(bw, "event: control\ndata:{\"streamNextOffset\":%q,\"streamCursor\":\"0\"", formatOffset(next))
			if next >= tail {
				bw.WriteString(",\"upToDate\":true")
			}
			bw.WriteString("}\n\n")
			first = false
			if bw.Flush() != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		off = next
		if next < tail {
			continue
		}
		select {
		case <-wake:
		case <-deadline.C:
			return
		case <-r.Context().Done():
			return
		}
	}
}
