package server

// Request bodies: read whole into memory (the engine takes one slice),
// decoded from gzip or zstd, within MaxAppendBytes, and charged to the
// server-wide budget of bytes held by requests in flight
// (Config.MaxInflightBodyBytes, limits.go).
//
// What a request holds, and so is charged for, until the engine is done
// with its body: the body's buffers (their capacity), and for a compressed
// body the decoder's window. A body of known length (Content-Length, no
// Content-Encoding) is charged once, before its buffer is allocated. Any
// other body is read into blocks that double in size, each charged before
// it is allocated, never past MaxAppendBytes (one byte more is a 413 at
// once, with nothing more read or allocated), and joined at the end. A
// charge that does not fit is a 503 with Retry-After at once: a request
// never waits for budget while holding some (requests holding part of it
// and waiting for more could hold each other up).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// reqBody is a request body and the budget it holds. Release it (with
// Server.releaseBody) once nothing refers to the bytes any more (the engine
// keeps no reference to its input).
type reqBody struct {
	b       []byte
	charged int64
}

// errBodyBudget is the 503 for a request whose body does not fit the
// server's in-flight body budget.
type errBodyBudget struct{ limit int64 }

func (e *errBodyBudget) Error() string {
	return fmt.Sprintf("server busy: request bodies in flight are at their %d-byte limit; retry shortly", e.limit)
}

// Unwrap gives writeError the status: 503 (with Retry-After).
func (e *errBodyBudget) Unwrap() error {
	return &httpError{http.StatusServiceUnavailable, e.Error()}
}

// Decoder memory charged per compressed body: a flate window and tables;
// zstd's history ring (window + two blocks of space) and block buffers.
const (
	gzipDecoderBytes = 64 << 10
	zstdBlockBytes   = 128 << 10
	// maxZstdWindow is the largest window a zstd request body may use:
	// RFC 9659 has HTTP encoders stay within 8 MB so decoders need no more.
	maxZstdWindow = 8 << 20
	// firstGrowBytes is the first block of a body of unknown length.
	firstGrowBytes = 4 << 10
)

func zstdDecoderBytes(window uint64) int64 {
	return int64(window) + 3*int64(min(window, zstdBlockBytes)) + 64<<10
}

// MinInflightBodyBytes is the smallest in-flight body budget
// (Config.MaxInflightBodyBytes) that still admits one body of maxAppend
// bytes, compressed: the blocks it was read into and the buffer they are
// joined into (both held while the bytes are copied), and a zstd window.
func MinInflightBodyBytes(maxAppend int64) int64 {
	return 2*bodyCap(maxAppend) + zstdDecoderBytes(zstdMaxWindow(maxAppend))
}

// zstdMaxWindow is the largest zstd window accepted with an append limit:
// 8 MiB, or less when bodies may not be that large (a window beyond the
// whole body is never needed).
func zstdMaxWindow(limit int64) uint64 {
	return uint64(max(min(maxZstdWindow, limit+1<<20), zstd.MinWindowSize))
}

// tooLarge is the 413 for a body over the append limit.
func tooLarge(limit int64) error {
	return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", limit)}
}

// readBody reads a request body within MaxAppendBytes, decoding
// Content-Encoding gzip or zstd, and charges what it holds to the
// in-flight budget; on error nothing stays charged.
func (s *Server) readBody(r *http.Request) (reqBody, error) {
	limit := s.cfg.MaxAppendBytes
	if r.ContentLength == 0 {
		return reqBody{}, nil // nothing to decode, whatever Content-Encoding says
	}
	if r.ContentLength > limit {
		return reqBody{}, tooLarge(limit)
	}
	var rb reqBody
	var src io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		if r.ContentLength > 0 {
			return s.readKnown(r.Body, r.ContentLength)
		}
	case "gzip", "x-gzip":
		// The decoder is charged while it decodes: until readBody returns.
		if !s.bodies.tryAcquire(gzipDecoderBytes) {
			return reqBody{}, &errBodyBudget{s.bodies.max}
		}
		defer s.bodies.release(gzipDecoderBytes)
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return reqBody{}, badRequest("invalid gzip body")
		}
		defer zr.Close()
		src = zr
	case "zstd":
		zr, charged, err := s.zstdReader(r.Body, limit)
		if err != nil {
			return reqBody{}, err
		}
		defer s.bodies.release(charged)
		defer zr.Close()
		src = zr
	default:
		return reqBody{}, &httpError{http.StatusUnsupportedMediaType, "unsupported Content-Encoding " + quoteInput(enc)}
	}
	if err := s.readGrowing(src, limit, &rb); err != nil {
		s.releaseBody(rb)
		var mbe *http.MaxBytesError
		var he *httpError
		var be *errBodyBudget
		switch {
		case errors.As(err, &he), errors.As(err, &be):
			return reqBody{}, err
		case errors.As(err, &mbe):
			return reqBody{}, &httpError{http.StatusRequestEntityTooLarge, "request body too large"}
		case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
			return reqBody{}, &httpError{http.StatusRequestEntityTooLarge,
				"a zstd frame needs a larger window than allowed (no more than the body's first frame's, at most 8 MiB)"}
		case r.Header.Get("Content-Encoding") != "":
			return reqBody{}, badRequest("invalid compressed body: " + errText(err))
		}
		return reqBody{}, badRequest("reading request body: " + errText(err))
	}
	return rb, nil
}

