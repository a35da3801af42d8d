package auth

// Pre-signed URLs: a backend hands a browser a URL that carries its own
// authorization, valid for one subject until an expiry:
//
//	key = HMAC-SHA256(secret, label)
//	sig = base64url(HMAC-SHA256(key, subject + "." + expires))   (no padding)
//
// The key is derived from the secret with a fixed label (one HMAC step), so
// a signature is never an HMAC under the secret itself and schemes with
// different labels (proxy streams, stream reads) cannot stand in for each
// other. Verification recomputes the signature and compares the encoded
// strings in constant time; the signature is checked before the expiry, so
// "expired" is only ever said of a genuine URL.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"time"
)

var (
	ErrSignatureInvalid = errors.New("signed URL signature verification failed")
	ErrSignatureExpired = errors.New("signed URL has expired")
)

// URLSigner signs and verifies subjects with expiries. Safe for concurrent use.
type URLSigner struct{ key []byte }

// NewURLSigner derives the signing key for label from secret.
func NewURLSigner(secret []byte, label string) *URLSigner {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return &URLSigner{key: m.Sum(nil)}
}

// Sign returns the signature of subject until expires (unix seconds).
func (s *URLSigner) Sign(subject string, expires int64) string {
	return base64.RawURLEncoding.EncodeToString(s.mac(subject, strconv.FormatInt(expires, 10)))
}

func (s *URLSigner) mac(subject, expires string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(subject))
	m.Write([]byte{'.'})
	m.Write([]byte(expires))
	return m.Sum(nil)
}

// Verify checks signature for subject and expires (as sent) at now.
func (s *URLSigner) Verify(subject, expires, signature string, now time.Time) error {
	// The encoded signatures are compared, not the decoded MACs: base64
	// decoders ignore the unused low bits of the last character, so one MAC
	// has several spellings, and only the one issued is valid. The MAC
	// covers expires exactly as sent; only canonical decimals were ever
	// signed, so any other spelling fails here too.
	want := base64.RawURLEncoding.EncodeToString(s.mac(subject, expires))
	if !hmac.Equal([]byte(signature), []byte(want)) {
		return ErrSignatureInvalid
	}
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil {
		return ErrSignatureInvalid
	}
	if now.Unix() >= exp {
		return ErrSignatureExpired
	}
	return nil
}
