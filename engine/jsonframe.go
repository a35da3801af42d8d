package engine

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/bytedance/sonic"
)

// JSON framing for JSON-mode streams.
//
// A JSON stream stores every message in compact form (no insignificant
// whitespace) followed by a single ','. A read of the stored bytes [a,b),
// where a and b are message boundaries, is therefore served as
//
//	'[' + stored[a:b-1] + ']'
//
// (the last comma dropped) without decoding or re-encoding anything.
//
// # What is accepted
//
// A body is accepted only if it is exactly one JSON value (RFC 8259) with
// optional surrounding whitespace, and additionally:
//
//   - every string is valid UTF-8 (no invalid or truncated sequences, no
//     overlong encodings, no UTF-16 surrogate halves encoded in UTF-8).
//     encoding/json itself accepts such strings and silently replaces the bad
//     bytes with U+FFFD when decoding; we reject them instead, because the
//     stored bytes are served verbatim and must be clean UTF-8;
//   - strings contain no raw control characters (< 0x20) and only the escapes
//     \" \\ \/ \b \f \n \r \t \uXXXX. Escaped surrogates such as "\ud800" are
//     valid JSON text and are kept byte-exact;
//   - nesting is at most MaxJSONDepth levels deep, counting the top-level
//     array of a batch.
//
// Anything accepted is stored so that '[' + stored + ']' (last comma dropped)
// is valid per encoding/json. The fast structural check is sonic's validator;
// sonic does not look inside strings at all (it accepts raw control
// characters, invalid escapes such as \x or \u12, and invalid UTF-8), so the
// compacting pass validates string contents itself.
//
// sonic (v1.15.5) also has an out-of-bounds read: for a body shorter than 4
// bytes that holds a truncated literal, it compares a 4-byte word that runs
// past len(body) (in native/scanning.h advance_dword, `src->len + dec - 4` is
// computed in size_t and wraps). "n", "nu", "t", "tr", "f", "fa", "fal" (and
// the same with leading spaces) are then reported valid whenever the bytes
// after the slice happen to complete the literal. Bodies that short never
// reach sonic; see validJSON.

// MaxJSONDepth is the deepest nesting of arrays and objects accepted in a
// JSON body, counting the top-level array of a batch. It is below the limits
// of both sonic (about 4096) and encoding/json (10000), so that the limit is
// ours and documented rather than an accident of either validator.
const MaxJSONDepth = 4000

// FrameJSON validates body as one JSON value and appends its stored form to dst.
// If the top-level value is an array, exactly one level is flattened: each element is a message
// (e.g. `[{"a":1}, {"b":2}]` -> `{"a":1},{"b":2},`; `[[1,2],[3,4]]` -> `[1,2],[3,4],`; `[[[1,2,3]]]` -> `[[1,2,3]],`).
// Otherwise the value itself is one message (`{"event": "created"}` -> `{"event":"created"},`; also scalars: `5` -> `5,`, `"x"` -> `"x",`).
// Each message is compacted: whitespace outside strings removed, string contents (including escapes and UTF-8) kept byte-exact.
// An empty array `[]` (with any whitespace inside) returns ErrEmptyJSONArray unless allowEmpty (then it appends nothing, count 0).
// Invalid JSON (including empty/whitespace-only body, trailing garbage, two top-level values) returns a *JSONError with a short human message (e.g. "unexpected end of input", "invalid character 'x' at byte 12").
// Returns the extended dst and the number of messages appended. On error dst is returned unchanged (same length).
//
// See the comment at the top of this file for the exact acceptance rules
// (strict UTF-8, no control characters in strings, nesting limit). On error,
// bytes of dst's spare capacity beyond len(dst) may have been overwritten.
// Apart from growing dst, FrameJSON does not allocate on success.
func FrameJSON(dst, body []byte, allowEmpty bool) ([]byte, int, error) {
	if !validJSON(body) {
		return dst, 0, invalidJSONError(body)
	}
	// body is one syntactically valid value (strings aside). Detect the empty
	// top-level array before writing anything.
	i := skipJSONSpace(body, 0)
	if i < len(body) && body[i] == '[' {
		if j := skipJSONSpace(body, i+1); j < len(body) && body[j] == ']' {
			if allowEmpty {
				return dst, 0, nil
			}
			return dst, 0, ErrEmptyJSONArray
		}
	}
	out, n, err := appendFramed(dst, body, i)
	if err != nil {
		return dst, 0, err
	}
	return out, n, nil
}

