package crashtest

// Self-describing payloads. Every append request gets a unique request id q;
// each of its n messages (JSON) or records (binary) carries (q, k, n), so a
// stream's stored bytes can be cut into messages, grouped back into the
// requests that wrote them, and compared byte for byte with what was sent.
//
// Binary record (all integers little-endian):
//
//	"dsR1" | q uint64 | k uint16 | n uint16 | len uint32 | payload[len] | crc32c uint32
//
// where the CRC covers everything before it. JSON message (sent compact, so the
// stored form is the message followed by ','):
//
//	{"q":<q>,"k":<k>,"n":<n>,"w":<writer>,"p":"<padding>"}

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strconv"
	"strings"
)

const (
	binMagic  = "dsR1"
	binHeader = 4 + 8 + 2 + 2 + 4
	binCRC    = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// binRecord builds one binary record with a random payload of plen bytes.
func binRecord(rng *rand.Rand, q uint64, k, n, plen int) []byte {
	rec := make([]byte, binHeader+plen+binCRC)
	copy(rec, binMagic)
	binary.LittleEndian.PutUint64(rec[4:], q)
	binary.LittleEndian.PutUint16(rec[12:], uint16(k))
	binary.LittleEndian.PutUint16(rec[14:], uint16(n))
	binary.LittleEndian.PutUint32(rec[16:], uint32(plen))
	p := rec[binHeader : binHeader+plen]
	for i := 0; i < len(p); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(p[i:], w[:])
	}
	binary.LittleEndian.PutUint32(rec[binHeader+plen:], crc32.Checksum(rec[:binHeader+plen], castagnoli))
	return rec
}

// binBody builds a binary append of n records; the body is also exactly the
// stored form.
func binBody(rng *rand.Rand, q uint64, n, maxPayload int) []byte {
	var b []byte
	for k := range n {
		b = append(b, binRecord(rng, q, k, n, rng.IntN(maxPayload+1))...)
	}
	return b
}

// Padding tokens: ASCII, raw UTF-8, escapes and in-string spaces, all of which
// the server must store byte-exact (it only removes whitespace outside strings).
var padTokens = []string{"a", "b", "c", "x", "y", "z", "0", "7", "-", "_", " ", "é", "日本", `\n`, `\"`, `\\`, `\u00e9`, `\/`}

func jsonMessage(rng *rand.Rand, q uint64, k, n, w int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"q":%d,"k":%d,"n":%d,"w":%d,"p":"`, q, k, n, w)
	for range rng.IntN(40) {
		b.WriteString(padTokens[rng.IntN(len(padTokens))])
	}
	b.WriteString(`"}`)
	return b.Bytes()
}

// jsonBody builds a JSON append of n messages with random insignificant
// whitespace, and the stored form the server must produce: each message
// compact and followed by ','.
func jsonBody(rng *rand.Rand, q uint64, n, w int) (body, stored []byte) {
	msgs := make([][]byte, n)
	for k := range n {
		msgs[k] = jsonMessage(rng, q, k, n, w)
		stored = append(stored, msgs[k]...)
		stored = append(stored, ',')
	}
	ws := []string{"", " ", "\n", "\t", "\r\n  "}
	pick := func() string { return ws[rng.IntN(len(ws))] }
	if n == 1 && rng.IntN(2) == 0 {
		return []byte(pick() + string(msgs[0]) + pick()), stored
	}
	var b strings.Builder
	b.WriteString(pick() + "[" + pick())
	for k, m := range msgs {
		if k > 0 {
			b.WriteString(pick() + "," + pick())
		}
		b.Write(m)
	}
	b.WriteString(pick() + "]" + pick())
	return []byte(b.String()), stored
}

// rec is one message or record found in a stream, at [off, end).
type rec struct {
	q        uint64
	k, n     int
	off, end uint64
}

// parseBinary cuts stored binary bytes (starting at stream offset base) into
// whole records; anything else (a torn record, garbage) is an error.
func parseBinary(b []byte, base uint64) ([]rec, error) {
	var out []rec
	pos := 0
	for pos < len(b) {
		rest := b[pos:]
		if len(rest) < binHeader+binCRC {
			return out, fmt.Errorf("offset %d: %d trailing bytes, shorter than a record header (torn record)", base+uint64(pos), len(rest))
		}
		if string(rest[:4]) != binMagic {
			return out, fmt.Errorf("offset %d: no record magic (garbage or torn record): % x", base+uint64(pos), rest[:min(len(rest), 16)])
		}
		plen := int(binary.LittleEndian.Uint32(rest[16:]))
		size := binHeader + plen + binCRC
		if plen > 64<<20 || len(rest) < size {
			return out, fmt.Errorf("offset %d: record of %d bytes but only %d remain (torn record)", base+uint64(pos), size, len(rest))
		}
		if crc32.Checksum(rest[:binHeader+plen], castagnoli) != binary.LittleEndian.Uint32(rest[binHeader+plen:]) {
			return out, fmt.Errorf("offset %d: record CRC mismatch (corrupt or torn record)", base+uint64(pos))
		}
		out = append(out, rec{
			q: binary.LittleEndian.Uint64(rest[4:]), k: int(binary.LittleEndian.Uint16(rest[12:])),
			n: int(binary.LittleEndian.Uint16(rest[14:])), off: base + uint64(pos), end: base + uint64(pos+size),
		})
		pos += size
	}
	return out, nil
}

