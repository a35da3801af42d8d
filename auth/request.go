package auth

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/durastream/durastream/pathglob"
)

// Need is one permission a request needs.
type Need struct {
	Op   Op
	Path string
}

// Decision is the answer for one request.
type Decision struct {
	// Status is 0 when the request may go on, else 401 or 403.
	Status int
	// Reason says why, for WWW-Authenticate and the error body.
	Reason string
	// Public: the anonymous grants alone allow the request, so its
	// response may be cached by shared caches. False whenever a credential
	// was needed.
	Public bool
}

// Allowed reports whether the request may go on.
func (d Decision) Allowed() bool { return d.Status == 0 }

// Query parameters that carry credentials (browsers: EventSource cannot set
// headers). They are not protocol parameters and never reach the engine.
const (
	QueryToken     = "token"
	QueryExpires   = "expires"
	QuerySignature = "signature"
)

// credential is what a request presents.
type credential struct {
	token              string
	expires, signature string
	signed             bool
	bad                string // a malformed presentation
}

func presented(r *http.Request) (credential, bool) {
	var c credential
	if h := r.Header.Values("Authorization"); len(h) > 0 {
		scheme, tok, _ := strings.Cut(strings.TrimSpace(h[0]), " ")
		if len(h) > 1 || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			c.bad = "Authorization must be one Bearer token"
			return c, true
		}
		c.token = strings.TrimSpace(tok)
		return c, true
	}
	q := r.URL.RawQuery
	if !strings.Contains(q, QueryToken+"=") && !strings.Contains(q, QuerySignature+"=") {
		return c, false
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		c.bad = "malformed query string"
		return c, true
	}
	if t, ok := vals[QueryToken]; ok {
		if len(t) != 1 || t[0] == "" {
			c.bad = "give one token parameter"
		}
		c.token = t[0]
		return c, true
	}
	e, s := vals[QueryExpires], vals[QuerySignature]
	if len(s) == 0 {
		return c, false
	}
	if len(e) != 1 || len(s) != 1 {
		c.bad = "a signed URL has one expires and one signature parameter"
		return c, true
	}
	c.signed, c.expires, c.signature = true, e[0], s[0]
	return c, true
}

// Covers reports whether the caller may do op on every path q can match
// (Grants.Covers): the anonymous grants cover it, or the request's token
// does. A signed URL grants one path, never a pattern.
func (a *Authenticator) Covers(r *http.Request, op Op, q pathglob.Pattern) bool {
	if a.anonymous.Covers(op, q) {
		return true
	}
	c, ok := presented(r)
	if !ok || c.bad != "" || c.token == "" {
		return false
	}
	g, err := a.Verify(c.token)
	return err == nil && g.Covers(op, q)
}

// Check decides a request that needs all of needs. With token
// verification off everything is allowed (and Public).
func (a *Authenticator) Check(r *http.Request, needs ...Need) Decision {
	if !a.Enabled() {
		return Decision{Public: true}
	}
	segs := splitNeeds(needs)
	public := a.anonymousAllows(needs, segs)
	c, ok := presented(r)
	if !ok {
		if public {
			return Decision{Public: true}
		}
		return Decision{Status: http.StatusUnauthorized, Reason: errMissing.Reason}
	}
	if c.bad != "" {
		return Decision{Status: http.StatusUnauthorized, Reason: c.bad}
	}
	if c.signed {
		return a.checkSigned(c, needs, public)
	}
	return a.checkToken(c.token, needs, segs, public)
}

// splitNeeds splits each need's path into segments once per request.
func splitNeeds(needs []Need) [][]string {
	segs := make([][]string, len(needs))
	for i, n := range needs {
		segs[i] = strings.Split(n.Path, "/")
	}
	return segs
}

// CheckToken decides a request that presents token (empty: none) in a
// place of the caller's choosing and needs all of needs.
func (a *Authenticator) CheckToken(token string, needs ...Need) Decision {
	if !a.Enabled() {
		return Decision{Public: true}
	}
	segs := splitNeeds(needs)
	public := a.anonymousAllows(needs, segs)
	if token == "" {
		if public {
			return Decision{Public: true}
		}
		return Decision{Status: http.StatusUnauthorized, Reason: errMissing.Reason}
	}
	return a.checkToken(token, needs, segs, public)
}

func (a *Authenticator) anonymousAllows(needs []Need, segs [][]string) bool {
	for i, n := range needs {
		if !a.anonymous.allows(n.Op, segs[i]) {
			return false
		}
	}
	return true
}

func (a *Authenticator) checkToken(token string, needs []Need, segs [][]string, public bool) Decision {
	g, err := a.Verify(token)
	if err != nil {
		return Decision{Status: http.StatusUnauthorized, Reason: err.(*Error).Reason}
	}
	for i, n := range needs {
		if !g.allows(n.Op, segs[i]) && !a.anonymous.allows(n.Op, segs[i]) {
			return Decision{Status: http.StatusForbidden, Reason: fmt.Sprintf("the token does not grant %s on %s", n.Op, n.Path)}
		}
	}
	return Decision{Public: public}
}

// checkSigned allows reads of exactly the signed path.
func (a *Authenticator) checkSigned(c credential, needs []Need, public bool) Decision {
	for _, n := range needs {
		if n.Op != OpRead {
			return Decision{Status: http.StatusForbidden, Reason: "a signed URL grants reads only"}
		}
	}
	if len(needs) != 1 {
		return Decision{Status: http.StatusForbidden, Reason: "a signed URL grants one stream"}
	}
	if err := a.verifyURL(needs[0].Path, c.expires, c.signature); err != nil {
		return Decision{Status: http.StatusUnauthorized, Reason: err.(*Error).Reason}
	}
	return Decision{Public: public}
}

// CheckOps decides a request for /health or /metrics on a listener where
// they need a token with "ops": true.
func (a *Authenticator) CheckOps(r *http.Request) Decision {
	if !a.Enabled() {
		return Decision{}
	}
	c, ok := presented(r)
	switch {
	case !ok:
		return Decision{Status: http.StatusUnauthorized, Reason: errMissing.Reason}
	case c.bad != "":
		return Decision{Status: http.StatusUnauthorized, Reason: c.bad}
	case c.signed:
		return Decision{Status: http.StatusForbidden, Reason: "a signed URL grants stream reads only"}
	}
	g, err := a.Verify(c.token)
	if err != nil {
		return Decision{Status: http.StatusUnauthorized, Reason: err.(*Error).Reason}
	}
	if !g.Ops() {
		return Decision{Status: http.StatusForbidden, Reason: `the token does not grant "ops"`}
	}
	return Decision{}
}

// WriteChallenge sets WWW-Authenticate for a refused decision (RFC 6750):
// no error code when no credential was presented, invalid_token for a bad
// one, insufficient_scope for a 403.
func WriteChallenge(h http.Header, d Decision) {
	switch {
	case d.Status == http.StatusForbidden:
		h.Set("WWW-Authenticate", `Bearer realm="durastream", error="insufficient_scope", error_description=`+quote(d.Reason))
	case d.Reason == errMissing.Reason:
		h.Set("WWW-Authenticate", `Bearer realm="durastream"`)
	default:
		h.Set("WWW-Authenticate", `Bearer realm="durastream", error="invalid_token", error_description=`+quote(d.Reason))
	}
}

// quote makes a quoted-string of s, dropping what a header cannot carry.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
