package fetch

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopByHop are the headers of one connection, never forwarded either way
// (RFC 9110 section 7.6.1 and PROXY_PROTOCOL.md section 5.2; "Trailers" is
// the spec's spelling, "Trailer" the real header; Proxy-Connection is a
// non-standard alias of Connection still sent by some clients).
var hopByHop = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Trailers",
	"Transfer-Encoding",
	"Upgrade",
}

// UpstreamRequestHeader returns the headers to send upstream for a request
// made through the proxy protocol (PROXY_PROTOCOL.md sections 5.1 and 5.2).
// in is not modified. Compared with in:
//
//   - hop-by-hop headers are removed, and so are the headers that Connection
//     names;
//   - Host is removed (the request's URL sets it), and so is Content-Length
//     (the transport sets it from the body it sends);
//   - Authorization is removed: it authenticated the client to durastream.
//     Upstream-Authorization, if present, is sent as Authorization;
//   - every Upstream-* header (Upstream-URL, Upstream-Method,
//     Upstream-Authorization, ...) is removed;
//   - Expect is removed: 100-continue was between the client and durastream,
//     which already has the whole body;
//   - Accept-Encoding is replaced by "identity": the response body is stored
//     and replayed as the plain bytes of the content, the same for every
//     reader whatever it accepts, and Content-Encoding is not a stored header
//     (see StoredResponseHeader and PlainBody). A client that wants
//     compression asks durastream for it, not the upstream;
//   - everything else, Cookie included, is forwarded as is. The request's
//     headers are never stored, so credentials and cookies serve this one
//     upstream call and reach no other reader.
func UpstreamRequestHeader(in http.Header) http.Header {
	c := canonical(in)
	auth := c["Upstream-Authorization"]
	out := forwardHeader(c)
	delete(out, "Authorization")
	if len(auth) > 0 {
		out["Authorization"] = auth
	}
	return out
}

// PassthroughRequestHeader is UpstreamRequestHeader for the durablefetch
// front door, where the client addresses the upstream directly and its own
// Authorization header is meant for the upstream: Authorization is forwarded
// as is (and Upstream-* headers are still removed). The rest is as in
// UpstreamRequestHeader.
func PassthroughRequestHeader(in http.Header) http.Header {
	return forwardHeader(canonical(in))
}

// canonical copies h with canonical keys, so that filtering by name cannot
// miss a header whose key was stored in another case.
func canonical(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		out[ck] = append(out[ck], v...)
	}
	return out
}

// forwardHeader is the filtering common to both front doors; it edits h, a
// canonical copy, in place and returns it.
func forwardHeader(h http.Header) http.Header {
	var named []string // headers that Connection (or Proxy-Connection) names
	for _, k := range []string{"Connection", "Proxy-Connection"} {
		for _, v := range h[k] {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					named = append(named, name)
				}
			}
		}
	}
	for _, name := range named {
		h.Del(name)
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
	for k := range h {
		if strings.HasPrefix(k, "Upstream-") {
			delete(h, k)
		}
	}
	delete(h, "Host")
	delete(h, "Content-Length")
	delete(h, "Expect")
	h.Set("Accept-Encoding", "identity")
	return h
}

// storedSingle are the upstream response headers stored and replayed to every
// reader of a fetch, first value only; storedList keeps every value. Nothing
// else is stored, in particular never:
//
//   - Set-Cookie, WWW-Authenticate, Authentication-Info or anything else that
//     belongs to the first caller's credentials or session;
//   - hop-by-hop headers, Content-Length, Content-Encoding, Transfer-Encoding,
//     Content-Range (durastream frames and serves the body itself);
//   - caching and validators (Cache-Control, Expires, ETag, Age, Vary):
//     durastream sets its own for the stored copy;
//   - other X-* headers: too many carry per-caller data (X-Csrf-Token,
//     X-Subject-Token, rate-limit state of the caller's key) to pass on to
//     everyone who reads the fetch.
var (
	storedSingle = []string{
		"Content-Type",        // how to read the body
		"Content-Disposition", // file name of a download
		"Last-Modified",
		"X-Request-Id", // upstream correlation ids, for support requests
		"Request-Id",
	}
	storedList = []string{
		"Content-Language",
	}
)

// StoredResponseHeader returns the upstream response headers that durastream
// stores with a fetch and replays to every reader: Content-Type,
// Content-Disposition, Last-Modified, X-Request-Id and Request-Id (first
// value each) and Content-Language (all values). Everything else is dropped
// (see storedSingle for why). in is not modified; the result never aliases it.
func StoredResponseHeader(in http.Header) http.Header {
	out := make(http.Header)
	for _, k := range storedSingle {
		if v := in.Values(k); len(v) > 0 {
			out[k] = []string{v[0]}
		}
	}
	for _, k := range storedList {
		if v := in.Values(k); len(v) > 0 {
			out[k] = append([]string(nil), v...)
		}
	}
	return out
}

// PlainBody reports whether a response body is the plain content, with no
// content coding (Content-Encoding absent or "identity"). The stored headers
// drop Content-Encoding, so a fetch must not store a body for which this is
// false: refuse it (UpstreamRequestHeader asked for identity) rather than
// replay compressed bytes labelled as plain.
func PlainBody(h http.Header) bool {
	for _, v := range h.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return false
			}
		}
	}
	return true
}
