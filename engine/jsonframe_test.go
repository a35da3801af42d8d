package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFrameJSON(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
		n    int
	}{
		// Examples from the FrameJSON doc.
		{"batch of objects", `[{"a":1}, {"b":2}]`, `{"a":1},{"b":2},`, 2},
		{"batch of arrays", `[[1,2],[3,4]]`, `[1,2],[3,4],`, 2},
		{"flatten one level only", `[[[1,2,3]]]`, `[[1,2,3]],`, 1},
		{"single object", `{"event": "created"}`, `{"event":"created"},`, 1},
		{"number", `5`, `5,`, 1},
		{"string", `"x"`, `"x",`, 1},
		{"true", `true`, `true,`, 1},
		{"false", `false`, `false,`, 1},
		{"null", `null`, `null,`, 1},
		{"empty string", `""`, `"",`, 1},
		{"empty object", `{}`, `{},`, 1},
		{"nested empty array", `[[]]`, `[],`, 1},
		{"batch of one", `[null]`, `null,`, 1},
		{"batch of empties", `[{}, [], ""]`, `{},[],"",`, 3},
		{"batch of scalars", `[1,"a",true,null,false]`, `1,"a",true,null,false,`, 5},

		// Whitespace between tokens.
		{"surrounding whitespace", " \t\r\n5 \t\r\n", `5,`, 1},
		{"whitespace everywhere", " \t\r\n{ \"a\" :\t[ 1 ,\n2 ] ,\r\n \"b\" : null } \n", `{"a":[1,2],"b":null},`, 1},
		{"batch spaces", `[ 1 , 2 , 3 ]`, `1,2,3,`, 3},
		{"batch tabs newlines", "[\n\t\"a\" ,\r\n \"b\"\n]", `"a","b",`, 2},
		{"batch crlf", "[\r\n  {\"a\": 1},\r\n  {\"b\": 2}\r\n]\r\n", `{"a":1},{"b":2},`, 2},
		{"whitespace around scalar in batch", "[ true\t, false\n]", `true,false,`, 2},
		{"whitespace in nested", `[ [ 1 , [ 2 ] ] , { "k" : { } } ]`, `[1,[2]],{"k":{}},`, 2},

		// Strings are kept byte-exact.
		{"spaces inside string", `"  a  b  "`, `"  a  b  ",`, 1},
		{"comma in string", `"a,b"`, `"a,b",`, 1},
		{"comma in batch string", `["a,b", "c"]`, `"a,b","c",`, 2},
		{"brackets in string", `{"k": "[{]}"}`, `{"k":"[{]}"},`, 1},
		{"brackets in batch strings", `["]", "[", "}", "{"]`, `"]","[","}","{",`, 4},
		{"escaped quote", `"say \"hi\", ok"`, `"say \"hi\", ok",`, 1},
		{"escaped quote and comma in batch", `["\"", ","]`, `"\"",",",`, 2},
		{"backslashes", `["\\", "\\\\", "a\\"]`, `"\\","\\\\","a\\",`, 3},
		{"backslash before quote", `{"a\\": "b\\\"c"}`, `{"a\\":"b\\\"c"},`, 1},
		{"all short escapes", `"\/\b\f\n\r\t\"\\"`, `"\/\b\f\n\r\t\"\\",`, 1},
		{"unicode escapes", `"\u00e9\ud83d\ude00\u002C"`, `"\u00e9\ud83d\ude00\u002C",`, 1},
		{"uppercase unicode escape", `"\u00E9\uD834\uDD1E"`, `"\u00E9\uD834\uDD1E",`, 1},
		{"lone surrogate escape", `"\ud800"`, `"\ud800",`, 1},
		{"raw utf8", `{"msg": "héllo 日本 😀"}`, `{"msg":"héllo 日本 😀"},`, 1},
		{"raw utf8 line separator", "\"a\u2028b\u2029c\"", "\"a\u2028b\u2029c\",", 1},
		{"DEL is allowed", "\"\x7f\"", "\"\x7f\",", 1},
		{"whitespace-like escapes", `[" \t ", "\n"]`, `" \t ","\n",`, 2},

		// Numbers keep their exact text.
		{"negative", `-1`, `-1,`, 1},
		{"negative zero", `-0`, `-0,`, 1},
		{"exponent", `1.5e-10`, `1.5e-10,`, 1},
		{"upper exponent", `2E+308`, `2E+308,`, 1},
		{"numbers batch", `[ -12.5e3 , 0 , 1e5, 0.000 ]`, `-12.5e3,0,1e5,0.000,`, 4},
		{"big integer", `123456789012345678901234567890`, `123456789012345678901234567890,`, 1},
		{"huge exponent", `1e999999`, `1e999999,`, 1},

		// Nesting.
		{"nested object", `{"a": {"b": [{"c": []}, {}]}}`, `{"a":{"b":[{"c":[]},{}]}},`, 1},
		{"nested batch", `[{"a": [1, {"b": [2, 3]}]}, [[4], {"c": {"d": 5}}]]`, `{"a":[1,{"b":[2,3]}]},[[4],{"c":{"d":5}}],`, 2},
		{"array in object in batch", `[{"x": [1, 2, 3]}]`, `{"x":[1,2,3]},`, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := FrameJSON(nil, []byte(tc.body), false)
			if err != nil {
				t.Fatalf("FrameJSON(%q): %v", tc.body, err)
			}
			if string(got) != tc.want || n != tc.n {
				t.Fatalf("FrameJSON(%q) = %q, %d; want %q, %d", tc.body, got, n, tc.want, tc.n)
			}
			// allowEmpty makes no difference for non-empty bodies.
			got2, n2, err := FrameJSON(nil, []byte(tc.body), true)
			if err != nil || string(got2) != tc.want || n2 != tc.n {
				t.Fatalf("FrameJSON(%q, allowEmpty) = %q, %d, %v", tc.body, got2, n2, err)
			}
			checkStored(t, got, n)
		})
	}
}

