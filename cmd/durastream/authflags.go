package main

// Access control flags (package auth) and the refuse-to-start rule.

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/durastream/durastream/auth"
)

type authFlags struct {
	hmacSecret, hmacSecretFile string
	urlSecret, urlSecretFile   string
	jwksURL, jwksFile          string
	jwksRefresh, leeway        time.Duration
	issuer, audience           string
	anonymous                  patternList
	allowAnonymous             bool
	allowRemotePprof           bool
	opsAddr                    string
}

func (a *authFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.hmacSecret, "auth-hmac-secret", "", "verify HS256 bearer tokens with this secret (at least 32 bytes; prefer DURASTREAM_AUTH_HMAC_SECRET or --auth-hmac-secret-file: flags show in ps)")
	fs.StringVar(&a.hmacSecretFile, "auth-hmac-secret-file", "", "read the HS256 secret from this file (trailing newline ignored)")
	fs.StringVar(&a.jwksURL, "auth-jwks-url", "", "verify EdDSA/ES256/RS256 bearer tokens with the JSON Web Key Set at this URL (refreshed)")
	fs.StringVar(&a.jwksFile, "auth-jwks-file", "", "verify EdDSA/ES256/RS256 bearer tokens with the JSON Web Key Set in this file (re-read at every refresh)")
	fs.DurationVar(&a.jwksRefresh, "auth-jwks-refresh", 5*time.Minute, "how often the JWKS is refreshed (also at most every 10s when a token names an unknown key)")
	fs.StringVar(&a.issuer, "auth-issuer", "", "tokens must carry this iss (unchecked when empty)")
	fs.StringVar(&a.audience, "auth-audience", "", "tokens must carry this aud (unchecked when empty)")
	fs.DurationVar(&a.leeway, "auth-leeway", 30*time.Second, "clock skew allowed on exp and nbf")
	fs.StringVar(&a.urlSecret, "auth-url-secret", "", "secret of signed read URLs (at least 32 bytes; default: derived from the HS256 secret)")
	fs.StringVar(&a.urlSecretFile, "auth-url-secret-file", "", "read the signed-URL secret from this file")
	fs.Var(&a.anonymous, "anonymous", "grant OPS:PATTERN to every caller, token or not, e.g. read:public/** or all:** (repeatable; OPS: read, append, create, delete, all)")
	fs.BoolVar(&a.allowAnonymous, "allow-anonymous", false, "start on a non-loopback address without token verification (anyone who can reach it may create, write and delete every stream)")
	fs.BoolVar(&a.allowRemotePprof, "allow-remote-pprof", false, "let --pprof-addr listen on a non-loopback address (pprof has no access control, even with tokens on: whoever reaches it can read the heap, secrets included, and burn CPU)")
	fs.StringVar(&a.opsAddr, "ops-addr", "", "serve /health and /metrics without a token on this extra listener (e.g. a private interface); on the main listener they need a token with \"ops\": true when auth is on")
}

func secretFrom(value, file, name string) ([]byte, error) {
	if file == "" {
		return []byte(value), nil
	}
	if value != "" {
		return nil, fmt.Errorf("give --%s or --%s-file, not both", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--%s-file: %w", name, err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}

// config builds the auth configuration (without fetching anything).
func (a *authFlags) config(log *slog.Logger) (auth.Config, error) {
	hmac, err := secretFrom(a.hmacSecret, a.hmacSecretFile, "auth-hmac-secret")
	if err != nil {
		return auth.Config{}, err
	}
	urls, err := secretFrom(a.urlSecret, a.urlSecretFile, "auth-url-secret")
	if err != nil {
		return auth.Config{}, err
	}
	c := auth.Config{HMACSecret: hmac, URLSecret: urls, JWKSURL: a.jwksURL, JWKSFile: a.jwksFile,
		JWKSRefresh: a.jwksRefresh, Issuer: a.issuer, Audience: a.audience, Leeway: a.leeway, Logger: log}
	for _, g := range a.anonymous {
		if err := c.Anonymous.ParseGrantFlag(g); err != nil {
			return auth.Config{}, fmt.Errorf("--anonymous %w", err)
		}
	}
	if err := c.Validate(); err != nil {
		return auth.Config{}, err
	}
	if !c.Enabled() && len(a.anonymous) > 0 {
		return auth.Config{}, errors.New("--anonymous restricts nothing without token verification (--auth-hmac-secret, --auth-jwks-url or --auth-jwks-file)")
	}
	return c, nil
}

// checkExposure applies the refuse-to-start rules to the addresses serve
// listens on (nothing is bound yet).
func (f *serveFlags) checkExposure(c auth.Config) error {
	if err := f.auth.checkStreams(c, map[string]string{"addr": f.addr, "fetch-addr": f.fetchAddr}); err != nil {
		return err
	}
	return f.auth.checkPprof(f.pprofAddr)
}

// checkStreams refuses to serve streams without access control on an
// address other hosts can reach, unless --allow-anonymous says so.
func (a *authFlags) checkStreams(c auth.Config, addrs map[string]string) error {
	if c.Enabled() || a.allowAnonymous {
		return nil
	}
	for flagName, addr := range addrs {
		if addr == "" || isLoopbackAddr(addr) {
			continue
		}
		return fmt.Errorf("--%s %s listens beyond this machine, and no access control is configured: "+
			"anyone who can reach it could create, append to and delete every stream. "+
			"Configure tokens (--auth-hmac-secret or --auth-jwks-url; see the README), "+
			"listen on localhost, or pass --allow-anonymous to serve openly anyway", flagName, addr)
	}
	return nil
}

// checkPprof refuses pprof on an address other hosts can reach unless
// --allow-remote-pprof says so. Tokens do not cover pprof, so neither
// access control nor --allow-anonymous bears on it: a heap profile shows
// what the heap holds (the HMAC secret, tokens, stream data).
func (a *authFlags) checkPprof(addr string) error {
	if addr == "" || isLoopbackAddr(addr) || a.allowRemotePprof {
		return nil
	}
	return fmt.Errorf("--pprof-addr %s listens beyond this machine, and pprof has no access control "+
		"(tokens do not cover it): anyone who can reach it could read the heap, secrets included, "+
		"and burn CPU with profiles. Listen on localhost (e.g. --pprof-addr localhost:6060, through "+
		"an SSH tunnel from elsewhere), or pass --allow-remote-pprof if only trusted hosts can reach %s", addr, addr)
}

// isLoopbackAddr reports whether host:port can only be reached from this
// machine: a loopback IP, or a name that resolves to loopback IPs only.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false // ":4437" listens on every interface
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// serveOps serves /health and /metrics without a token (--ops-addr).
func serveOps(addr string, srv interface{ OpsHandler() http.Handler }, log *slog.Logger) error {
	// Bound before the server says it is serving, so /health answers as
	// soon as it does, and a taken address fails the start.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--ops-addr: %w", err)
	}
	hs := &http.Server{Handler: srv.OpsHandler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("health and metrics serving", "addr", ln.Addr().String())
	go func() {
		if err := hs.Serve(ln); err != nil {
			log.Error("ops listener", "err", err)
		}
	}()
	return nil
}
