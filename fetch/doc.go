// Package fetch runs upstream HTTP requests into engine streams: the first
// request for a fetch starts the upstream call; the manager keeps it running
// whatever the client does, writes the response body into a durable stream
// in batches, closes the stream when the upstream ends, and records how it
// ended. Readers are ordinary stream readers. Two front doors in package
// server map HTTP onto it: the durablefetch API (fetches keyed by their
// upstream URL) and the Durable Streams proxy protocol (a new fetch per
// request, read through pre-signed URLs).
//
// Security: an Allowlist that denies everything when empty, a dialer that
// checks the address actually dialled (dial.go), redirects never followed,
// hop-by-hop headers stripped both ways and only an explicit set of
// response headers stored (headers.go); request credentials are used for
// the upstream call and never stored.
//
// # Upstream allowlist
//
// Every upstream URL must match at least one allow pattern. With no patterns
// nothing is allowed. A pattern is
//
//	scheme://host[:port]/path
//
// where:
//
//   - scheme is http, https or * (either of the two).
//   - host is a DNS name, an IPv4 literal (10.1.2.3) or a bracketed IPv6
//     literal ([fd00::1]); it is compared case-insensitively. In a DNS
//     name, a * matches one label or a part of one (*.example.com,
//     api-*.example.com; a * never matches a dot) and a leading **. matches
//     any number of labels, including none (**.openai.com matches
//     openai.com and a.b.openai.com).
//     A host of * alone matches any single-label name; ** alone matches any
//     DNS name. Wildcards never match an IP literal: an IP is allowed only by
//     a pattern that spells that exact address, and only such a pattern lets
//     a request reach a loopback, private, link-local or metadata address
//     (see "Address checks" below). Internationalised names must be written
//     in punycode (xn--...), as must URLs: non-ASCII hosts are refused.
//   - port is a number or *. Without a port only the scheme's default port
//     (80 for http, 443 for https) matches; https://example.com:443/ and
//     https://example.com/ are the same URL.
//   - path must start with /. In the path, * matches one segment or a part
//     of one (never a /), and a segment of ** matches any number of segments,
//     including none (/v1/** matches /v1, /v1/ and /v1/a/b). A trailing /
//     is significant: /v1/ matches only /v1/, and /v1/* matches /v1/ but not
//     /v1. Percent-escapes in a pattern are decoded; %2A is a literal *.
//   - No user info, query or fragment. Query strings are not matched: a URL
//     that matches is allowed whatever its query.
//
// Examples:
//
//	https://api.openai.com/v1/**       the OpenAI API over https, port 443
//	https://**.openai.com/**           openai.com and every subdomain
//	*://api.example.com:*/**           http or https, any port
//	https://*.example.com/models/*     one subdomain level, one segment
//	http://127.0.0.1:8080/**           a local upstream (loopback must be named)
//	https://[fd00::5]/hooks/*          one private IPv6 host, one segment
//
// URLs are matched after normalisation, and URLs that could mean different
// things to durastream and to the upstream are refused rather than guessed
// at: the scheme must be http or https; the URL must be absolute, with a
// non-empty host and no user info (user:pass@); host and scheme are
// lower-cased; a trailing dot on the host is dropped; an IPv4-mapped IPv6
// literal ([::ffff:10.0.0.1]) is treated as its IPv4 address; IPv6 zones
// and numeric-looking hosts that are not plain IP literals (127.1, 0x7f.1,
// 2130706433) are refused. The path is split on / and each segment is
// percent-decoded before matching; the URL is refused if a decoded segment
// contains / or \ (so %2F cannot smuggle a separator past a * or a literal
// segment), a control character, or is . or .. (literal or encoded as %2e,
// also before a ;parameter as in ..;), or if a segment other than the last
// is empty (//). Such paths are refused instead of cleaned because the
// upstream would receive the path as sent and may resolve it differently.
//
// # Address checks
//
// Matching a pattern is not enough to connect. The dialer (dial.go) checks
// the address actually dialled, after DNS resolution, and refuses loopback,
// private, link-local, CGNAT, multicast, unspecified and other non-public
// addresses, and cloud metadata endpoints, unless a pattern that matches the
// URL names that exact IP literal as its host. A host name never unlocks a
// private address, not even localhost: to fetch from a local upstream, allow
// and request http://127.0.0.1:PORT/... A DNS answer therefore cannot steer
// a fetch to an internal address.
package fetch