// checkStored verifies the stored-form invariants: '[' + stored[:len-1] + ']'
// is compact, valid JSON with n elements, and JSONMessageEnd walks exactly n
// messages that end at len(stored).
func checkStored(t *testing.T, stored []byte, n int) {
	t.Helper()
	wrapped := wrapStored(stored)
	if !json.Valid(wrapped) {
		t.Fatalf("wrapped stored form is not valid JSON: %q", wrapped)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, wrapped); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(compact.Bytes(), wrapped) {
		t.Fatalf("stored form is not compact: %q", wrapped)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(wrapped, &elems); err != nil {
		t.Fatal(err)
	}
	if len(elems) != n {
		t.Fatalf("wrapped stored form has %d elements, want %d", len(elems), n)
	}
	pos := 0
	for k := 0; k < n; k++ {
		end := JSONMessageEnd(stored[pos:])
		if end <= 0 {
			t.Fatalf("JSONMessageEnd at message %d (pos %d of %q) = %d", k, pos, stored, end)
		}
		if msg := stored[pos : pos+end-1]; !bytes.Equal(msg, elems[k]) {
			t.Fatalf("message %d = %q, want %q", k, msg, elems[k])
		}
		pos += end
	}
	if pos != len(stored) {
		t.Fatalf("messages end at %d, stored length %d", pos, len(stored))
	}
}

func wrapStored(stored []byte) []byte {
	if len(stored) == 0 {
		return []byte("[]")
	}
	w := make([]byte, 0, len(stored)+1)
	w = append(w, '[')
	w = append(w, stored[:len(stored)-1]...)
	return append(w, ']')
}

func TestFrameJSONAppendsToDst(t *testing.T) {
	dst := []byte(`{"old":0},`)
	dst, n, err := FrameJSON(dst, []byte(`[1, 2]`), false)
	if err != nil || n != 2 || string(dst) != `{"old":0},1,2,` {
		t.Fatalf("got %q, %d, %v", dst, n, err)
	}
	dst, n, err = FrameJSON(dst, []byte(` "x" `), false)
	if err != nil || n != 1 || string(dst) != `{"old":0},1,2,"x",` {
		t.Fatalf("got %q, %d, %v", dst, n, err)
	}
	checkStored(t, dst, 4)
}

func TestFrameJSONEmptyArray(t *testing.T) {
	for _, body := range []string{`[]`, `[ ]`, "[\n\t\r ]", " \r\n[]\t ", "[\n]"} {
		prefix := []byte(`1,`)
		dst, n, err := FrameJSON(prefix, []byte(body), false)
		if err != ErrEmptyJSONArray || n != 0 || string(dst) != `1,` {
			t.Errorf("FrameJSON(%q, false) = %q, %d, %v; want ErrEmptyJSONArray", body, dst, n, err)
		}
		if errors.Is(err, ErrInvalidJSON) {
			t.Errorf("FrameJSON(%q): empty array must not be ErrInvalidJSON", body)
		}
		dst, n, err = FrameJSON(prefix, []byte(body), true)
		if err != nil || n != 0 || string(dst) != `1,` {
			t.Errorf("FrameJSON(%q, true) = %q, %d, %v; want nothing appended", body, dst, n, err)
		}
	}
	// Empty arrays below the top level are ordinary messages.
	dst, n, err := FrameJSON(nil, []byte(`[[], []]`), false)
	if err != nil || n != 2 || string(dst) != `[],[],` {
		t.Fatalf("got %q, %d, %v", dst, n, err)
	}
}

func TestFrameJSONInvalid(t *testing.T) {
	tests := []struct {
		name, body string
		msg        string // substring expected in JSONError.Msg, if set
	}{
		{"empty", ``, "unexpected end of input"},
		{"whitespace only", "   \t\r\n", "unexpected end of input"},
		{"unclosed object", `{`, "unexpected end of input"},
		{"unclosed array", `[1, 2`, "unexpected end of input"},
		{"unclosed nested empty", `[[] `, "unexpected end of input"},
		{"unclosed string", `"abc`, "unexpected end of input"},
		{"trailing comma", `[1,]`, "invalid character ']'"},
		{"trailing comma object", `{"a":1,}`, "invalid character '}'"},
		{"leading comma", `[,1]`, "invalid character ','"},
		{"double comma", `[1,,2]`, "invalid character ','"},
		{"trailing garbage", `{"a":1}x`, "invalid character 'x' after top-level value at byte 7"},
		{"two scalars", `1 2`, "invalid character '2'"},
		{"two arrays", `[1] [2]`, "invalid character '['"},
		{"two objects", `{} {}`, "invalid character '{'"},
		{"two strings", `"a" "b"`, "invalid character '\"'"},
		{"empty array then garbage", `[] x`, "invalid character 'x'"},
		{"extra close", `[]]`, "invalid character ']'"},
		{"mismatched close", `[1}`, "invalid character '}'"},
		{"lone close", `]`, "invalid character ']'"},
		{"missing colon", `{"a" 1}`, "invalid character '1'"},
		{"missing value", `{"a":}`, "invalid character '}'"},
		{"non-string key", `{1:2}`, ""},
		{"leading zero", `01`, ""},
		{"bare minus", `-`, ""},
		{"trailing dot", `1.`, ""},
		{"leading dot", `.5`, ""},
		{"bad exponent", `1e+`, ""},
		{"plus sign", `+1`, ""},
		{"hex", `0x1`, ""},
		{"NaN", `NaN`, ""},
		{"Infinity", `Infinity`, ""},
		{"truncated literal", `tru`, ""},
		{"long literal", `nulll`, ""},
		{"single quotes", `'a'`, ""},
		{"BOM", "\xef\xbb\xbf{}", ""},
		{"form feed whitespace", "1\f", ""},
		{"vertical tab whitespace", "\v1", ""},
		{"NUL after value", "[1]\x00", ""},
		{"NBSP whitespace", "\u00a01", ""},

		// String contents: sonic accepts all of these, the framing pass
		// rejects them.
		{"raw control char", "\"a\x01b\"", `invalid character '\x01' in string literal at byte 2`},
		{"raw NUL", "\"\x00\"", `invalid character '\x00' in string literal`},
		{"raw newline in string", "\"a\nb\"", `invalid character '\n' in string literal`},
		{"raw tab in string", "{\"k\": \"a\tb\"}", `invalid character '\t' in string literal at byte 8`},
		{"control char in batch", "[\"ok\", \"\x1f\"]", "in string literal"},
		{"control char in key", "{\"\x02\": 1}", "in string literal"},
		{"bad escape x", `"\x41"`, "in string escape code"},
		{"bad escape quote", `"\'"`, "in string escape code"},
		{"bad escape U", `"\U0041"`, "in string escape code"},
		{"short unicode escape", `"\u12"`, "hexadecimal"},
		{"non-hex unicode escape", `"\u00GG"`, "hexadecimal"},
		{"invalid utf8 byte", "\"\xff\"", "invalid UTF-8 in string at byte 1"},
		{"truncated utf8", "\"\xc3\"", "invalid UTF-8"},
		{"truncated utf8 at end", "[\"ab\xe6\x97\"]", "invalid UTF-8"},
		{"lone continuation", "\"\x80\"", "invalid UTF-8"},
		{"overlong", "\"\xc0\x80\"", "invalid UTF-8"},
		{"utf8 surrogate", "\"\xed\xa0\x80\"", "invalid UTF-8"},
		{"beyond U+10FFFF", "\"\xf4\x90\x80\x80\"", "invalid UTF-8"},
		{"invalid utf8 in key", "{\"\xfe\": 1}", "invalid UTF-8"},
		{"invalid utf8 later in batch", "[\"fine\", {\"a\": \"x\xffy\"}]", "invalid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, 3, 64)
			copy(dst, "42,")
			got, n, err := FrameJSON(dst, []byte(tc.body), false)
			if err == nil {
				t.Fatalf("FrameJSON(%q) = %q, %d; want error", tc.body, got, n)
			}
			if !errors.Is(err, ErrInvalidJSON) || errors.Is(err, ErrEmptyJSONArray) {
				t.Fatalf("FrameJSON(%q) error %v is not ErrInvalidJSON", tc.body, err)
			}
			var je *JSONError
			if !errors.As(err, &je) {
				t.Fatalf("FrameJSON(%q) error %T is not *JSONError", tc.body, err)
			}
			if je.Msg == "" || !strings.Contains(je.Msg, tc.msg) {
				t.Fatalf("FrameJSON(%q) message %q; want it to contain %q", tc.body, je.Msg, tc.msg)
			}
			if n != 0 || len(got) != 3 || string(got) != "42," {
				t.Fatalf("FrameJSON(%q) changed dst on error: %q, %d", tc.body, got, n)
			}
			if _, _, err2 := FrameJSON(nil, []byte(tc.body), true); err2 == nil {
				t.Fatalf("FrameJSON(%q, allowEmpty) succeeded", tc.body)
			}
		})
	}
}

