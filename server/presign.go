package server

// Proxy protocol authentication (PROXY_PROTOCOL.md sections 7 and 9).
//
// Service authentication: the proxy secret (--proxy-secret), sent as
// ?secret=S or Authorization: Bearer S. It is compared in constant time
// (SHA-256 digests of both sides through subtle.ConstantTimeCompare, so not
// even the length leaks).
//
// Pre-signed URLs: {proxy-url}/{id}?expires={unix seconds}&signature={sig},
// signed with auth.URLSigner (label "durastream/proxy/presign/v1", subject
// the stream id): an expired URL answers SIGNATURE_EXPIRED only when it was
// genuine, and a tampered one (id, expires or signature) always answers
// SIGNATURE_INVALID.

import (
	"crypto/sha256"
	"crypto/subtle"
	"time"

	"github.com/durastream/durastream/auth"
)

// presignLabel names the key derived from the proxy secret for signing.
const presignLabel = "durastream/proxy/presign/v1"

// signer issues and verifies pre-signed proxy URLs and checks the service
// secret.
type signer struct {
	urls         *auth.URLSigner
	secretDigest [32]byte // SHA-256 of the service secret
}

func newSigner(secret string) *signer {
	return &signer{urls: auth.NewURLSigner([]byte(secret), presignLabel), secretDigest: sha256.Sum256([]byte(secret))}
}

// sign returns the signature of stream id until expires (unix seconds).
func (s *signer) sign(id string, expires int64) string { return s.urls.Sign(id, expires) }

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
	switch s.urls.Verify(id, expires, signature, now) {
	case nil:
		return nil
	case auth.ErrSignatureExpired:
		return errSignatureExpired
	default:
		return errSignatureInvalid
	}
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
	if token := bearerToken(authorization); token != "" {
		return token, true
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
