package server

// Proxy protocol authentication (PROXY_PROTOCOL.md sections 7 and 9).
//
// Service authentication: the proxy secret (--proxy-secret), sent as
// ?secret=S or Authorization: Bearer S. It is compared in constant time
// (SHA-256 digests of both sides through subtle.ConstantTimeCompare, so not
// even the length leaks).
//
// Pre-signed URLs: {proxy-url}/{id}?expires={unix seconds}&signature={sig}
// where
//
//	key = HMAC-SHA256(secret, "durastream/proxy/presign/v1")
//	sig = base64url(HMAC-SHA256(key, id + "." + expires))   (no padding)
//
// The signing key is derived from the secret (an HKDF-Expand-style single
// HMAC step with a fixed label) rather than being the secret itself, so a
// signature is never an HMAC under the very string that grants service
// access, and a later scheme can use another label. Verification
// recomputes the MAC and compares it with hmac.Equal (constant time); the
// signature is checked before the expiry, so an expired URL answers
// SIGNATURE_EXPIRED only when it was genuine, and a tampered one (id,
// expires or signature) always answers SIGNATURE_INVALID.

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// presignLabel names the key derived from the proxy secret for signing.
const presignLabel = "durastream/proxy/presign/v1"

// signer issues and verifies pre-signed proxy URLs and checks the service
// secret.
type signer struct {
	key          []byte   // HMAC key for URL signatures, derived from the secret
	secretDigest [32]byte // SHA-256 of the service secret
}

func newSigner(secret string) *signer {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(presignLabel))
	return &signer{key: m.Sum(nil), secretDigest: sha256.Sum256([]byte(secret))}
}

// sign returns the signature of stream id until expires (unix seconds).
func (s *signer) sign(id string, expires int64) string {
	return base64.RawURLEncoding.EncodeToString(s.mac(id, strconv.FormatInt(expires, 10)))
}

func (s *signer) mac(id, expires string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(expires))
	return m.Sum(nil)
}

// authFailure is a 401 with its section-11 code.
type authFailure struct {
	code, msg string
}

var (
	errMissingSecret    = &authFailure{"MISSING_SECRET", "service authentication required: ?secret= or Authorization: Bearer"}
	errInvalidSecret    = &authFailure{"INVALID_SECRET", "invalid service credentials"}
	errMissingSignature = &authFailure{"MISSING_SIGNATURE", "pre-signed URL parameters expires and signature are required"}
	errSignatureInvalid = &authFailure{"SIGNATURE_INVALID", "pre-signed URL signature verification failed"}
	errSignatureExpired = &authFailure{"SIGNATURE_EXPIRED", "pre-signed URL has expired"}
)

// verify checks a pre-signed URL's parameters for stream id at now.
func (s *signer) verify(id, expires, signature string, now time.Time) *authFailure {
	// The encoded signatures are compared, not the decoded MACs: base64
	// decoders ignore the unused low bits of the last character, so one MAC
	// has several spellings, and only the one issued is valid. The MAC
	// covers expires exactly as sent; only canonical decimals were ever
	// signed, so any other spelling fails here too.
	want := base64.RawURLEncoding.EncodeToString(s.mac(id, expires))
	if !hmac.Equal([]byte(signature), []byte(want)) {
		return errSignatureInvalid
	}
	exp, ok := parseDecimal(expires, 1<<62)
	if !ok {
		return errSignatureInvalid
	}
	if now.Unix() >= int64(exp) {
		return errSignatureExpired
	}
	return nil
}

// secretOK compares a presented service secret in constant time.
func (s *signer) secretOK(presented string) bool {
	d := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(d[:], s.secretDigest[:]) == 1
}

// presentedSecret returns the service secret a request presents (?secret=
// first, then Authorization: Bearer) and whether it presents one.
func presentedSecret(rawQuery string, authorization string) (string, bool) {
	if v, n := queryParam(rawQuery, "secret"); n > 0 {
		return v, true
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		if token = strings.TrimSpace(token); token != "" {
			return token, true
		}
	}
	return "", false
}

// serviceAuth checks service authentication (POST, HEAD, DELETE, and GET as
// the fallback).
func (s *signer) serviceAuth(rawQuery, authorization string) *authFailure {
	secret, ok := presentedSecret(rawQuery, authorization)
	if !ok {
		return errMissingSecret
	}
	if !s.secretOK(secret) {
		return errInvalidSecret
	}
	return nil
}

// presignedAuth checks a pre-signed URL's parameters (GET, PATCH).
func (s *signer) presignedAuth(id, rawQuery string, now time.Time) *authFailure {
	expires, ne := queryParam(rawQuery, "expires")
	signature, ns := queryParam(rawQuery, "signature")
	if ne == 0 || ns == 0 || expires == "" || signature == "" {
		return errMissingSignature
	}
	if ne > 1 || ns > 1 {
		return errSignatureInvalid
	}
	return s.verify(id, expires, signature, now)
}