// TestFrameJSONTruncatedLiteralOverread: sonic v1.15.5 reads past the end of
// a body shorter than 4 bytes holding a truncated literal, and reports it valid
// if the bytes after the slice complete the literal. The truncated body here
// is a prefix of a buffer that does hold the whole literal.
func TestFrameJSONTruncatedLiteralOverread(t *testing.T) {
	for _, full := range []string{"null", "true", "false", " null", "  true", " false", "[null]", "[true]", `{"a":false}`} {
		buf := []byte(full)
		for k := 1; k < len(buf); k++ {
			body := buf[:k]
			if json.Valid(body) {
				continue
			}
			out, n, err := FrameJSON(nil, body, true)
			if !errors.Is(err, ErrInvalidJSON) {
				t.Errorf("FrameJSON(%q) = %q, %d, %v; want ErrInvalidJSON", body, out, n, err)
			}
		}
	}
}

func TestFrameJSONDepth(t *testing.T) {
	nestArr := func(d int) string { return strings.Repeat("[", d) + strings.Repeat("]", d) }
	nestObj := func(d int) string { return strings.Repeat(`{"a":`, d) + "1" + strings.Repeat("}", d) }
	ok := []struct {
		body string
		n    int
	}{
		{nestArr(MaxJSONDepth), 1},
		{nestObj(MaxJSONDepth), 1},
		{"[" + nestObj(MaxJSONDepth-1) + "," + nestArr(MaxJSONDepth-1) + "]", 2},
	}
	for _, tc := range ok {
		got, n, err := FrameJSON(nil, []byte(tc.body), false)
		if err != nil || n != tc.n {
			t.Fatalf("depth %d: %d, %v", MaxJSONDepth, n, err)
		}
		checkStored(t, got, n)
	}
	for _, d := range []int{MaxJSONDepth + 1, 4096, 4097, 5000, 10000, 10001, 100000} {
		for _, body := range []string{nestArr(d), nestObj(d), "[1," + nestArr(d-1) + "]"} {
			_, _, err := FrameJSON(nil, []byte(body), false)
			var je *JSONError
			if !errors.As(err, &je) {
				t.Fatalf("depth %d: err = %v, want *JSONError", d, err)
			}
			if d <= 10000 && !strings.Contains(je.Msg, "nesting depth") {
				t.Errorf("depth %d: message %q", d, je.Msg)
			}
		}
	}
}

