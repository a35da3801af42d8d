package subs

import "github.com/durastream/durastream/pathglob"

// trie indexes subscriptions by pattern, segment by segment, so that
// matching a stream path costs a walk of the patterns' shared structure,
// not a scan of every subscription.
type trie struct {
	lit   map[string]*trie
	globs []globChild // segments with a * in them (including a whole *)
	any   *trie       // **
	subs  map[*sub]struct{}
}

type globChild struct {
	glob pathglob.Glob
	key  string // the segment as written
	next *trie
}

func (t *trie) add(p pathglob.Pattern, raw []string, s *sub) {
	n := t
	for i, seg := range p {
		switch {
		case seg.Any:
			if n.any == nil {
				n.any = &trie{}
			}
			n = n.any
		case seg.Glob.Literal():
			if n.lit == nil {
				n.lit = map[string]*trie{}
			}
			c := n.lit[seg.Glob[0]]
			if c == nil {
				c = &trie{}
				n.lit[seg.Glob[0]] = c
			}
			n = c
		default:
			var c *trie
			for _, g := range n.globs {
				if g.key == raw[i] {
					c = g.next
				}
			}
			if c == nil {
				c = &trie{}
				n.globs = append(n.globs, globChild{seg.Glob, raw[i], c})
			}
			n = c
		}
	}
	if n.subs == nil {
		n.subs = map[*sub]struct{}{}
	}
	n.subs[s] = struct{}{}
}

// remove drops s from the node of its pattern (empty nodes stay: patterns
// come back, and they cost a few bytes).
func (t *trie) remove(p pathglob.Pattern, raw []string, s *sub) {
	n := t
	for i, seg := range p {
		switch {
		case seg.Any:
			n = n.any
		case seg.Glob.Literal():
			n = n.lit[seg.Glob[0]]
		default:
			var c *trie
			for _, g := range n.globs {
				if g.key == raw[i] {
					c = g.next
				}
			}
			n = c
		}
		if n == nil {
			return
		}
	}
	delete(n.subs, s)
}

// match adds to out every subscription whose pattern matches segs[i:].
func (t *trie) match(segs []string, i int, out map[*sub]struct{}) {
	if t == nil {
		return
	}
	if t.any != nil {
		for k := i; k <= len(segs); k++ {
			t.any.match(segs, k, out)
		}
	}
	if i == len(segs) {
		for s := range t.subs {
			out[s] = struct{}{}
		}
		return
	}
	if c := t.lit[segs[i]]; c != nil {
		c.match(segs, i+1, out)
	}
	for _, g := range t.globs {
		if g.glob.Match(segs[i]) {
			g.next.match(segs, i+1, out)
		}
	}
}