// readKnown reads a plain body of known length n into a buffer of that
// size (pooled when large), charged before it is allocated.
func (s *Server) readKnown(body io.Reader, n int64) (reqBody, error) {
	c := bodyCap(n)
	if !s.bodies.tryAcquire(c) {
		return reqBody{}, &errBodyBudget{s.bodies.max}
	}
	rb := reqBody{b: getBody(int(n)), charged: c}
	if _, err := io.ReadFull(body, rb.b); err != nil {
		s.releaseBody(rb)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return reqBody{}, &httpError{http.StatusRequestEntityTooLarge, "request body too large"}
		}
		return reqBody{}, badRequest("reading request body: " + errText(err))
	}
	return rb, nil
}

// readGrowing reads src to its end, at most limit bytes, into rb.b. It
// reads into blocks that double in size from 4 KiB, each charged to the
// budget before it is allocated: nothing is copied while the body grows,
// and a body refused at the limit (a 413 as soon as the byte past it is
// read) has cost exactly the blocks that held it. A body that fits its
// first block is that block; a larger one is joined into one buffer at the
// end (charged too, then the blocks are released).
func (s *Server) readGrowing(src io.Reader, limit int64, rb *reqBody) error {
	var (
		blocks [][]byte // full blocks
		cur    []byte   // the block being filled
		held   int64    // charged for blocks and cur
		total  int64
	)
	drop := func() {
		for _, b := range blocks {
			putBody(b)
		}
		if cur != nil {
			putBody(cur)
		}
		s.bodies.release(held)
	}
	for {
		if len(cur) == cap(cur) || total == limit {
			if total >= limit {
				var one [1]byte
				n, err := io.ReadFull(src, one[:])
				if n > 0 {
					drop()
					return tooLarge(limit)
				}
				if err != io.EOF {
					drop()
					return err
				}
				break
			}
			size := min(max(2*int64(cap(cur)), firstGrowBytes), limit-total)
			c := bodyCap(size)
			if !s.bodies.tryAcquire(c) {
				drop()
				return &errBodyBudget{s.bodies.max}
			}
			held += c
			if cur != nil {
				blocks = append(blocks, cur)
			}
			cur = getBody(int(size))[:0]
		}
		end := min(cap(cur), len(cur)+int(limit-total))
		n, err := src.Read(cur[len(cur):end])
		cur = cur[:len(cur)+n]
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			drop()
			return err
		}
	}
	if len(blocks) == 0 {
		rb.b = cur
		rb.charged += held
		return nil
	}
	c := bodyCap(total)
	if !s.bodies.tryAcquire(c) {
		drop()
		return &errBodyBudget{s.bodies.max}
	}
	out := getBody(int(total))[:0]
	for _, b := range blocks {
		out = append(out, b...)
	}
	out = append(out, cur...)
	drop()
	rb.b = out
	rb.charged += c
	return nil
}

// zstdReader starts decoding a zstd body. Its first frame header says how
// large a window (history) the decoder needs; that is charged, and no later
// frame may need more. A first window over the limit is a 413 before any
// of it is allocated.
func (s *Server) zstdReader(body io.Reader, limit int64) (*zstd.Decoder, int64, error) {
	var hdr [zstd.HeaderMaxSize]byte
	n, err := io.ReadFull(body, hdr[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, 0, badRequest("reading request body: " + errText(err))
	}
	maxWin := zstdMaxWindow(limit)
	win := maxWin // a first frame that declares none (skippable): the most allowed
	var h zstd.Header
	if h.Decode(hdr[:n]) == nil && !h.Skippable {
		win = h.WindowSize
		if h.SingleSegment {
			win = h.FrameContentSize
		}
		if win > maxWin {
			return nil, 0, &httpError{http.StatusRequestEntityTooLarge,
				fmt.Sprintf("zstd window of %d bytes exceeds %d (RFC 9659: at most 8 MB)", win, maxWin)}
		}
		win = max(win, zstd.MinWindowSize)
	}
	c := zstdDecoderBytes(win)
	if !s.bodies.tryAcquire(c) {
		return nil, 0, &errBodyBudget{s.bodies.max}
	}
	zr, err := zstd.NewReader(io.MultiReader(bytes.NewReader(hdr[:n]), body),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(win), zstd.WithDecoderMaxMemory(uint64(limit)+1<<20))
	if err != nil {
		s.bodies.release(c)
		return nil, 0, badRequest("invalid zstd body")
	}
	return zr, c, nil
}

// releaseBody gives a body's buffer back to the pool and its charge back
// to the budget.
func (s *Server) releaseBody(rb reqBody) {
	if rb.b != nil {
		putBody(rb.b)
	}
	s.bodies.release(rb.charged)
}

// Large request bodies are read into pooled buffers, by power-of-two size
// class from 64 KiB: a stream of 1 MiB appends would otherwise allocate a
// megabyte per request and keep the garbage collector busy.
const (
	minPooledBody = 16 // log2 of the smallest pooled size, 64 KiB
	maxPooledBody = 26 // log2 of the largest, 64 MiB
)

var bodyPools [maxPooledBody + 1]sync.Pool

// bodyCap is the capacity getBody(n) returns: the size class, or n itself.
func bodyCap(n int64) int64 {
	c := bits.Len64(uint64(n - 1))
	if n <= 0 || c < minPooledBody || c > maxPooledBody {
		return max(n, 0)
	}
	return 1 << c
}

func getBody(n int) []byte {
	c := bits.Len(uint(n - 1))
	if c < minPooledBody || c > maxPooledBody {
		return make([]byte, n)
	}
	if p, ok := bodyPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

// putBody returns a body from getBody to its pool.
func putBody(b []byte) {
	c := bits.Len(uint(cap(b) - 1))
	if cap(b) != 1<<c || c < minPooledBody || c > maxPooledBody {
		return
	}
	bodyPools[c].Put(&b)
}
