// Command webhookreceiver is a minimal durastream webhook receiver: it
// verifies each delivery's Webhook-Signature with the server's published
// JWK Set (PROTOCOL.md 6.5, 7.1), prints the wake, and answers
// {"done": true}, which acks the wake's snapshot.
//
//	go run ./examples/webhookreceiver -addr 127.0.0.1:9090 -jwks http://localhost:4437/v1/stream/__ds/jwks.json
//
// A receiver that needs longer answers {} and later POSTs its acks to the
// wake's callback_url with its callback_token (see the README).
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// replayWindow: deliveries signed longer ago (or ahead) are refused.
const replayWindow = 5 * time.Minute

func main() {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address")
	jwksURL := flag.String("jwks", "http://localhost:4437/v1/stream/__ds/jwks.json", "the server's webhook JWKS")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		if err := verify(*jwksURL, r.Header.Get("Webhook-Signature"), body, time.Now()); err != nil {
			log.Printf("refused a delivery: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var wake struct {
			SubscriptionID string `json:"subscription_id"`
			Generation     uint64 `json:"generation"`
			Streams        []struct {
				Path  string `json:"path"`
				Acked string `json:"acked_offset"`
				Tail  string `json:"tail_offset"`
			} `json:"streams"`
		}
		json.Unmarshal(body, &wake)
		for _, s := range wake.Streams {
			// A real worker reads s.Path from s.Acked up to s.Tail here.
			log.Printf("wake: subscription %s generation %d: %s has data %s..%s", wake.SubscriptionID, wake.Generation, s.Path, s.Acked, s.Tail)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"done":true}`)
	})
	log.Printf("listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}

// verify checks "t=<unix>,kid=<kid>,ed25519=<base64url sig>" over
// "<t>.<body>" with the JWKS key named by kid.
func verify(jwksURL, header string, body []byte, now time.Time) error {
	var ts, kid, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "kid":
			kid = v
		case "ed25519":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || kid == "" || sig == "" {
		return errors.New("malformed Webhook-Signature")
	}
	if d := now.Sub(time.Unix(t, 0)); d > replayWindow || d < -replayWindow {
		return errors.New("timestamp outside the replay window")
	}
	pub, err := publicKey(jwksURL, kid)
	if err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !ed25519.Verify(pub, append([]byte(ts+"."), body...), raw) {
		return errors.New("signature does not verify")
	}
	return nil
}

// publicKey fetches the JWKS and returns the Ed25519 key kid. (A long-lived
// receiver caches the set and refetches it on an unknown kid.)
func publicKey(jwksURL, kid string) (ed25519.PublicKey, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(jwksURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kty, Crv, Kid, X string }
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	for _, k := range set.Keys {
		if k.Kid == kid && k.Kty == "OKP" && k.Crv == "Ed25519" {
			b, err := base64.RawURLEncoding.DecodeString(k.X)
			if err != nil || len(b) != ed25519.PublicKeySize {
				return nil, errors.New("JWKS: malformed key")
			}
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, fmt.Errorf("kid %s is not in the JWKS", kid)
}