type jsonMsgID struct {
	Q *uint64 `json:"q"`
	K *int    `json:"k"`
	N *int    `json:"n"`
}

// parseJSONStored cuts a JSON stream's stored bytes (each message compact and
// followed by ',') into messages.
func parseJSONStored(b []byte, base uint64) ([]rec, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[len(b)-1] != ',' {
		return nil, fmt.Errorf("stored JSON does not end with ',' (torn message)")
	}
	wrapped := make([]byte, 0, len(b)+1)
	wrapped = append(wrapped, '[')
	wrapped = append(wrapped, b[:len(b)-1]...)
	wrapped = append(wrapped, ']')
	dec := json.NewDecoder(bytes.NewReader(wrapped))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var out []rec
	pos := 0
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return out, fmt.Errorf("offset %d: invalid JSON: %v", base+uint64(pos), err)
		}
		if !bytes.HasPrefix(b[pos:], raw) || pos+len(raw) >= len(b) || b[pos+len(raw)] != ',' {
			return out, fmt.Errorf("offset %d: message is not stored compact and followed by ','", base+uint64(pos))
		}
		var id jsonMsgID
		if err := json.Unmarshal(raw, &id); err != nil || id.Q == nil || id.K == nil || id.N == nil {
			return out, fmt.Errorf("offset %d: message without q/k/n: %.80s", base+uint64(pos), raw)
		}
		end := pos + len(raw) + 1
		out = append(out, rec{q: *id.Q, k: *id.K, n: *id.N, off: base + uint64(pos), end: base + uint64(end)})
		pos = end
	}
	if pos != len(b) {
		return out, fmt.Errorf("offset %d: %d stored bytes after the last message", base+uint64(pos), len(b)-pos)
	}
	return out, nil
}

// occurrence is one request's messages found contiguous in a stream.
type occurrence struct {
	q          uint64
	n          int
	start, end uint64
}

// group joins records into request occurrences: (q,0,n) (q,1,n) ... (q,n-1,n)
// must be contiguous; a request cut short or interleaved with another is an
// error (an append is atomic).
func group(recs []rec) ([]occurrence, error) {
	var out []occurrence
	for i := 0; i < len(recs); {
		r := recs[i]
		if r.k != 0 || r.n < 1 {
			return out, fmt.Errorf("offset %d: message %d/%d of request %d does not start a request (torn or interleaved append)", r.off, r.k, r.n, r.q)
		}
		o := occurrence{q: r.q, n: r.n, start: r.off}
		for k := range r.n {
			if i+k >= len(recs) {
				return out, fmt.Errorf("offset %d: request %d ends after %d of its %d messages (half-written append)", r.off, r.q, k, r.n)
			}
			x := recs[i+k]
			if x.q != r.q || x.k != k || x.n != r.n {
				return out, fmt.Errorf("offset %d: request %d message %d/%d followed by request %d message %d/%d (interleaved append)", x.off, r.q, k, r.n, x.q, x.k, x.n)
			}
			o.end = x.end
		}
		out = append(out, o)
		i += r.n
	}
	return out, nil
}

// parseStored parses a stream's stored bytes (from base) into occurrences.
func parseStored(isJSON bool, b []byte, base uint64) ([]occurrence, error) {
	var recs []rec
	var err error
	if isJSON {
		recs, err = parseJSONStored(b, base)
	} else {
		recs, err = parseBinary(b, base)
	}
	if err != nil {
		return nil, err
	}
	return group(recs)
}

// Offsets: 16 digits, '_', 16 digits.
func fmtOffset(v uint64) string {
	return fmt.Sprintf("%016d_%016d", v/1e16, v%1e16)
}

func parseOffset(s string) (uint64, error) {
	if len(s) != 33 || s[16] != '_' {
		return 0, fmt.Errorf("malformed offset %q", s)
	}
	hi, err1 := strconv.ParseUint(s[:16], 10, 64)
	lo, err2 := strconv.ParseUint(s[17:], 10, 64)
	if err := errors.Join(err1, err2); err != nil || fmtOffset(hi*1e16+lo) != s {
		return 0, fmt.Errorf("malformed offset %q", s)
	}
	return hi*1e16 + lo, nil
}