// validJSON is the fast structural check: sonic for all but tiny bodies.
// Bodies under 4 bytes go to encoding/json instead, to avoid sonic's
// out-of-bounds read on truncated literals (see above).
func validJSON(body []byte) bool {
	if len(body) < 4 {
		return json.Valid(body)
	}
	return sonic.ConfigStd.Valid(body)
}

// appendFramed is the single compact-and-split pass over body, whose value
// starts at i. body is expected to have passed validJSON; number and literal
// grammar and ':' placement are left to it. The pass itself checks string
// contents (which sonic does not), bracket matching, the nesting limit, empty
// elements and bytes after the top-level value, so that the message count
// and boundaries are right and it never panics, whatever the input.
func appendFramed(dst, body []byte, i int) ([]byte, int, error) {
	if i >= len(body) {
		return dst, 0, &JSONError{Msg: "unexpected end of input"}
	}
	// kinds records, per nesting level, whether the container is an object.
	var kinds [(MaxJSONDepth + 63) / 64]uint64
	depth := 0
	batch := body[i] == '['
	n := 1
	if batch {
		// The top-level '[' is dropped; its elements are the messages.
		depth = 1
		i++
	}
	start := i // start of the pending run of bytes to copy verbatim
	// prev is the previous significant byte ('"' for a whole string). It is
	// only used to refuse empty elements such as "[1,,2]", which would yield
	// an empty stored message.
	prev := byte('[')
	for i < len(body) {
		c := body[i]
		if jsonPlain[c] {
			// Run of number/literal bytes or ':' (the common case).
			for i++; i < len(body) && jsonPlain[body[i]]; i++ {
			}
			prev = body[i-1]
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			dst = append(dst, body[start:i]...)
			i = skipJSONSpace(body, i+1)
			start = i
			if depth == 0 && i < len(body) {
				// A top-level scalar followed by whitespace and more bytes.
				return dst, 0, syntaxErrorAt(body, i, "after top-level value")
			}
			continue
		case '"':
			j, err := scanJSONString(body, i+1)
			if err != nil {
				return dst, 0, err
			}
			i, prev = j, '"'
			if depth == 0 && i < len(body) && !isJSONSpace(body[i]) {
				return dst, 0, syntaxErrorAt(body, i, "after top-level value")
			}
			continue
		case '[', '{':
			if depth >= MaxJSONDepth {
				return dst, 0, depthError()
			}
			w, b := depth>>6, uint64(1)<<(depth&63)
			if c == '{' {
				kinds[w] |= b
			} else {
				kinds[w] &^= b
			}
			depth++
		case ']', '}':
			d := depth - 1
			if d < 0 || prev == ',' || prev == ':' ||
				(kinds[d>>6]&(uint64(1)<<(d&63)) != 0) != (c == '}') {
				return dst, 0, syntaxErrorAt(body, i, "looking for beginning of value")
			}
			depth = d
			if depth == 0 {
				if batch {
					// The top-level ']' is dropped and replaced by the
					// trailing comma of the last message.
					dst = append(dst, body[start:i]...)
				} else {
					dst = append(dst, body[start:i+1]...)
				}
				dst = append(dst, ',')
				if j := skipJSONSpace(body, i+1); j < len(body) {
					return dst, 0, syntaxErrorAt(body, j, "after top-level value")
				}
				return dst, n, nil
			}
		case ',':
			if depth == 0 || prev == ',' || prev == '[' || prev == '{' || prev == ':' {
				return dst, 0, syntaxErrorAt(body, i, "looking for beginning of value")
			}
			if batch && depth == 1 {
				n++ // this comma ends a message and is kept as its terminator
			}
		}
		prev = c
		i++
	}
	if depth != 0 {
		return dst, 0, &JSONError{Msg: "unexpected end of input"}
	}
	// A top-level scalar (number or literal) that ran to the end of body.
	dst = append(dst, body[start:]...)
	return append(dst, ','), n, nil
}