// TestFrameJSONMatchesEncodingJSON cross-checks acceptance against
// encoding/json on the table inputs: whatever encoding/json rejects,
// FrameJSON rejects too.
func TestFrameJSONMatchesEncodingJSON(t *testing.T) {
	bodies := []string{
		"\"\x00\"", `"\x"`, `"\u12"`, `"\'"`, "\"a\tb\"", `01`, `[1,]`, `1 2`, "\"\xff\"",
	}
	for _, b := range bodies {
		_, _, err := FrameJSON(nil, []byte(b), true)
		if !json.Valid([]byte(b)) && err == nil {
			t.Errorf("FrameJSON accepted %q, which encoding/json rejects", b)
		}
	}
}

func TestJSONMessageEnd(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`5,`, 2},
		{`5,6,`, 2},
		{`-1.5e3,`, 7},
		{`true,false,`, 5},
		{`"",`, 3},
		{`"a,b",`, 6},
		{`"a,b","c",`, 6},
		{`"\"",`, 5},
		{`"\",",`, 6},
		{`"\\",`, 5},
		{`"\\\",",`, 8},
		{`"x\\",1,`, 6},
		{`{"a":1,"b":2},{"c":3},`, 14},
		{`[1,2,3],4,`, 8},
		{`[[1,[2]],{"a":[3,4]}],5,`, 22},
		{`{"a,":"],}","b":["[",","]},1,`, 27},
		{`"日本,😀",x`, len(`"日本,😀",`)},
		{`[],`, 3},
		{`{},`, 3},

		// Not a complete stored message.
		{``, -1},
		{`5`, -1},
		{`"a,b"`, -1},
		{`"a,`, -1},
		{`"a\",`, -1},
		{`"a\`, -1},
		{`[1,2`, -1},
		{`[1,2,`, -1},
		{`{"a":1,`, -1},
		{`{"a":"}",`, -1},
		{`,`, -1},
		{`,5,`, -1},
		{`],`, -1},
		{`}5,`, -1},
	}
	for _, tc := range tests {
		if got := JSONMessageEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("JSONMessageEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestJSONMessageEndWalk(t *testing.T) {
	stored, n, err := FrameJSON(nil, []byte(`[
		{"text": "a, b, \"c\", [d]"},
		"\\",
		[1, [2, "]"], {"k": ","}],
		-0.5e-3,
		"\u005c\u0022,",
		null
	]`), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"text":"a, b, \"c\", [d]"}`, `"\\"`, `[1,[2,"]"],{"k":","}]`, `-0.5e-3`, `"\u005c\u0022,"`, `null`}
	if n != len(want) {
		t.Fatalf("n = %d", n)
	}
	var got []string
	for b := stored; len(b) > 0; {
		end := JSONMessageEnd(b)
		if end < 0 {
			t.Fatalf("JSONMessageEnd(%q) = -1", b)
		}
		got = append(got, string(b[:end-1]))
		b = b[end:]
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("messages %q, want %q", got, want)
	}
	// Every strict prefix that cuts the last message is incomplete.
	last := len(stored) - len(`null,`)
	for cut := last; cut < len(stored); cut++ {
		if e := JSONMessageEnd(stored[last:cut]); e != -1 {
			t.Fatalf("JSONMessageEnd(%q) = %d, want -1", stored[last:cut], e)
		}
	}
	// Truncating anywhere inside the first message gives -1.
	first := JSONMessageEnd(stored)
	for cut := 0; cut < first; cut++ {
		if e := JSONMessageEnd(stored[:cut]); e != -1 {
			t.Fatalf("JSONMessageEnd(%q) = %d, want -1", stored[:cut], e)
		}
	}
}

// jsonGen generates random JSON text with random insignificant whitespace.
type jsonGen struct{ r *rand.Rand }

func (g jsonGen) ws(b *strings.Builder) {
	for g.r.IntN(3) == 0 {
		b.WriteByte(" \t\n\r"[g.r.IntN(4)])
	}
}

var genStringPieces = []string{
	"a", "Z", "0", " ", ",", "[", "]", "{", "}", ":", `\"`, `\\`, `\/`, `\n`, `\t`, `\r`, `\b`, `\f`,
	`\u0041`, `\u00e9`, `\u2028`, `\ud83d\ude00`, `\u002c`, `\u005D`, "é", "日本", "😀", "\u2028", "\x7f", "'",
}

var genNumbers = []string{
	"0", "-0", "1", "-1", "42", "-17", "3.14", "-2.5", "1e10", "1E-5", "-1.5e+300", "0.0001",
	"123456789012345678901234567890", "6.02214076e23", "1e999",
}

func (g jsonGen) value(b *strings.Builder, depth int) {
	k := g.r.IntN(10)
	if depth >= 4 && k >= 7 {
		k = g.r.IntN(7)
	}
	switch k {
	case 0:
		b.WriteString("null")
	case 1:
		b.WriteString([]string{"true", "false"}[g.r.IntN(2)])
	case 2, 3:
		b.WriteString(genNumbers[g.r.IntN(len(genNumbers))])
	case 4, 5, 6:
		g.str(b)
	case 7, 8:
		b.WriteByte('[')
		g.ws(b)
		for i, n := 0, g.r.IntN(5); i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
				g.ws(b)
			}
			g.value(b, depth+1)
			g.ws(b)
		}
		b.WriteByte(']')
	case 9:
		b.WriteByte('{')
		g.ws(b)
		for i, n := 0, g.r.IntN(5); i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
				g.ws(b)
			}
			g.str(b)
			g.ws(b)
			b.WriteByte(':')
			g.ws(b)
			g.value(b, depth+1)
			g.ws(b)
		}
		b.WriteByte('}')
	}
}

