// Package fuzz holds the engine's fuzz targets. Run one target at a time:
//
//	go test ./fuzz -run=^$ -fuzz=FuzzParseOffset -fuzztime=60s
//	go test ./fuzz -run=^$ -fuzz=FuzzFrameJSON -fuzztime=60s
//
// A plain `go test ./fuzz` runs every target once over its seed corpus and
// the regression inputs kept under testdata/fuzz/<Target>/.
package fuzz

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/durastream/durastream/engine"
)

func FuzzParseOffset(f *testing.F) {
	for _, s := range []string{
		"", "-1", "now", "NOW", "-2", "0", "42", "abc",
		"0000000000000000_0000000000000000",
		"0000000000000000_0000000000000042",
		"0000000000000001_0000000000000000",
		"0000000000001844_6744073709551615", // max uint64
		"0000000000001844_6744073709551616", // max uint64 + 1
		"9999999999999999_9999999999999999",
		"0000000000000000-0000000000000042",
		"+000000000000000_0000000000000042",
		" 000000000000000_0000000000000042",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := engine.ParseOffset(s)
		if err == nil {
			if got := o.String(); got != s {
				t.Fatalf("ParseOffset(%q) = %d, which prints as %q", s, uint64(o), got)
			}
			if len(s) != engine.OffsetLen {
				t.Fatalf("ParseOffset accepted %q of length %d", s, len(s))
			}
		} else if !errors.Is(err, engine.ErrBadOffset) || o != 0 {
			t.Fatalf("ParseOffset(%q) = %d, %v; want 0, ErrBadOffset", s, uint64(o), err)
		}

		rf, rerr := engine.ParseReadOffset(s)
		switch {
		case s == "" || s == "-1":
			if rerr != nil || rf != (engine.ReadFrom{Kind: engine.FromStart}) {
				t.Fatalf("ParseReadOffset(%q) = %+v, %v", s, rf, rerr)
			}
		case s == "now":
			if rerr != nil || rf != (engine.ReadFrom{Kind: engine.FromNow}) {
				t.Fatalf("ParseReadOffset(%q) = %+v, %v", s, rf, rerr)
			}
		case err == nil:
			if rerr != nil || rf != engine.At(o) {
				t.Fatalf("ParseReadOffset(%q) = %+v, %v; want At(%d)", s, rf, rerr, uint64(o))
			}
		default:
			if !errors.Is(rerr, engine.ErrBadOffset) {
				t.Fatalf("ParseReadOffset(%q) = %+v, %v; want ErrBadOffset", s, rf, rerr)
			}
		}
	})
}

