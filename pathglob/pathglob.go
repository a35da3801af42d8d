// Package pathglob matches slash-separated paths against glob patterns: in
// a segment, * matches any run of characters other than / (a whole segment
// or a part of one: chat-*), and a segment of ** matches any number of
// segments, including none (logs/** matches logs, logs/a and logs/a/b). It
// is shared by the upstream allowlist (package fetch) and stream grants
// (package auth). Callers split and validate paths themselves: the matcher
// sees segments, so a / can never be matched by *.
package pathglob

import (
	"errors"
	"fmt"
	"strings"
)

// Glob is one segment pattern with * wildcards, stored as the literal parts
// between them: "a*b*c" is {"a","b","c"}; a string without * is one part.
type Glob []string

// ParseGlob splits s on its * wildcards. ** is not a Glob (see Segment).
func ParseGlob(s string) Glob { return strings.Split(s, "*") }

// Match reports whether s matches g.
func (g Glob) Match(s string) bool {
	if len(g) == 1 {
		return s == g[0]
	}
	first, last := g[0], g[len(g)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) || !strings.HasSuffix(s, last) {
		return false
	}
	s = s[len(first) : len(s)-len(last)]
	// Leftmost matching of each middle part is optimal: taking a later
	// occurrence never leaves more room for the parts after it.
	for _, mid := range g[1 : len(g)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return true
}

// Literal reports whether g has no wildcard.
func (g Glob) Literal() bool { return len(g) == 1 }

// Segment is one segment of a path pattern: ** (Any) or a Glob.
type Segment struct {
	Any  bool
	Glob Glob
}

// Pattern is a parsed path pattern.
type Pattern []Segment

// ParseSegment parses one segment; ** must be a whole segment.
func ParseSegment(s string) (Segment, error) {
	if s == "**" {
		return Segment{Any: true}, nil
	}
	if strings.Contains(s, "**") {
		return Segment{}, fmt.Errorf("** must be a whole path segment, not part of %q", s)
	}
	return Segment{Glob: ParseGlob(s)}, nil
}

// Parse parses a pattern of /-separated segments (no leading /): empty
// segments, . and .. are refused.
func Parse(s string) (Pattern, error) {
	if s == "" {
		return nil, errors.New("empty pattern")
	}
	raw := strings.Split(s, "/")
	p := make(Pattern, 0, len(raw))
	for _, r := range raw {
		switch r {
		case "":
			return nil, fmt.Errorf("pattern %q has an empty segment", s)
		case ".", "..":
			return nil, fmt.Errorf("pattern %q has a %s segment", s, r)
		}
		seg, err := ParseSegment(r)
		if err != nil {
			return nil, err
		}
		p = append(p, seg)
	}
	return p, nil
}

// Match reports whether the path segments segs match p. This is the
// classic greedy wildcard match with one-step backtracking: on a mismatch,
// the most recent ** absorbs one more segment and matching resumes after
// it. Backtracking to the most recent ** only is enough, because anything
// an earlier ** could absorb the later one can absorb too.
func (p Pattern) Match(segs []string) bool {
	pi, si := 0, 0
	star, starSi := -1, 0
	for si < len(segs) {
		switch {
		case pi < len(p) && p[pi].Any:
			star, starSi = pi, si
			pi++
		case pi < len(p) && p[pi].Glob.Match(segs[si]):
			pi++
			si++
		case star >= 0:
			starSi++
			pi, si = star+1, starSi
		default:
			return false
		}
	}
	for pi < len(p) && p[pi].Any {
		pi++
	}
	return pi == len(p)
}

// MatchPath reports whether the /-separated path matches p.
func (p Pattern) MatchPath(path string) bool { return p.Match(strings.Split(path, "/")) }
