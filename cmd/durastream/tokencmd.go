package main

// durastream token and durastream sign-url: credentials for scripts, tests
// and development, made with the same secrets serve verifies with (the
// environment variables serve reads, or the same flags).

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/golang-jwt/jwt/v5"
)

// tokenCmd prints an HS256 token.
func tokenCmd(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	var a authFlags
	var grants patternList
	var sub string
	var ttl time.Duration
	var ops bool
	fs.StringVar(&a.hmacSecret, "auth-hmac-secret", os.Getenv("DURASTREAM_AUTH_HMAC_SECRET"), "the HS256 secret (default: $DURASTREAM_AUTH_HMAC_SECRET)")
	fs.StringVar(&a.hmacSecretFile, "auth-hmac-secret-file", os.Getenv("DURASTREAM_AUTH_HMAC_SECRET_FILE"), "read the HS256 secret from this file")
	fs.StringVar(&a.issuer, "auth-issuer", os.Getenv("DURASTREAM_AUTH_ISSUER"), "iss claim")
	fs.StringVar(&a.audience, "auth-audience", os.Getenv("DURASTREAM_AUTH_AUDIENCE"), "aud claim")
	fs.Var(&grants, "grant", "OPS:PATTERN to grant, as serve --anonymous takes it, e.g. read:chats/42 or all:** (repeatable)")
	fs.BoolVar(&ops, "ops", false, "grant /health and /metrics")
	fs.StringVar(&sub, "sub", "durastream-cli", "sub claim")
	fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime (exp = now + ttl)")
	if err := parseArgs(fs, args); err != nil {
		return quitOnHelp(err)
	}
	secret, err := secretFrom(a.hmacSecret, a.hmacSecretFile, "auth-hmac-secret")
	if err != nil {
		return err
	}
	if len(secret) < 32 {
		return errors.New("token: an HS256 secret of at least 32 bytes is needed (--auth-hmac-secret-file or DURASTREAM_AUTH_HMAC_SECRET)")
	}
	if len(grants) == 0 && !ops {
		return errors.New("token: nothing granted: give --grant OPS:PATTERN (or --ops)")
	}
	var c auth.Claim
	for _, g := range grants {
		if err := c.ParseGrantFlag(g); err != nil {
			return fmt.Errorf("--grant %w", err)
		}
	}
	c.Ops = ops
	now := time.Now()
	claims := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix(), "ds": c}
	if a.issuer != "" {
		claims["iss"] = a.issuer
	}
	if a.audience != "" {
		claims["aud"] = a.audience
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// signURLCmd prints the query of a signed read URL of one stream.
func signURLCmd(args []string) error {
	fs := flag.NewFlagSet("sign-url", flag.ContinueOnError)
	var a authFlags
	var path string
	var ttl time.Duration
	fs.StringVar(&a.hmacSecret, "auth-hmac-secret", os.Getenv("DURASTREAM_AUTH_HMAC_SECRET"), "the HS256 secret, when the URL secret is derived from it")
	fs.StringVar(&a.hmacSecretFile, "auth-hmac-secret-file", os.Getenv("DURASTREAM_AUTH_HMAC_SECRET_FILE"), "read the HS256 secret from this file")
	fs.StringVar(&a.urlSecret, "auth-url-secret", os.Getenv("DURASTREAM_AUTH_URL_SECRET"), "the signed-URL secret (default: $DURASTREAM_AUTH_URL_SECRET)")
	fs.StringVar(&a.urlSecretFile, "auth-url-secret-file", os.Getenv("DURASTREAM_AUTH_URL_SECRET_FILE"), "read the signed-URL secret from this file")
	fs.StringVar(&path, "path", "", "stream path, e.g. chats/42 (required)")
	fs.DurationVar(&ttl, "ttl", 15*time.Minute, "how long the URL is valid")
	if err := parseArgs(fs, args); err != nil {
		return quitOnHelp(err)
	}
	cfg, err := a.config(nil)
	if err != nil {
		return err
	}
	path = strings.Trim(path, "/")
	if path == "" {
		return errors.New("sign-url: --path is required")
	}
	authn, err := auth.New(cfg)
	if err != nil {
		return err
	}
	q, err := authn.SignReadURL(path, time.Now().Add(ttl))
	if err != nil {
		return fmt.Errorf("sign-url: %w (give --auth-url-secret or --auth-hmac-secret)", err)
	}
	fmt.Println(q)
	return nil
}
