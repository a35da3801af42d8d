package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/durastream/durastream/engine"
)

// parseExpiry reads Stream-TTL and Stream-Expires-At. What the engine
// cannot represent is refused, not clamped: a TTL above engine.MaxTTL
// (about 292 years) or an expiry after engine.MaxExpiresAt (2262-04-11)
// would overflow its nanoseconds and make the stream expire at once.
func parseExpiry(r *http.Request, o *engine.CreateOptions) error {
	ttl, hasTTL := header(r, hTTL)
	exp, hasExp := header(r, hExpiresAt)
	if hasTTL && hasExp {
		return badRequest("Stream-TTL and Stream-Expires-At are exclusive")
	}
	if hasTTL {
		ttl = trimOWS(ttl)
		v, ok := parseDecimal(ttl, engine.MaxTTL)
		if !ok {
			if allDigits(ttl) && ttl[0] != '0' { // well formed, too large
				return badRequest("Stream-TTL must be at most " + strconv.FormatUint(engine.MaxTTL, 10) + " seconds")
			}
			return badRequest("Stream-TTL must be a non-negative integer number of seconds")
		}
		o.TTL, o.HasTTL = v, true
	}
	if hasExp {
		t, ok := parseRFC3339(trimOWS(exp))
		if !ok {
			return badRequest("Stream-Expires-At must be an RFC 3339 timestamp such as 2030-01-01T00:00:00Z")
		}
		if t.After(engine.MaxExpiresAt) {
			return badRequest("Stream-Expires-At must not be after " + engine.MaxExpiresAt.Format(time.RFC3339Nano))
		}
		if !t.After(time.Now()) {
			return badRequest("Stream-Expires-At is in the past")
		}
		o.ExpiresAt = t
	}
	return nil
}

// trimOWS drops the optional whitespace (spaces and tabs) around a field
// value, as a parser of the wire format does.
func trimOWS(s string) string { return strings.Trim(s, " \t") }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseRFC3339 parses an RFC 3339 date-time (section 5.6) strictly, unlike
// time.Parse, which also takes one-digit hours, a comma before the
// fraction and offsets such as +24:00 or +00:60:
//
//	YYYY-MM-DD "T" hh:mm:ss [ "." 1*DIGIT ] ( "Z" / ("+" / "-") hh:mm )
//
// "T" and "Z" may be lower case. Fraction digits past the ninth are
// dropped (nanosecond resolution). A leap second (:60) is refused: time
// values cannot hold it.
func parseRFC3339(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return time.Time{}, false
	}
	ok := true
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				ok = false
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if !ok || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	i, nsec := 19, 0
	if s[i] == '.' {
		i++
		digits := 0
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			if digits < 9 {
				nsec = nsec*10 + int(s[i]-'0')
			}
			digits++
		}
		if digits == 0 {
			return time.Time{}, false
		}
		for ; digits < 9; digits++ {
			nsec *= 10
		}
	}
	if i >= len(s) {
		return time.Time{}, false
	}
	offset := 0 // seconds east of UTC
	switch s[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		if len(s) != i+6 || s[i+3] != ':' {
			return time.Time{}, false
		}
		oh, om := num(i+1, 2), num(i+4, 2)
		if !ok || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = oh*3600 + om*60
		if s[i] == '-' {
			offset = -offset
		}
		i += 6
	default:
		return time.Time{}, false
	}
	if i != len(s) || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	if day > time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}
