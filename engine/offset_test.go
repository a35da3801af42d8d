package engine

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestOffsetString(t *testing.T) {
	tests := []struct {
		o    Offset
		want string
	}{
		{0, "0000000000000000_0000000000000000"},
		{1, "0000000000000000_0000000000000001"},
		{42, "0000000000000000_0000000000000042"},
		{9_999_999_999_999_999, "0000000000000000_9999999999999999"},
		{10_000_000_000_000_000, "0000000000000001_0000000000000000"},
		{10_000_000_000_000_001, "0000000000000001_0000000000000001"},
		{123_456_789_012_345_678, "0000000000000012_3456789012345678"},
		{math.MaxUint64, "0000000000001844_6744073709551615"},
	}
	for _, tc := range tests {
		got := tc.o.String()
		if got != tc.want {
			t.Errorf("Offset(%d).String() = %q, want %q", uint64(tc.o), got, tc.want)
		}
		if len(got) != OffsetLen {
			t.Errorf("Offset(%d).String() has length %d, want %d", uint64(tc.o), len(got), OffsetLen)
		}
		if app := string(tc.o.AppendTo([]byte("x"))); app != "x"+tc.want {
			t.Errorf("Offset(%d).AppendTo = %q", uint64(tc.o), app)
		}
		back, err := ParseOffset(tc.want)
		if err != nil || back != tc.o {
			t.Errorf("ParseOffset(%q) = %d, %v; want %d", tc.want, uint64(back), err, uint64(tc.o))
		}
	}
}

func TestParseOffsetRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 42, 1e16, 1e16 - 1, 1e16 + 1, 1 << 32, 1 << 63, math.MaxUint64 - 1, math.MaxUint64} {
		o := Offset(v)
		s := o.String()
		got, err := ParseOffset(s)
		if err != nil {
			t.Fatalf("ParseOffset(%q): %v", s, err)
		}
		if got != o || got.String() != s {
			t.Fatalf("round trip of %d: got %d (%q)", v, uint64(got), got.String())
		}
	}
}

func TestParseOffsetInvalid(t *testing.T) {
	valid := "0000000000000000_0000000000000042"
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"sentinel -1", "-1"},
		{"sentinel now", "now"},
		{"plain number", "42"},
		{"too short", valid[1:]},
		{"too long", valid + "0"},
		{"too long leading", "0" + valid},
		{"one part", "00000000000000000000000000000042"},
		{"33 digits no underscore", "000000000000000000000000000000042"},
		{"missing underscore", strings.Replace(valid, "_", "0", 1)},
		{"underscore early", "000000000000000_00000000000000042"},
		{"underscore late", "00000000000000000_000000000000042"},
		{"two underscores", "0000000000000000_000000000000_042"},
		{"dash separator", "0000000000000000-0000000000000042"},
		{"non-digit hi", "000000000000000a_0000000000000042"},
		{"non-digit lo", "0000000000000000_000000000000004x"},
		{"plus sign hi", "+000000000000000_0000000000000042"},
		{"plus sign lo", "0000000000000000_+000000000000042"},
		{"minus sign", "-000000000000000_0000000000000042"},
		{"leading space", " 000000000000000_0000000000000042"},
		{"trailing space", "0000000000000000_000000000000004 "},
		{"inner space", "0000000000000000_0000000 0000042"},
		{"trailing newline", "0000000000000000_000000000000004\n"},
		{"NUL", "0000000000000000_000000000000004\x00"},
		{"unicode digit", "00000000000000\u0661_0000000000000042"},   // U+0661 is 2 bytes: length 33
		{"full-width digit", "0000000000000000_0000000000000\uff10"}, // U+FF10 is 3 bytes: length 33
		{"overflow by one", "0000000000001844_6744073709551616"},
		{"overflow lo", "0000000000001844_9999999999999999"},
		{"overflow hi", "0000000000001845_0000000000000000"},
		{"overflow max", "9999999999999999_9999999999999999"},
	}
	for _, tc := range tests {
		o, err := ParseOffset(tc.in)
		if !errors.Is(err, ErrBadOffset) {
			t.Errorf("%s: ParseOffset(%q) = %d, %v; want ErrBadOffset", tc.name, tc.in, uint64(o), err)
		}
		if _, err := ParseReadOffset(tc.in); tc.in != "" && tc.in != "-1" && tc.in != "now" && !errors.Is(err, ErrBadOffset) {
			t.Errorf("%s: ParseReadOffset(%q) err = %v; want ErrBadOffset", tc.name, tc.in, err)
		}
	}
}

func TestParseReadOffset(t *testing.T) {
	tests := []struct {
		in   string
		want ReadFrom
		err  bool
	}{
		{"", ReadFrom{Kind: FromStart}, false},
		{"-1", ReadFrom{Kind: FromStart}, false},
		{"now", ReadFrom{Kind: FromNow}, false},
		{"0000000000000000_0000000000000000", ReadFrom{Kind: FromOffset, Offset: 0}, false},
		{"0000000000000000_0000000000000042", At(42), false},
		{"0000000000001844_6744073709551615", At(math.MaxUint64), false},
		{"-2", ReadFrom{}, true},
		{"NOW", ReadFrom{}, true},
		{"Now", ReadFrom{}, true},
		{" now", ReadFrom{}, true},
		{"now ", ReadFrom{}, true},
		{"-1 ", ReadFrom{}, true},
		{"-01", ReadFrom{}, true},
		{"0", ReadFrom{}, true},
		{"42", ReadFrom{}, true},
		{"abc", ReadFrom{}, true},
		{"0000000000000000_000000000000004", ReadFrom{}, true},
		{"9999999999999999_9999999999999999", ReadFrom{}, true},
	}
	for _, tc := range tests {
		got, err := ParseReadOffset(tc.in)
		if tc.err {
			if !errors.Is(err, ErrBadOffset) {
				t.Errorf("ParseReadOffset(%q) = %+v, %v; want ErrBadOffset", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseReadOffset(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if At(7) != (ReadFrom{Offset: 7, Kind: FromOffset}) {
		t.Errorf("At(7) = %+v", At(7))
	}
}

// TestOffsetOrder checks that the wire form sorts like the number.
func TestOffsetOrder(t *testing.T) {
	pairs := [][2]uint64{
		{0, 1},
		{9, 10},
		{99, 100},
		{42, 1000},
		{9_999_999_999_999_999, 10_000_000_000_000_000},
		{10_000_000_000_000_000, 10_000_000_000_000_001},
		{19_999_999_999_999_999, 20_000_000_000_000_000},
		{1 << 32, 1 << 33},
		{1 << 63, math.MaxUint64},
		{math.MaxUint64 - 1, math.MaxUint64},
	}
	for _, p := range pairs {
		a, b := Offset(p[0]).String(), Offset(p[1]).String()
		if !(a < b) {
			t.Errorf("%d < %d but %q >= %q", p[0], p[1], a, b)
		}
		if strings.Compare(b, a) != 1 {
			t.Errorf("%q should sort after %q", b, a)
		}
	}
	// The sentinels never collide with a wire offset.
	for _, s := range []string{"-1", "now"} {
		if _, err := ParseOffset(s); err == nil {
			t.Errorf("ParseOffset(%q) succeeded", s)
		}
	}
}
