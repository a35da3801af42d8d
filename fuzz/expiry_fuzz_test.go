package fuzz

// FuzzExpiryHeaders fuzzes the parsing of Stream-TTL and Stream-Expires-At
// through the server's handler:
//
//	go test ./fuzz -run=^$ -fuzz=^FuzzExpiryHeaders$ -fuzztime=60s
//
// Each input is a PUT with either header, both or neither; the oracle says
// from the protocol alone what must happen:
//
//   - Stream-TTL is a decimal integer without sign or leading zeros (around
//     it, spaces and tabs) whose nanoseconds fit in an int64;
//   - Stream-Expires-At is an RFC 3339 date-time (section 5.6, "T" and "Z"
//     in either case, no leap second), in the future, whose nanoseconds
//     since the epoch fit in an int64;
//   - both at once are refused.
//
// What passes is a 201, and the stream is there right after with the TTL or
// the instant asked for; the rest is a 400 with a text/plain message. The
// oracle parses dates with a regular expression and computes the instant
// with its own calendar arithmetic (days from civil), sharing nothing with
// the server's parser or package time's.

import (
	"fmt"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
)

var (
	oracleTTLRe = regexp.MustCompile(`^[ \t]*(0|[1-9][0-9]*)[ \t]*$`)
	oracleDTRe  = regexp.MustCompile(`^[ \t]*([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})` +
		`(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))[ \t]*$`)
	maxInt64 = big.NewInt(math.MaxInt64)
	nsPerSec = big.NewInt(1e9)
)

// oracleTTL returns the TTL in seconds and whether it is acceptable.
func oracleTTL(v string) (*big.Int, bool) {
	m := oracleTTLRe.FindStringSubmatch(v)
	if m == nil {
		return nil, false
	}
	n, _ := new(big.Int).SetString(m[1], 10)
	ns := new(big.Int).Mul(n, nsPerSec)
	return n, ns.Cmp(maxInt64) <= 0
}

// oracleInstant parses an RFC 3339 date-time into nanoseconds since the
// Unix epoch (not bounded).
func oracleInstant(v string) (*big.Int, bool) {
	m := oracleDTRe.FindStringSubmatch(v)
	if m == nil {
		return nil, false
	}
	n := func(s string) int64 { x, _ := strconv.ParseInt(s, 10, 64); return x }
	y, mo, d, h, mi, s := n(m[1]), n(m[2]), n(m[3]), n(m[4]), n(m[5]), n(m[6])
	leap := y%4 == 0 && (y%100 != 0 || y%400 == 0)
	dim := []int64{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	if mo < 1 || mo > 12 {
		return nil, false
	}
	days := dim[mo-1]
	if mo == 2 && leap {
		days = 29
	}
	if d < 1 || d > days || h > 23 || mi > 59 || s > 59 {
		return nil, false
	}
	var off int64
	if m[8] == "" {
		oh, om := n(m[10]), n(m[11])
		if oh > 23 || om > 59 {
			return nil, false
		}
		off = oh*3600 + om*60
		if m[9] == "-" {
			off = -off
		}
	}
	frac := m[7]
	if len(frac) > 9 {
		frac = frac[:9]
	}
	nanos := n(frac + strings.Repeat("0", 9-len(frac)))
	// Days from civil (H. Hinnant): days since 1970-01-01 of y-mo-d.
	yy := y
	if mo <= 2 {
		yy--
	}
	era := yy / 400
	if yy < 0 && yy%400 != 0 {
		era--
	}
	yoe := yy - era*400
	mp := (mo + 9) % 12 // March = 0
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	civil := era*146097 + doe - 719468
	secs := civil*86400 + h*3600 + mi*60 + s - off
	total := new(big.Int).Mul(big.NewInt(secs), nsPerSec)
	return total.Add(total, big.NewInt(nanos)), true
}

func FuzzExpiryHeaders(f *testing.F) {
	for _, s := range []string{
		"2099-01-01T00:00:00Z", "9999-12-31T00:00:00Z", "9999-12-31T23:59:59.999999999+23:59",
		"2262-04-11T23:47:16.854775807Z", "2262-04-11T23:47:16.854775808Z", "2262-04-12T00:00:00+00:13",
		"2099-06-01T12:00:00+00:60", "2099-06-01T12:00:00+24:00", "2099-06-01t12:00:00z",
		"2100-02-29T00:00:00Z", "2400-02-29T00:00:00Z", "2099-01-01T24:00:00Z", "2099-01-01T00:00:60Z",
		"2099-01-01T00:00:00.123456789123Z", "2099-01-01T00:00:00.Z", "2099-01-01T0:00:00Z",
		"2099-01-01T00:00:00,5Z", " 2099-01-01T00:00:00Z\t", "0000-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
		"2099-01-01 00:00:00Z", "+2099-01-01T00:00:00Z", "2099-01-01T00:00:00+0100",
	} {
		f.Add("", false, s, true)
	}
	for _, s := range []string{
		"0", "1", "3600", "9223372036", "9223372037", "10000000000", "1099511627776",
		"18446744073709551615", "18446744073709551616", "+5", "05", " 7 ", "1e3", "", "-1", "３",
	} {
		f.Add(s, true, "", false)
	}
	f.Add("60", true, "2099-01-01T00:00:00Z", true)

	eng, err := engine.Open(f.TempDir(), &engine.Options{Durability: engine.DurabilityMemory})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { eng.Close() })
	srv, err := server.New(eng, server.Config{})
	if err != nil {
		f.Fatal(err)
	}
	var seq atomic.Int64

	f.Fuzz(func(t *testing.T, ttl string, sendTTL bool, exp string, sendExp bool) {
		path := fmt.Sprintf("/v1/stream/x%d", seq.Add(1))
		req := httptest.NewRequest("PUT", path, nil)
		req.Header.Set("Content-Type", "text/plain")
		if sendTTL {
			req.Header.Set("Stream-TTL", ttl)
		}
		if sendExp {
			req.Header.Set("Stream-Expires-At", exp)
		}
		now := time.Now()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		defer srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", path, nil))

		ok, check := true, true
		var ttlSecs, instant *big.Int
		switch {
		case sendTTL && sendExp:
			ok = false
		case sendTTL:
			ttlSecs, ok = oracleTTL(ttl)
			check = ok && ttlSecs.Sign() > 0 // a TTL of 0 may expire before the HEAD
		case sendExp:
			var valid bool
			if instant, valid = oracleInstant(exp); !valid {
				ok = false
				break
			}
			nowNs := big.NewInt(now.UnixNano())
			slack := new(big.Int).Sub(instant, nowNs)
			if slack.CmpAbs(big.NewInt(int64(5*time.Second))) < 0 {
				return // too close to now to say which side of it the server saw
			}
			ok = slack.Sign() > 0 && instant.Cmp(maxInt64) <= 0
		}

		if !ok {
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("TTL %q (%v), expiry %q (%v): %d %q, want 400", ttl, sendTTL, exp, sendExp, rec.Code, rec.Body)
			}
			if msg := strings.TrimSpace(rec.Body.String()); msg == "" || len(msg) > 200 ||
				!strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
				t.Fatalf("TTL %q, expiry %q: 400 with message %q", ttl, exp, rec.Body)
			}
			return
		}
		if rec.Code != http.StatusCreated {
			t.Fatalf("TTL %q (%v), expiry %q (%v): %d %q, want 201", ttl, sendTTL, exp, sendExp, rec.Code, rec.Body)
		}
		if !check {
			return
		}
		head := httptest.NewRecorder()
		srv.ServeHTTP(head, httptest.NewRequest("HEAD", path, nil))
		if head.Code != http.StatusOK {
			t.Fatalf("TTL %q, expiry %q: created, but HEAD right after is %d", ttl, exp, head.Code)
		}
		if ttlSecs != nil {
			if got := head.Header().Get("Stream-TTL"); got != ttlSecs.String() {
				t.Fatalf("TTL %q: HEAD says Stream-TTL %q", ttl, got)
			}
		}
		if instant != nil {
			got := head.Header().Get("Stream-Expires-At")
			if gi, valid := oracleInstant(got); !valid || gi.Cmp(instant) != 0 {
				t.Fatalf("expiry %q: HEAD says Stream-Expires-At %q", exp, got)
			}
		}
	})
}