func (g jsonGen) str(b *strings.Builder) {
	b.WriteByte('"')
	for i, n := 0, g.r.IntN(6); i < n; i++ {
		b.WriteString(genStringPieces[g.r.IntN(len(genStringPieces))])
	}
	b.WriteByte('"')
}

func decodeJSONNumber(t *testing.T, data []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	return v
}

func TestFrameJSONRoundTrip(t *testing.T) {
	g := jsonGen{rand.New(rand.NewPCG(1, 2))}
	iters := 5000
	if testing.Short() {
		iters = 500
	}
	var stored []byte
	total := 0
	for it := 0; it < iters; it++ {
		var b strings.Builder
		g.ws(&b)
		g.value(&b, 0)
		g.ws(&b)
		body := []byte(b.String())
		if !json.Valid(body) {
			t.Fatalf("generator produced invalid JSON %q", body)
		}
		want := decodeJSONNumber(t, body)
		wantList, isArr := want.([]any)
		if !isArr {
			wantList = []any{want}
		}
		out, n, err := FrameJSON(nil, body, false)
		if isArr && len(wantList) == 0 {
			if err != ErrEmptyJSONArray {
				t.Fatalf("FrameJSON(%q): %v, want ErrEmptyJSONArray", body, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("FrameJSON(%q): %v", body, err)
		}
		if n != len(wantList) {
			t.Fatalf("FrameJSON(%q) n = %d, want %d", body, n, len(wantList))
		}
		got := decodeJSONNumber(t, wrapStored(out))
		if !reflect.DeepEqual(got, wantList) {
			t.Fatalf("round trip of %q:\n got  %#v\n want %#v", body, got, wantList)
		}
		checkStored(t, out, n)

		// Appending many bodies to one buffer keeps the invariants.
		stored, _, err = FrameJSON(stored, body, false)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	checkStored(t, stored, total)
}

func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

func TestFrameJSONAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("sync.Pool (used by sonic) drops items at random under -race")
	}
	bodies := [][]byte{smallJSONBody(), batchJSONBody(10), []byte(`"x"`), []byte(`[1, 2, 3]`)}
	dst := make([]byte, 0, 4096)
	for _, body := range bodies {
		FrameJSON(dst, body, false) // warm sonic's pool
		allocs := testing.AllocsPerRun(100, func() {
			if _, _, err := FrameJSON(dst[:0], body, false); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("FrameJSON(%d-byte body) allocates %v times per call", len(body), allocs)
		}
	}
	stored, _, _ := FrameJSON(nil, batchJSONBody(10), false)
	if a := testing.AllocsPerRun(100, func() { JSONMessageEnd(stored) }); a != 0 {
		t.Errorf("JSONMessageEnd allocates %v times per call", a)
	}
}

// smallJSONBody is a ~100-byte pretty-printed object.
func smallJSONBody() []byte {
	return []byte(`{"event": "created", "id": 1234567, "user": {"name": "Zoë", "tags": ["a", "b"]}, "ok": true}`)
}

func batchJSONBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `  {"event": "created", "id": %7d, "user": {"name": "Zoë", "tags": ["a", "b"]}, "ok": true}`, 1000000+i)
	}
	b.WriteString("\n]")
	return b.Bytes()
}

func BenchmarkFrameJSONSmall(b *testing.B) {
	body := smallJSONBody()
	dst := make([]byte, 0, 2*len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, _, err = FrameJSON(dst[:0], body, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFrameJSONBatch(b *testing.B) {
	body := batchJSONBody(10)
	dst := make([]byte, 0, 2*len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, _, err = FrameJSON(dst[:0], body, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONMessageEnd(b *testing.B) {
	stored, n, err := FrameJSON(nil, batchJSONBody(10), false)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(stored)))
	b.ReportAllocs()
	for b.Loop() {
		c := 0
		for p := stored; len(p) > 0; c++ {
			p = p[JSONMessageEnd(p):]
		}
		if c != n {
			b.Fatal(c)
		}
	}
}