func FuzzFrameJSON(f *testing.F) {
	for _, s := range []string{
		`{"event": "created"}`,
		`[{"a":1}, {"b":2}]`,
		`[[1,2],[3,4]]`,
		`[[[1,2,3]]]`,
		`5`,
		`"x"`,
		`[ ]`,
		" [\n\t\"a,b\" ,\r\n \"\\\"]\\\\\" ] ",
		`{"k": ["\u00e9\ud83d\ude00", -1.5e-10, true, null, {}]}`,
		`["héllo 日本 😀", "a\u2028b"]`,
		`{"a":1}x`,
		`[1,]`,
		"\"\xff\"",
		"\"a\x01b\"",
		`"\x"`,
		`[[] `,
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(`[]`), true)
	f.Add([]byte(`[1]`), true)
	// Nesting around the limits: sonic accepts 4096 nested arrays but only
	// 4095 nested objects; encoding/json accepts up to 10000; FrameJSON
	// accepts up to engine.MaxJSONDepth.
	arr := func(d int) []byte { return []byte(strings.Repeat("[", d) + strings.Repeat("]", d)) }
	obj := func(d int) []byte { return []byte(strings.Repeat(`{"":`, d) + "0" + strings.Repeat("}", d)) }
	f.Add(arr(engine.MaxJSONDepth), false)
	f.Add(arr(engine.MaxJSONDepth+1), false)
	f.Add(obj(engine.MaxJSONDepth), false)
	f.Add(obj(4096), false)

	f.Fuzz(func(t *testing.T, body []byte, allowEmpty bool) {
		orig := bytes.Clone(body)
		prefix := []byte(`7,`)
		out, n, err := engine.FrameJSON(prefix, body, allowEmpty)
		if !bytes.Equal(body, orig) {
			t.Fatalf("FrameJSON modified its input")
		}
		// JSONMessageEnd never panics on arbitrary bytes either.
		if e := engine.JSONMessageEnd(body); e != -1 && (e <= 0 || e > len(body) || body[e-1] != ',') {
			t.Fatalf("JSONMessageEnd(%q) = %d", body, e)
		}

		stdValid := json.Valid(body)
		if err != nil {
			if !errors.Is(err, engine.ErrInvalidJSON) && !errors.Is(err, engine.ErrEmptyJSONArray) {
				t.Fatalf("FrameJSON(%q): unexpected error %v", body, err)
			}
			if n != 0 || len(out) != len(prefix) || string(out) != "7," {
				t.Fatalf("FrameJSON(%q) changed dst on error: %q, %d", body, out, n)
			}
			if errors.Is(err, engine.ErrEmptyJSONArray) {
				if allowEmpty || !isEmptyArray(body) {
					t.Fatalf("FrameJSON(%q, %v) = ErrEmptyJSONArray", body, allowEmpty)
				}
				return
			}
			var je *engine.JSONError
			if !errors.As(err, &je) || je.Msg == "" {
				t.Fatalf("FrameJSON(%q): error %v is not a *JSONError with a message", body, err)
			}
			// Everything encoding/json accepts must be framed, except for the
			// documented extra rules: strict UTF-8 and the nesting limit.
			if stdValid && utf8.Valid(body) && nestingDepth(t, body) <= engine.MaxJSONDepth {
				t.Fatalf("FrameJSON rejected %q, which encoding/json accepts: %v", body, err)
			}
			return
		}

		if !stdValid {
			t.Fatalf("FrameJSON accepted %q, which encoding/json rejects: %q", body, out)
		}
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("FrameJSON(%q) clobbered dst: %q", body, out)
		}
		stored := out[len(prefix):]
		if n == 0 {
			if !allowEmpty || !isEmptyArray(body) || len(stored) != 0 {
				t.Fatalf("FrameJSON(%q, %v) = %q, 0 messages", body, allowEmpty, stored)
			}
			return
		}
		if len(stored) == 0 || stored[len(stored)-1] != ',' {
			t.Fatalf("FrameJSON(%q) = %q: missing trailing comma", body, stored)
		}
		if !utf8.Valid(stored) {
			t.Fatalf("FrameJSON(%q) stored invalid UTF-8 %q", body, stored)
		}

		wrapped := make([]byte, 0, len(stored)+1)
		wrapped = append(wrapped, '[')
		wrapped = append(wrapped, stored[:len(stored)-1]...)
		wrapped = append(wrapped, ']')
		if !json.Valid(wrapped) {
			t.Fatalf("FrameJSON(%q): wrapped stored form %q is not valid JSON", body, wrapped)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, wrapped); err != nil || !bytes.Equal(compact.Bytes(), wrapped) {
			t.Fatalf("FrameJSON(%q): stored form %q is not compact", body, wrapped)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(wrapped, &elems); err != nil {
			t.Fatalf("FrameJSON(%q): %v", body, err)
		}
		if len(elems) != n {
			t.Fatalf("FrameJSON(%q) = %q: %d elements, reported %d", body, stored, len(elems), n)
		}

		// Walking with JSONMessageEnd finds the same n messages.
		pos, last := 0, 0
		for k := 0; k < n; k++ {
			last = pos
			end := engine.JSONMessageEnd(stored[pos:])
			if end <= 0 {
				t.Fatalf("JSONMessageEnd(%q) = %d at message %d", stored[pos:], end, k)
			}
			if !bytes.Equal(stored[pos:pos+end-1], elems[k]) {
				t.Fatalf("message %d is %q, want %q", k, stored[pos:pos+end-1], elems[k])
			}
			pos += end
		}
		if pos != len(stored) {
			t.Fatalf("%d messages end at %d, stored length %d (%q)", n, pos, len(stored), stored)
		}
		// The last message without its comma is not a complete message.
		if e := engine.JSONMessageEnd(stored[last : len(stored)-1]); e != -1 {
			t.Fatalf("JSONMessageEnd(%q) = %d, want -1", stored[last:len(stored)-1], e)
		}

		// Semantically, the stored messages are the input flattened one level.
		want := decode(t, body)
		wantList, isArr := want.([]any)
		if !isArr {
			wantList = []any{want}
		}
		got := decode(t, wrapped)
		if !reflect.DeepEqual(got, wantList) {
			t.Fatalf("FrameJSON(%q) = %q:\n got  %#v\n want %#v", body, stored, got, wantList)
		}
	})
}

// decode decodes data with numbers kept as their text, so that the check
// also proves number literals are stored byte-exact.
func decode(t *testing.T, data []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	return v
}

func isEmptyArray(body []byte) bool {
	var v []json.RawMessage
	return json.Unmarshal(body, &v) == nil && v != nil && len(v) == 0
}

// nestingDepth is the maximum array/object nesting of a valid JSON text,
// counted over encoding/json's tokens: an oracle that shares no code with
// the engine's scanners.
func nestingDepth(t *testing.T, b []byte) int {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // 1e999 is valid JSON but no float64
	depth, max := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return max
		}
		if err != nil {
			t.Fatalf("nestingDepth(%q): %v", b, err)
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			if depth++; depth > max {
				max = depth
			}
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}
