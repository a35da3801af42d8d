package subs

// The webhook signing key: Ed25519, generated once and kept in the data
// directory (mode 0600), published as a JWK Set at __ds/jwks.json. Its kid
// is "ds_" + the RFC 7638 JWK thumbprint (SHA-256, base64url). Callback and
// claim tokens are MACs under a key derived from the same seed.

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/durastream/durastream/durafile"
)

type signer struct {
	priv     ed25519.PrivateKey
	kid      string
	jwks     []byte
	tokenKey []byte
}

// loadSigner reads the key file, or creates it; file "" keeps a key in
// memory only (a server whose data does not persist).
func loadSigner(file string) (*signer, error) {
	var seed []byte
	if file != "" {
		b, err := os.ReadFile(file)
		switch {
		case err == nil:
			seed, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
			if err != nil || len(seed) != ed25519.SeedSize {
				return nil, fmt.Errorf("webhook signing key %s: not a base64 Ed25519 seed", file)
			}
		case errors.Is(err, os.ErrNotExist):
			seed = make([]byte, ed25519.SeedSize)
			rand.Read(seed)
			if err := writeSecretFile(file, []byte(base64.StdEncoding.EncodeToString(seed)+"\n")); err != nil {
				return nil, fmt.Errorf("webhook signing key: %w", err)
			}
		default:
			return nil, fmt.Errorf("webhook signing key: %w", err)
		}
	} else {
		seed = make([]byte, ed25519.SeedSize)
		rand.Read(seed)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	x := base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
	// RFC 7638: the required members in lexicographic order, no spaces.
	tp := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	s := &signer{priv: priv, kid: "ds_" + base64.RawURLEncoding.EncodeToString(tp[:])}
	s.jwks, _ = json.Marshal(map[string]any{"keys": []any{map[string]string{
		"kty": "OKP", "crv": "Ed25519", "kid": s.kid, "use": "sig", "alg": "EdDSA", "x": x}}})
	m := hmac.New(sha256.New, seed)
	m.Write([]byte("durastream/subscriptions/token/v1"))
	s.tokenKey = m.Sum(nil)
	return s, nil
}

// writeSecretFile writes a 0600 file durably (durafile), in a directory
// only its owner may list.
func writeSecretFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return durafile.Write(path, data, 0o600)
}

// signatureHeader is Webhook-Signature for body at unix time t.
func (s *signer) signatureHeader(body []byte, t int64) string {
	ts := strconv.FormatInt(t, 10)
	msg := make([]byte, 0, len(ts)+1+len(body))
	msg = append(append(append(msg, ts...), '.'), body...)
	return "t=" + ts + ",kid=" + s.kid + ",ed25519=" + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.priv, msg))
}

// token is the bearer token of one wake of a subscription: scoped to the
// subscription, its generation and its wake id.
func (s *signer) token(id string, gen uint64, wakeID string) string {
	m := hmac.New(sha256.New, s.tokenKey)
	fmt.Fprintf(m, "%s\n%d\n%s", id, gen, wakeID)
	return "g" + strconv.FormatUint(gen, 10) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// tokenOK checks a presented token against a wake in constant time.
func (s *signer) tokenOK(presented, id string, gen uint64, wakeID string) bool {
	return hmac.Equal([]byte(presented), []byte(s.token(id, gen, wakeID)))
}

// tokenGeneration is the generation a token claims (it is verified only
// against the current wake; this tells a stale token from a forged one).
func tokenGeneration(tok string) (uint64, bool) {
	g, _, ok := strings.Cut(strings.TrimPrefix(tok, "g"), ".")
	if !ok || !strings.HasPrefix(tok, "g") {
		return 0, false
	}
	n, err := strconv.ParseUint(g, 10, 64)
	return n, err == nil
}
