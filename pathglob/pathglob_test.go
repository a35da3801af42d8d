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
