package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/puzpuzpuz/xsync/v3"
)

// Config configures an Authenticator. Token verification is on when
// HMACSecret, JWKSURL or JWKSFile is set.
type Config struct {
	// HMACSecret verifies HS256 tokens (at least 32 bytes).
	HMACSecret []byte
	// JWKSURL and JWKSFile name a JSON Web Key Set of public keys (EdDSA,
	// ES256, RS256); at most one of them. The set is fetched at start (a
	// failure then is an error), refreshed every JWKSRefresh, and at most
	// once per 10 s when a token names a key id the set does not have.
	// A failed refresh keeps the last good set and is logged.
	JWKSURL, JWKSFile string
	// JWKSRefresh is the refresh interval. Default 5 min.
	JWKSRefresh time.Duration
	// JWKSTimeout bounds one fetch of JWKSURL. Default 10 s.
	JWKSTimeout time.Duration
	// HTTPClient fetches JWKSURL. Default: a client with JWKSTimeout.
	HTTPClient *http.Client
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer, Audience string
	// Leeway allowed on exp and nbf. Default 30 s.
	Leeway time.Duration
	// URLSecret signs read URLs (SignReadURL). Default: derived from
	// HMACSecret (under its own label); without either, signed URLs are off.
	URLSecret []byte
	// Anonymous is granted to every caller, with or without a token.
	Anonymous Claim
	// CacheEntries bounds the verified-token cache. Default 100000.
	CacheEntries int
	Logger       *slog.Logger
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// Validate checks a Config without fetching anything.
func (c *Config) Validate() error {
	if len(c.HMACSecret) > 0 && len(c.HMACSecret) < 32 {
		return errors.New("auth: the HMAC secret must be at least 32 bytes")
	}
	if c.JWKSURL != "" && c.JWKSFile != "" {
		return errors.New("auth: give a JWKS URL or a JWKS file, not both")
	}
	if len(c.URLSecret) > 0 && len(c.URLSecret) < 32 {
		return errors.New("auth: the URL signing secret must be at least 32 bytes")
	}
	if _, err := c.Anonymous.Compile(); err != nil {
		return fmt.Errorf("auth: anonymous grants: %w", err)
	}
	return nil
}

// Enabled reports whether tokens are verified.
func (c *Config) Enabled() bool {
	return len(c.HMACSecret) > 0 || c.JWKSURL != "" || c.JWKSFile != ""
}

// Labels of the keys derived for signed URLs.
const (
	readURLLabel = "durastream/stream/read-url/v1"
	urlKeyLabel  = "durastream/auth/url-secret/v1"
)

// Authenticator verifies tokens and signed URLs and answers what a caller
// may do. Safe for concurrent use.
type Authenticator struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	parser    *jwt.Parser
	anonymous *Grants
	urls      *URLSigner // nil: signed URLs off
	keys      *keySet    // nil without a JWKS

	cache     *xsync.MapOf[string, *cached] // token -> verified grants
	cacheSize atomic.Int64
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

type cached struct {
	grants *Grants
	exp    time.Time // exp claim plus leeway
	keyGen uint64    // the key set generation it was verified under
}

// tokenClaims is what a token carries.
type tokenClaims struct {
	jwt.RegisteredClaims
	DS json.RawMessage `json:"ds"`
}

// New starts an Authenticator: with a JWKS it fetches the set once (an
// error if that fails) and refreshes it in the background until Close.
func New(cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.JWKSRefresh <= 0 {
		cfg.JWKSRefresh = 5 * time.Minute
	}
	if cfg.JWKSTimeout <= 0 {
		cfg.JWKSTimeout = 10 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.JWKSTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.CacheEntries <= 0 {
		cfg.CacheEntries = 100_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authenticator{cfg: cfg, log: cfg.Logger, now: cfg.Now, cache: xsync.NewMapOf[string, *cached]()}
	a.anonymous, _ = cfg.Anonymous.Compile()
	var methods []string
	if len(cfg.HMACSecret) > 0 {
		methods = append(methods, "HS256")
	}
	if cfg.JWKSURL != "" || cfg.JWKSFile != "" {
		methods = append(methods, "EdDSA", "ES256", "RS256")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(cfg.Now)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	a.parser = jwt.NewParser(opts...)
	switch {
	case len(cfg.URLSecret) > 0:
		a.urls = NewURLSigner(cfg.URLSecret, readURLLabel)
	case len(cfg.HMACSecret) > 0:
		a.urls = NewURLSigner(NewURLSigner(cfg.HMACSecret, urlKeyLabel).key, readURLLabel)
	}
	if cfg.JWKSURL != "" || cfg.JWKSFile != "" {
		ctx, stop := context.WithCancel(context.Background())
		a.stop = stop
		a.keys = newKeySet(cfg, a.log)
		if err := a.keys.refresh(ctx); err != nil {
			stop()
			return nil, fmt.Errorf("auth: JWKS: %w", err)
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.keys.run(ctx)
		}()
	}
	return a, nil
}

// Close stops the JWKS refresh.
func (a *Authenticator) Close() {
	if a.stop != nil {
		a.stop()
		a.wg.Wait()
	}
}

// Enabled reports whether tokens are verified.
func (a *Authenticator) Enabled() bool { return a != nil && a.cfg.Enabled() }

// SignedURLs reports whether signed read URLs are on.
func (a *Authenticator) SignedURLs() bool { return a != nil && a.urls != nil }

// Error is why a credential was refused: a 401 with Reason in
// WWW-Authenticate.
type Error struct{ Reason string }

func (e *Error) Error() string { return "auth: " + e.Reason }

var (
	errMissing      = &Error{"no token"}
	errExpired      = &Error{"token expired"}
	errNotYet       = &Error{"token not yet valid"}
	errSignature    = &Error{"bad signature"}
	errUnknownKey   = &Error{"unknown key id"}
	errAudience     = &Error{"wrong audience"}
	errIssuer       = &Error{"wrong issuer"}
	errMalformed    = &Error{"malformed token"}
	errAlgorithm    = &Error{"signing algorithm not accepted"}
	errNoExp        = &Error{"token has no exp claim"}
	errNoIss        = &Error{"token has no iss claim"}
	errNoAud        = &Error{"token has no aud claim"}
	errClaim        = &Error{"malformed ds claim"}
	errURLSignature = &Error{"bad URL signature"}
	errURLExpired   = &Error{"signed URL expired"}
	errURLsOff      = &Error{"signed URLs are not enabled on this server"}
)

// Verify checks a token and returns its grants. A token verified before is
// answered from a cache keyed by the token until its exp (and while the
// key set it was verified under is unchanged): a map lookup, not a
// signature check.
func (a *Authenticator) Verify(token string) (*Grants, error) {
	if token == "" {
		return nil, errMissing
	}
	now := a.now()
	if c, ok := a.cache.Load(token); ok {
		if now.Before(c.exp) && (a.keys == nil || c.keyGen == a.keys.gen.Load()) {
			return c.grants, nil
		}
		a.cache.Delete(token)
		a.cacheSize.Add(-1)
	}
	var gen uint64
	if a.keys != nil {
		gen = a.keys.gen.Load()
	}
	var claims tokenClaims
	_, err := a.parser.ParseWithClaims(token, &claims, a.keyFor)
	if err != nil {
		return nil, a.mapJWTError(err, &claims)
	}
	g := &Grants{}
	if len(claims.DS) > 0 && string(claims.DS) != "null" {
		if g, err = ParseClaim(claims.DS); err != nil {
			return nil, &Error{errClaim.Reason + ": " + err.Error()}
		}
	}
	exp := claims.ExpiresAt.Time.Add(a.cfg.Leeway)
	if a.cacheSize.Add(1) > int64(a.cfg.CacheEntries) {
		// Full: start over (verified tokens are cheap to verify again).
		a.cache.Clear()
		a.cacheSize.Store(1)
	}
	a.cache.Store(token, &cached{grants: g, exp: exp, keyGen: gen})
	return g, nil
}

// keyFor picks the verification key of a token: the HMAC secret for HS256
// (never a public key: no algorithm confusion), the JWKS key named by kid
// otherwise.
func (a *Authenticator) keyFor(t *jwt.Token) (any, error) {
	if t.Method.Alg() == "HS256" {
		return a.cfg.HMACSecret, nil
	}
	if a.keys == nil {
		return nil, errAlgorithm
	}
	kid, _ := t.Header["kid"].(string)
	return a.keys.key(kid, t.Method.Alg())
}

// mapJWTError names why jwt refused a token. c holds the token's claims
// when the refusal is about them (they are checked after the signature).
func (a *Authenticator) mapJWTError(err error, c *tokenClaims) error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, jwt.ErrTokenExpired):
		return errExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return errNotYet
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// One error for exp, iss and aud alike: say which is missing.
		switch {
		case c.ExpiresAt == nil:
			return errNoExp
		case a.cfg.Issuer != "" && c.Issuer == "":
			return errNoIss
		case a.cfg.Audience != "":
			return errNoAud
		}
		return errMalformed
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return errAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errIssuer
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// jwt reports an algorithm outside WithValidMethods (none, HS512,
		// RS256 without a JWKS) as an invalid signature; say which it is.
		if strings.Contains(err.Error(), "signing method") {
			return errAlgorithm
		}
		return errSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return errAlgorithm
	default:
		return errMalformed
	}
}

// SignReadURL returns the query (expires=...&signature=...) that lets its
// holder read path until expires (GET and HEAD, catch-up and live).
func (a *Authenticator) SignReadURL(path string, expires time.Time) (string, error) {
	if a.urls == nil {
		return "", errURLsOff
	}
	e := expires.Unix()
	return fmt.Sprintf("expires=%d&signature=%s", e, a.urls.Sign(readSubject(path), e)), nil
}

func readSubject(path string) string { return "read\n" + path }

// verifyURL checks a signed read URL for path.
func (a *Authenticator) verifyURL(path, expires, signature string) error {
	if a.urls == nil {
		return errURLsOff
	}
	switch a.urls.Verify(readSubject(path), expires, signature, a.now()) {
	case nil:
		return nil
	case ErrSignatureExpired:
		return errURLExpired
	default:
		return errURLSignature
	}
}
