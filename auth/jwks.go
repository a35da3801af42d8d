package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 1 << 20

// unknownKidRefresh is how often a token naming an unknown key id may
// trigger a refresh.
const unknownKidRefresh = 10 * time.Second

// keySet is the current JSON Web Key Set (parsed by keyfunc/jwkset),
// refreshed from a URL or a file. gen counts changes of its content: the
// token cache drops entries verified under an older set, so a removed key
// stops being accepted at the refresh that removes it.
type keySet struct {
	cfg Config
	log *slog.Logger
	gen atomic.Uint64

	mu      sync.Mutex // serializes refreshes
	raw     []byte
	kf      atomic.Pointer[keyfunc.Keyfunc]
	last    atomic.Int64  // unix nanoseconds of the start of the last refresh
	done    atomic.Uint64 // refreshes finished (successful or not)
	trigger chan struct{}
}

func newKeySet(cfg Config, log *slog.Logger) *keySet {
	return &keySet{cfg: cfg, log: log, trigger: make(chan struct{}, 1)}
}

func (k *keySet) source() string {
	if k.cfg.JWKSURL != "" {
		return k.cfg.JWKSURL
	}
	return k.cfg.JWKSFile
}

func (k *keySet) fetch(ctx context.Context) ([]byte, error) {
	if k.cfg.JWKSFile != "" {
		f, err := os.Open(k.cfg.JWKSFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
	}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.JWKSTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := k.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", k.cfg.JWKSURL, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
}

// refresh fetches the set; on any failure the last good set stays.
func (k *keySet) refresh(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	defer k.done.Add(1)
	k.last.Store(time.Now().UnixNano())
	raw, err := k.fetch(ctx)
	if err == nil && len(raw) > maxJWKSBytes {
		err = fmt.Errorf("larger than %d bytes", maxJWKSBytes)
	}
	if err != nil {
		return err
	}
	if bytes.Equal(raw, k.raw) {
		return nil
	}
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		return err
	}
	keys, err := kf.Storage().KeyReadAll(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("the key set has no usable keys")
	}
	k.raw = raw
	k.kf.Store(&kf)
	k.gen.Add(1)
	k.log.Info("auth: JWKS loaded", "source", k.source(), "keys", len(keys))
	return nil
}

// run refreshes every JWKSRefresh, and when asked (an unknown kid), until
// ctx ends.
func (k *keySet) run(ctx context.Context) {
	t := time.NewTicker(k.cfg.JWKSRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.trigger:
		}
		if err := k.refresh(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("auth: JWKS refresh failed; keeping the last good key set", "source", k.source(), "err", err)
		}
	}
}

// key returns the public key with id kid for alg. An unknown kid asks for
// a refresh (at most every unknownKidRefresh) and waits for it briefly, so
// a key added to the set is accepted without waiting for the next interval.
func (k *keySet) key(kid, alg string) (any, error) {
	if kid == "" {
		return nil, errUnknownKey // a JWKS may hold several keys: tokens must name theirs
	}
	for attempt := 0; ; attempt++ {
		kf := *k.kf.Load()
		key, err := kf.Keyfunc(&jwt.Token{Header: map[string]any{"alg": alg, "kid": kid}, Method: jwt.GetSigningMethod(alg)})
		if err == nil {
			return key, nil
		}
		if attempt > 0 || time.Since(time.Unix(0, k.last.Load())) < unknownKidRefresh {
			return nil, errUnknownKey
		}
		done := k.done.Load()
		select {
		case k.trigger <- struct{}{}:
		default:
		}
		for deadline := time.Now().Add(k.cfg.JWKSTimeout); k.done.Load() == done && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
}
