package server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/durastream/durastream/engine"
)

// Protocol header names.
const (
	hNextOffset          = "Stream-Next-Offset"
	hUpToDate            = "Stream-Up-To-Date"
	hCursor              = "Stream-Cursor"
	hStreamClosed        = "Stream-Closed"
	hStreamSeq           = "Stream-Seq"
	hTTL                 = "Stream-TTL"
	hExpiresAt           = "Stream-Expires-At"
	hForkedFrom          = "Stream-Forked-From"
	hForkOffset          = "Stream-Fork-Offset"
	hForkSubOffset       = "Stream-Fork-Sub-Offset"
	hProducerID          = "Producer-Id"
	hProducerEpoch       = "Producer-Epoch"
	hProducerSeq         = "Producer-Seq"
	hProducerExpectedSeq = "Producer-Expected-Seq"
	hProducerReceivedSeq = "Producer-Received-Seq"
	hSSEEncoding         = "Stream-Sse-Data-Encoding"
)

// maxSafeInt is 2^53-1: producer numbers must survive JavaScript.
const maxSafeInt = 1<<53 - 1

// header returns a request header's first value and whether it was sent.
// (Go canonicalizes names, e.g. Stream-TTL to Stream-Ttl; Values does too.)
func header(r *http.Request, name string) (string, bool) {
	v := r.Header.Values(name)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// closedHeader reports whether Stream-Closed is exactly "true"
// (case-insensitive); any other value counts as absent.
func closedHeader(r *http.Request) bool {
	return strings.EqualFold(strings.TrimSpace(r.Header.Get(hStreamClosed)), "true")
}

// parseDecimal parses a non-negative decimal integer without sign, leading
// zeros (except "0" itself), spaces, points or exponents.
func parseDecimal(s string, max uint64) (uint64, bool) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, false
	}
	return v, true
}

// parseProducer reads the three producer headers: all or none.
func parseProducer(r *http.Request) (*engine.Producer, error) {
	id, hasID := header(r, hProducerID)
	ep, hasEp := header(r, hProducerEpoch)
	sq, hasSq := header(r, hProducerSeq)
	if !hasID && !hasEp && !hasSq {
		return nil, nil
	}
	if !hasID || !hasEp || !hasSq {
		return nil, badRequest("Producer-Id, Producer-Epoch and Producer-Seq must be sent together")
	}
	if id == "" {
		return nil, badRequest("Producer-Id must not be empty")
	}
	epoch, ok := parseDecimal(strings.TrimSpace(ep), maxSafeInt)
	if !ok {
		return nil, badRequest("Producer-Epoch must be an integer in 0..2^53-1")
	}
	seq, ok := parseDecimal(strings.TrimSpace(sq), maxSafeInt)
	if !ok {
		return nil, badRequest("Producer-Seq must be an integer in 0..2^53-1")
	}
	return &engine.Producer{ID: id, Epoch: epoch, Seq: seq}, nil
}

// cursor returns the Stream-Cursor for a live response (protocol 10.1): the
// current interval number, or, when the client's cursor is not behind it, a
// value past the client's by a jitter of 1..3600 s of intervals, so cursors
// never go backwards and cached responses age out. The jitter is a hash of
// the client's cursor, not a new random draw per response: readers that
// hold the same cursor get the same next one even when a cache did not
// collapse their requests (at different offsets, say), so once they reach
// the same offset they ask for the same URL again and collapse. With a
// random draw each such split stayed apart for as long as its readers
// polled: every answer moves a cursor ahead of the clock, so the current
// interval never catches up with a chain to bring it back.
func (s *Server) cursor(r *http.Request) string {
	return s.nextCursor(clientCursor(r))
}

// clientCursor is the request's cursor parameter, or -1.
func clientCursor(r *http.Request) int64 {
	v, n := queryParam(r.URL.RawQuery, "cursor")
	if n == 0 {
		return -1
	}
	c, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return -1
	}
	return int64(c)
}

// nextCursor computes the cursor to send given the client's (-1: none).
func (s *Server) nextCursor(client int64) string {
	now := time.Since(s.cfg.CursorEpoch)
	cur := uint64(max(now, 0) / s.cfg.CursorInterval)
	if client >= 0 && uint64(client) >= cur {
		jitter := time.Duration(1+mix64(uint64(client))%3600) * time.Second
		cur = uint64(client) + max(1, uint64(jitter/s.cfg.CursorInterval))
	}
	return strconv.FormatUint(cur, 10)
}

// mix64 is splitmix64's finalizer: a well-spread hash of x.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// queryParam returns the first value of key in a raw query string and how
// many times key appears, as url.ParseQuery would see them (pairs split at
// '&', pairs with ';' or a bad escape skipped) but without building the map:
// a read parses its few parameters per request, and a long-poll fan-out
// makes tens of thousands of requests a second.
func queryParam(raw, key string) (val string, n int) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != key {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if uk, err := url.QueryUnescape(k); err != nil || uk != key {
				continue
			}
		}
		if strings.ContainsAny(v, "%+") {
			var err error
			if v, err = url.QueryUnescape(v); err != nil {
				continue
			}
		}
		if n == 0 {
			val = v
		}
		n++
	}
	return val, n
}
