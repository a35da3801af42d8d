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

// Covers reports whether p matches every path that q matches: whether a
// grant of p allows all that a pattern q can reach. It is exact.
//
// Two facts make it decidable by walking q once. A glob G matches every
// string a glob g matches exactly when G matches the text of g with its *s
// read as characters: G has no literal *, so its literal parts can only
// fall on literal parts of g, and its *s take the rest; and that text is
// itself one of g's strings. So the text of each segment of q stands for
// all its strings, and "*" for the any-string segments of a **. Walking p
// as an automaton over such segments gives, for each choice of how many
// segments each ** of q takes, the set of p's positions that every path of
// that shape reaches; q is covered when each of these sets reaches p's
// end. The sets a ** yields stop changing after len(p)+1 segments, and
// only the minimal sets matter (more positions never match less).
func (p Pattern) Covers(q Pattern) bool {
	if allAny(q) { // ** alone matches no segments, which no path is
		q = Pattern{{Glob: Glob{"", ""}}, {Any: true}}
	}
	start := newPosSet(len(p))
	start.add(0)
	family := []posSet{p.closure(start)}
	budget := coverBudget
	for _, seg := range q {
		var next []posSet
		if seg.Any {
			for _, s := range family {
				for range len(p) + 2 {
					next = insertMinimal(next, s, &budget)
					t := p.step("*", s)
					if t.equal(s) {
						break
					}
					s = t
				}
			}
		} else {
			text := strings.Join(seg.Glob, "*")
			for _, s := range family {
				next = insertMinimal(next, p.step(text, s), &budget)
			}
		}
		if budget < 0 {
			return false // a pathological pair: refuse rather than spend
		}
		family = next
	}
	for _, s := range family {
		if !s.has(len(p)) {
			return false
		}
	}
	return true
}

// coverBudget bounds the set comparisons of one Covers; real grants and
// patterns need a few dozen.
const coverBudget = 1 << 20

// insertMinimal adds s to the antichain sets unless a set there is a
// subset of s, and drops the sets that s is a subset of; it charges the
// comparisons to budget.
func insertMinimal(sets []posSet, s posSet, budget *int) []posSet {
	*budget -= len(sets)
	for _, t := range sets {
		if t.subset(s) {
			return sets
		}
	}
	out := sets[:0]
	for _, t := range sets {
		if !s.subset(t) {
			out = append(out, t)
		}
	}
	return append(out, s)
}

func allAny(q Pattern) bool {
	for _, s := range q {
		if !s.Any {
			return false
		}
	}
	return true
}

// posSet is a set of positions in a pattern: i means p[:i] has matched.
type posSet []uint64

func newPosSet(n int) posSet { return make(posSet, n/64+1) }

func (s posSet) add(i int)      { s[i/64] |= 1 << (i % 64) }
func (s posSet) has(i int) bool { return s[i/64]&(1<<(i%64)) != 0 }

func (s posSet) equal(t posSet) bool {
	for i := range s {
		if s[i] != t[i] {
			return false
		}
	}
	return true
}

func (s posSet) subset(t posSet) bool {
	for i := range s {
		if s[i]&^t[i] != 0 {
			return false
		}
	}
	return true
}

// closure adds the positions after each ** in s (a ** may match nothing).
func (p Pattern) closure(s posSet) posSet {
	for i, seg := range p {
		if seg.Any && s.has(i) {
			s.add(i + 1)
		}
	}
	return s
}

// step is where one segment seg takes the positions in s.
func (p Pattern) step(seg string, s posSet) posSet {
	t := newPosSet(len(p))
	for i, ps := range p {
		switch {
		case !s.has(i):
		case ps.Any:
			t.add(i)
		case ps.Glob.Match(seg):
			t.add(i + 1)
		}
	}
	return p.closure(t)
}
