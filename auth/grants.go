package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/durastream/durastream/pathglob"
)

// Op is what a request does to a stream.
type Op uint8

const (
	OpRead   Op = iota // GET, HEAD, long-poll, SSE
	OpAppend           // POST, including close
	OpCreate           // PUT, including forks (which also need OpRead on the source)
	OpDelete           // DELETE
	OpFetch            // durablefetch door: start, join or replay an upstream URL (host/path)
	numOps
)

var opNames = [numOps]string{"read", "append", "create", "delete", "fetch"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", o)
}

// ParseOp parses an operation name.
func ParseOp(s string) (Op, error) {
	for i, n := range opNames {
		if n == s {
			return Op(i), nil
		}
	}
	return 0, fmt.Errorf("unknown operation %q (want read, append, create, delete or fetch)", s)
}

// Grants is what a caller may do: per operation, path patterns; and
// whether it may read /health and /metrics. The zero value grants nothing.
// Immutable once built.
type Grants struct {
	paths [numOps][]pathglob.Pattern
	ops   bool
}

// Claim is the JSON shape of the "ds" claim of a token (see the package
// comment).
type Claim struct {
	Read   []string `json:"read,omitempty"`
	Append []string `json:"append,omitempty"`
	Create []string `json:"create,omitempty"`
	Delete []string `json:"delete,omitempty"`
	Fetch  []string `json:"fetch,omitempty"`
	Ops    bool     `json:"ops,omitempty"`
}

// maxPatterns bounds the patterns of one claim: a token is an input.
const maxPatterns = 256

// Compile checks and compiles a claim. Patterns are stream paths relative
// to the stream prefix (fetch: host[:port]/path of the upstream URL), with
// * and ** (package pathglob); a leading / is ignored.
func (c Claim) Compile() (*Grants, error) {
	g := &Grants{ops: c.Ops}
	n := 0
	for op, list := range [numOps][]string{c.Read, c.Append, c.Create, c.Delete, c.Fetch} {
		for _, s := range list {
			if n++; n > maxPatterns {
				return nil, fmt.Errorf("more than %d patterns", maxPatterns)
			}
			p, err := parsePattern(s)
			if err != nil {
				return nil, fmt.Errorf("%s pattern %q: %w", Op(op), s, err)
			}
			g.paths[op] = append(g.paths[op], p)
		}
	}
	return g, nil
}

func parsePattern(s string) (pathglob.Pattern, error) {
	s = strings.TrimPrefix(s, "/")
	if len(s) > 1024 {
		return nil, fmt.Errorf("longer than 1024 bytes")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '%' || c == '\\' {
			return nil, fmt.Errorf("control character, %% or \\ in a pattern")
		}
	}
	return pathglob.Parse(s)
}

// ParseClaim parses the raw JSON of a "ds" claim.
func ParseClaim(raw []byte) (*Grants, error) {
	var c Claim
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return nil, err
	}
	return c.Compile()
}

// Allows reports whether g grants op on path (a validated stream path: no
// empty, . or .. segments). Paths in the reserved __ds namespace are never
// granted by a pattern that does not spell __ds out.
func (g *Grants) Allows(op Op, path string) bool { return g.allows(op, strings.Split(path, "/")) }

// allows is Allows on a path already split into segments.
func (g *Grants) allows(op Op, segs []string) bool {
	if g == nil || op >= numOps {
		return false
	}
	for _, p := range g.paths[op] {
		if p.Match(segs) && (segs[0] != "__ds" || (len(p) > 0 && !p[0].Any && p[0].Glob.Literal())) {
			return true
		}
	}
	return false
}

// Covers reports whether one of g's patterns for op matches every path q
// can match (pathglob's Covers): a grant for a pattern rather than a path,
// e.g. what a subscription watches. A q under the reserved __ds namespace
// is covered only by a pattern that spells __ds out, as in Allows.
func (g *Grants) Covers(op Op, q pathglob.Pattern) bool {
	if g == nil || op >= numOps {
		return false
	}
	reserved := len(q) > 0 && !q[0].Any && q[0].Glob.Literal() && q[0].Glob[0] == "__ds"
	for _, p := range g.paths[op] {
		if p.Covers(q) && (!reserved || (len(p) > 0 && !p[0].Any && p[0].Glob.Literal())) {
			return true
		}
	}
	return false
}

// Ops reports whether g grants /health and /metrics.
func (g *Grants) Ops() bool { return g != nil && g.ops }

// Any reports whether g grants anything at all.
func (g *Grants) Any() bool {
	if g == nil {
		return false
	}
	for _, l := range g.paths {
		if len(l) > 0 {
			return true
		}
	}
	return g.ops
}

// ParseGrantFlag parses "OPS:PATTERN" (OPS a comma-separated list of
// operation names, or "all" for read, append, create and delete) and adds
// it to c. It is the syntax of the server's --anonymous flag.
func (c *Claim) ParseGrantFlag(v string) error {
	ops, pat, ok := strings.Cut(v, ":")
	if !ok || pat == "" {
		return fmt.Errorf("%q: want OPS:PATTERN, e.g. read:public/** or read,append:chat/*", v)
	}
	if _, err := parsePattern(pat); err != nil {
		return fmt.Errorf("%q: %w", v, err)
	}
	for _, name := range strings.Split(ops, ",") {
		if name == "all" {
			c.Read, c.Append = append(c.Read, pat), append(c.Append, pat)
			c.Create, c.Delete = append(c.Create, pat), append(c.Delete, pat)
			continue
		}
		op, err := ParseOp(name)
		if err != nil {
			return fmt.Errorf("%q: %w", v, err)
		}
		switch op {
		case OpRead:
			c.Read = append(c.Read, pat)
		case OpAppend:
			c.Append = append(c.Append, pat)
		case OpCreate:
			c.Create = append(c.Create, pat)
		case OpDelete:
			c.Delete = append(c.Delete, pat)
		case OpFetch:
			c.Fetch = append(c.Fetch, pat)
		}
	}
	return nil
}
