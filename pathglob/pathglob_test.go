package pathglob

import (
	"regexp"
	"strings"
	"testing"
)

// ref is a plain recursive reference for Pattern.Match.
func ref(p Pattern, segs []string) bool {
	if len(p) == 0 {
		return len(segs) == 0
	}
	if p[0].Any {
		for i := 0; i <= len(segs); i++ {
			if ref(p[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	return len(segs) > 0 && p[0].Glob.Match(segs[0]) && ref(p[1:], segs[1:])
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pat string
		yes []string
		no  []string
	}{
		{"logs/**", []string{"logs", "logs/a", "logs/a/b/c"}, []string{"log", "logsx", "x/logs", "logs-a/b"}},
		{"chat/*", []string{"chat/1", "chat/abc"}, []string{"chat", "chat/1/2", "chats/1"}},
		{"chat-*/in", []string{"chat-/in", "chat-42/in"}, []string{"chat/in", "chat-4/2/in"}},
		{"**", []string{"a", "a/b"}, nil},
		{"a/**/b", []string{"a/b", "a/x/b", "a/x/y/b"}, []string{"a", "b", "a/x", "a/b/x"}},
		{"*/*", []string{"a/b"}, []string{"a", "a/b/c"}},
		{"exact/path", []string{"exact/path"}, []string{"exact", "exact/path/x", "exact/pat"}},
	}
	for _, c := range cases {
		p, err := Parse(c.pat)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.pat, err)
		}
		for _, s := range c.yes {
			if !p.MatchPath(s) {
				t.Errorf("%q does not match %q", c.pat, s)
			}
		}
		for _, s := range c.no {
			if p.MatchPath(s) {
				t.Errorf("%q matches %q", c.pat, s)
			}
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", "a//b", "/a", "a/", "a/../b", "./a", "a**", "x/a**b"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

// TestGlobAgainstRegexp checks Glob.Match against regexp on small
// strings.
func TestGlobAgainstRegexp(t *testing.T) {
	pats := []string{"", "*", "a", "a*", "*a", "a*b", "*a*", "a*a", "a*b*a", "**", "ab*ba", "*ab*"}
	alphabet := []string{"", "a", "b", "aa", "ab", "ba", "bb", "aba", "abba", "abab", "aab", "baa", "ababa"}
	for _, p := range pats {
		g := ParseGlob(p)
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(p), `\*`, ".*") + "$")
		for _, s := range alphabet {
			if got, want := g.Match(s), re.MatchString(s); got != want {
				t.Errorf("glob %q on %q = %v, want %v", p, s, got, want)
			}
		}
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("a/**/b/*", "a/x/b/y")
	f.Add("**/a*b/**", "q/ab/r")
	f.Fuzz(func(t *testing.T, pat, path string) {
		p, err := Parse(pat)
		if err != nil {
			return
		}
		segs := strings.Split(path, "/")
		if len(segs) > 12 || len(p) > 12 {
			return // the reference is exponential
		}
		if got, want := p.Match(segs), ref(p, segs); got != want {
			t.Fatalf("%q on %q: %v, reference %v", pat, path, got, want)
		}
	})
}

func TestCovers(t *testing.T) {
	cases := []struct {
		grant, pat string
		want       bool
	}{
		// one segment: * against globs
		{"*", "*", true},
		{"*", "a*", true},
		{"*", "a", true},
		{"a*", "*", false},
		{"a*", "ab*", true},
		{"ab*", "a*", false},
		{"a*b", "a*", false},
		{"*a*", "*a", true},
		{"*a", "*a*", false},
		{"a*c", "a*b*c", true},
		{"a*b*c", "a*c", false},
		{"a*a", "a*", false},
		{"a", "a*", false},
		// * is one segment, ** any number (also none)
		{"*", "**", false},
		{"**", "**", true},
		{"**", "a", true},
		{"**", "a/b/**", true},
		{"a/*", "a/**", false},  // a and a/b/c
		{"a/**", "a/*", true},   // a/** includes a/x
		{"a/**", "a", true},     // ** may be empty
		{"a/**", "a/b/c", true}, // ...or many
		{"a/*/**", "a/**", false},
		{"a/**", "**", false},
		{"logs/*", "logs/**", false},
		{"logs/**", "logs/app-*/x", true},
		{"logs/app-*/**", "logs/*/x", false},
		// the same language written differently
		{"*/**", "**", true}, // no path has zero segments
		{"**/*", "*/**", true},
		{"*/**", "**/*", true},
		{"**/**", "a/**", true},
		{"*/*/**", "**/*/*", true},
		{"*/*/**", "*/**", false},
		// ** in the middle
		{"**/a", "**", false},
		{"**/a", "**/a", true},
		{"**/a", "b/**/a", true},
		{"**/a/**", "x/a/**/y", true},
		{"**/a/**", "x/**/y", false},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/**/c/b", true},
		{"a/**/b", "a/**", false},
		{"a/**/a", "a", false},
		{"**/b/**", "**/b*/**", false},
		{"**/b*/**", "**/b/**", true},
		{"x/**/y/**", "x/y/y", true},
	}
	for _, c := range cases {
		g, err := Parse(c.grant)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(c.pat)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Covers(p); got != c.want {
			t.Errorf("Parse(%q).Covers(%q) = %v, want %v", c.grant, c.pat, got, c.want)
		}
	}
}

// TestCoversAgainstEnumeration: Covers agrees with checking every path of
// up to six segments. The segment values include the text of each glob
// ("a*", "*b") and "*": the strings that stand for all the others.
func TestCoversAgainstEnumeration(t *testing.T) {
	vals := []string{"a", "b", "*", "a*", "*b"}
	var paths [][]string
	var grow func(p []string)
	grow = func(p []string) {
		if len(p) > 0 {
			paths = append(paths, p)
		}
		if len(p) == 6 {
			return
		}
		for _, v := range vals {
			grow(append(append([]string(nil), p...), v))
		}
	}
	grow(nil)
	segs := []string{"a", "b", "*", "a*", "*b", "**"}
	seen := map[string]bool{}
	var pats []Pattern
	var raws []string
	for n := 1; n <= 3; n++ {
		var gen func(prefix []string)
		gen = func(prefix []string) {
			if len(prefix) == n {
				raw := strings.Join(prefix, "/")
				if !seen[raw] {
					seen[raw] = true
					p, _ := Parse(raw)
					pats, raws = append(pats, p), append(raws, raw)
				}
				return
			}
			for _, s := range segs {
				gen(append(append([]string(nil), prefix...), s))
			}
		}
		gen(nil)
	}
	match := make([][]bool, len(pats))
	for i, p := range pats {
		match[i] = make([]bool, len(paths))
		for j, path := range paths {
			match[i][j] = ref(p, path)
		}
	}
	for i, g := range pats {
		for k, q := range pats {
			want := true
			for j := range paths {
				if match[k][j] && !match[i][j] {
					want = false
					break
				}
			}
			if got := g.Covers(q); got != want {
				t.Fatalf("Parse(%q).Covers(%q) = %v, enumeration says %v", raws[i], raws[k], got, want)
			}
		}
	}
}

// TestCoversBounded: a long grant and pattern full of ** finish (with an
// answer either way) rather than explode.
func TestCoversBounded(t *testing.T) {
	var gs, qs []string
	for i := range 200 {
		gs = append(gs, "**", "*a*")
		qs = append(qs, "**", []string{"a", "ba", "*a"}[i%3])
	}
	g, err := Parse(strings.Join(gs, "/"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(strings.Join(qs, "/"))
	if err != nil {
		t.Fatal(err)
	}
	g.Covers(q)
	if !g.Covers(g) {
		t.Error("a pattern does not cover itself")
	}
}
