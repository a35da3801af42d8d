package engine

import "strconv"

// Offset is a position in a stream, in wire bytes: the number of stored bytes
// before it. On the wire it is printed as 32 decimal digits split 16_16, so
// that string order is numeric order and "-1"/"now" can never be minted.
type Offset uint64

// OffsetLen is the length of an offset's wire form.
const OffsetLen = 33

const tenPow16 = 10_000_000_000_000_000

// String returns the fixed-width wire form, e.g. 0000000000000000_0000000000000042.
func (o Offset) String() string {
	var b [OffsetLen]byte
	return string(o.appendTo(b[:0]))
}

// AppendTo appends the wire form of o to dst.
func (o Offset) AppendTo(dst []byte) []byte { return o.appendTo(dst) }

func (o Offset) appendTo(dst []byte) []byte {
	hi, lo := uint64(o)/tenPow16, uint64(o)%tenPow16
	dst = appendPadded(dst, hi)
	dst = append(dst, '_')
	return appendPadded(dst, lo)
}

func appendPadded(dst []byte, v uint64) []byte {
	var d [16]byte
	for i := 15; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, d[:]...)
}

// ParseOffset parses the wire form strictly: exactly 16 digits, '_', 16
// digits, and a value that fits in 64 bits. Sentinels are not offsets; see
// ParseReadOffset.
func ParseOffset(s string) (Offset, error) {
	if len(s) != OffsetLen || s[16] != '_' {
		return 0, ErrBadOffset
	}
	hi, ok1 := parseDigits(s[:16])
	lo, ok2 := parseDigits(s[17:])
	if !ok1 || !ok2 {
		return 0, ErrBadOffset
	}
	// hi*1e16+lo must fit in a uint64 (max 18446744073709551615).
	if hi > 1844 || (hi == 1844 && lo > 6744073709551615) {
		return 0, ErrBadOffset
	}
	return Offset(hi*tenPow16 + lo), nil
}

func parseDigits(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// ReadFrom says where a read starts: at an offset, at the stream's start
// (the "-1" sentinel) or at its current tail (the "now" sentinel).
type ReadFrom struct {
	Offset Offset
	Kind   ReadFromKind
}

// ReadFromKind distinguishes a concrete offset from the two sentinels.
type ReadFromKind uint8

const (
	FromOffset ReadFromKind = iota
	FromStart               // "-1"
	FromNow                 // "now"
)

// ParseReadOffset parses a read request's offset: "-1", "now", or a wire
// offset. The empty string means the start, as when the parameter is absent.
func ParseReadOffset(s string) (ReadFrom, error) {
	switch s {
	case "", "-1":
		return ReadFrom{Kind: FromStart}, nil
	case "now":
		return ReadFrom{Kind: FromNow}, nil
	}
	o, err := ParseOffset(s)
	if err != nil {
		return ReadFrom{}, err
	}
	return ReadFrom{Offset: o}, nil
}

// At returns a ReadFrom for a concrete offset.
func At(o Offset) ReadFrom { return ReadFrom{Offset: o} }

// formatUint is strconv.FormatUint for base 10, named for readability.
func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }
