// Package auth decides who may do what to which stream: bearer tokens
// (JWTs, verified with github.com/golang-jwt/jwt/v5: HS256 with a shared
// secret, or EdDSA, ES256 and RS256 with public keys from a JSON Web Key
// Set, parsed by github.com/MicahParks/keyfunc/v3), grants carried in the
// token as path patterns per operation, anonymous grants configured by the
// operator, and pre-signed read URLs.
//
// # Tokens
//
// A token is presented as "Authorization: Bearer <jwt>", or as the query
// parameter ?token=<jwt> where a header cannot be set (EventSource). It must
// carry exp; exp and nbf are checked with a leeway (30 s by default); iss and
// aud are checked when the server is configured with them. With a JWKS the
// token's header must name its key (kid). A verified token is cached until
// its exp, keyed by the whole token, so that a request costs a map lookup
// rather than a signature check; a change of the key set drops the cache.
//
// # The "ds" claim
//
// What a token grants is its "ds" claim: per operation, a list of stream
// path patterns (relative to the stream prefix; * matches one segment or a
// part of one, ** any number of segments including none):
//
//	read    GET and HEAD: catch-up, long-poll, SSE
//	append  POST, including close
//	create  PUT; a fork also needs read on its source
//	delete  DELETE
//	fetch   the durablefetch door: upstream host[:port]/path patterns
//	ops     true: /health and /metrics on the main listener
//
// A browser that reads one chat:
//
//	{"sub": "user-17", "exp": 1767225600, "ds": {"read": ["chats/42"]}}
//
// An ingest service writing logs, creating their streams as it goes:
//
//	{"sub": "ingest", "exp": 1767225600, "ds": {"create": ["logs/**"], "append": ["logs/**"]}}
//
// An administrator:
//
//	{"sub": "admin", "exp": 1767225600, "ds": {"read": ["**"], "append": ["**"], "create": ["**"], "delete": ["**"], "ops": true}}
//
// A token without "ds" grants nothing beyond the anonymous grants; unknown
// keys in "ds" make the token invalid (a typo must not silently grant less
// or more). The reserved __ds namespace is matched only by a pattern whose
// first segment is the literal __ds.
//
// # Anonymous grants
//
// The operator grants operations to everyone, token or not, with the same
// patterns (serve --anonymous OPS:PATTERN). Responses that the anonymous
// grants alone allow keep the protocol's cacheable headers; every other
// response is Cache-Control: private, so no shared cache hands one caller's
// read to another.
//
// # Signed read URLs
//
// A backend that holds the URL secret hands a browser a URL that reads one
// stream until an expiry, with no token in the page:
//
//	/v1/stream/chats/42?expires=1767225600&signature=<sig>
//	sig = base64url(HMAC-SHA256(HMAC-SHA256(secret, "durastream/stream/read-url/v1"), "read\n" + path + "." + expires))
//
// (path is the stream path, e.g. chats/42; URLSigner and
// Authenticator.SignReadURL compute it; `durastream sign-url` prints one.)
// Protocol query parameters (offset, live, cursor) may be added freely:
// the signature covers the path and expiry only.
//
// # Answers
//
// No credential where one is needed, or a bad one: 401 with
// WWW-Authenticate: Bearer and a short reason (token expired, bad
// signature, wrong audience, ...). A valid credential without the grant:
// 403. Both come before any lookup, so neither reveals whether a stream
// exists.
package auth