// scanJSONString validates the string whose opening quote is at i-1 and
// returns the index just past its closing quote.
func scanJSONString(body []byte, i int) (int, error) {
	for {
		for i < len(body) && jsonStrSafe[body[i]] {
			i++
		}
		if i >= len(body) {
			return 0, &JSONError{Msg: "unexpected end of input"}
		}
		c := body[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(body) {
				return 0, &JSONError{Msg: "unexpected end of input"}
			}
			switch body[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for k := i + 2; k < i+6; k++ {
					if k >= len(body) {
						return 0, &JSONError{Msg: "unexpected end of input"}
					}
					if !isHex(body[k]) {
						return 0, syntaxErrorAt(body, k, "in \\u hexadecimal character escape")
					}
				}
				i += 6
			default:
				return 0, syntaxErrorAt(body, i+1, "in string escape code")
			}
		case c < 0x20:
			return 0, syntaxErrorAt(body, i, "in string literal")
		default: // c >= 0x80
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, &JSONError{Msg: "invalid UTF-8 in string at byte " + strconv.Itoa(i)}
			}
			i += size
		}
	}
}

// JSONMessageEnd returns the length of the first stored message in b including its trailing ',', i.e. the position of the next message, or -1 if b does not start with a complete stored message. b is stored-form bytes (compact values each followed by ','). It must be correct for commas inside strings/objects/arrays and escaped quotes.
func JSONMessageEnd(b []byte) int {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i++
			for {
				for i < len(b) && b[i] != '"' && b[i] != '\\' {
					i++
				}
				if i >= len(b) {
					return -1
				}
				if b[i] == '"' {
					break
				}
				i += 2 // backslash and the escaped byte
			}
		case '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth < 0 {
				return -1
			}
		case ',':
			if depth == 0 {
				if i == 0 {
					return -1 // an empty message is never stored
				}
				return i + 1
			}
		}
	}
	return -1
}

// jsonStrSafe marks bytes that may appear in a string without further
// checks: printable ASCII other than '"' and '\\'.
var jsonStrSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// jsonPlain marks bytes that the framing pass copies without looking at
// them: everything but whitespace, '"', ',' and brackets.
var jsonPlain = func() (t [256]bool) {
	for c := range t {
		switch c {
		case ' ', '\t', '\n', '\r', '"', ',', '[', ']', '{', '}':
		default:
			t[c] = true
		}
	}
	return t
}()

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func depthError() error {
	return &JSONError{Msg: "exceeded maximum nesting depth of " + strconv.Itoa(MaxJSONDepth)}
}

// syntaxErrorAt builds "invalid character 'c' <context> at byte i".
func syntaxErrorAt(body []byte, i int, context string) error {
	return &JSONError{Msg: "invalid character " + quoteJSONChar(body[i]) + " " + context + " at byte " + strconv.Itoa(i)}
}

// quoteJSONChar formats c like encoding/json does in its syntax errors.
func quoteJSONChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string([]byte{c})) // bytes >= 0x80 print as \xNN
	return "'" + s[1:len(s)-1] + "'"
}

// invalidJSONError explains why sonic rejected body. It runs only on the
// error path, so it may allocate; encoding/json supplies the message.
func invalidJSONError(body []byte) error {
	var raw json.RawMessage
	err := json.Unmarshal(body, &raw)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		msg := se.Error()
		if msg == "unexpected end of JSON input" {
			return &JSONError{Msg: "unexpected end of input"}
		}
		if se.Offset > 0 {
			msg += " at byte " + strconv.FormatInt(se.Offset-1, 10)
		}
		return &JSONError{Msg: msg}
	}
	if err != nil {
		return &JSONError{Msg: err.Error()}
	}
	// encoding/json accepts what sonic rejected. The only known case is
	// nesting deeper than sonic's limit (about 4096 levels), which is above
	// MaxJSONDepth anyway.
	if jsonNestingDepth(body) > MaxJSONDepth {
		return depthError()
	}
	return &JSONError{Msg: "rejected by the JSON validator"}
}

// jsonNestingDepth returns the maximum nesting depth of b (error path only).
func jsonNestingDepth(b []byte) int {
	depth, max := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			depth++
			if depth > max {
				max = depth
			}
		case ']', '}':
			depth--
		}
	}
	return max
}
