package bench

// Access control's cost per append: BenchmarkHandlerAppendAuth runs the
// BenchmarkHandlerAppend g=64 load with no auth, an HS256 token and an
// EdDSA token (JWKS file) on every request, and reports appends/s and the
// process CPU time per append. Verified tokens are cached, so a request
// with a token seen before costs a map lookup and a grant match; "-fresh"
// variants sign a new token for every request (a signature check each) to
// show what the cache saves.
//
//	go test ./bench -run '^$' -bench HandlerAppendAuth -benchtime 20000x -count 5

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/golang-jwt/jwt/v5"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkHandlerAppendAuth(b *testing.B) {
	secret := []byte("bench-secret-bench-secret-bench-secret")
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwks := filepath.Join(b.TempDir(), "jwks.json")
	set, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": "k",
		"alg": "EdDSA", "x": base64.RawURLEncoding.EncodeToString(pub)}}})
	if err := os.WriteFile(jwks, set, 0o600); err != nil {
		b.Fatal(err)
	}
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "jti": strconv.FormatInt(time.Now().UnixNano(), 10),
			"ds": map[string]any{"append": []string{"b/*"}, "create": []string{"b/*"}}}
	}
	hs := func() string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims()).SignedString(secret)
		return "Bearer " + s
	}
	ed := func() string {
		t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims())
		t.Header["kid"] = "k"
		s, _ := t.SignedString(priv)
		return "Bearer " + s
	}
	for _, c := range []struct {
		name  string
		mint  func() string
		fresh bool
	}{{"none", nil, false}, {"hs256", hs, false}, {"eddsa", ed, false}, {"hs256-fresh", hs, true}, {"eddsa-fresh", ed, true}} {
		b.Run(c.name, func(b *testing.B) {
			eng, err := engine.Open(b.TempDir(), &engine.Options{Durability: engine.DurabilitySync})
			if err != nil {
				b.Fatal(err)
			}
			cfg := server.Config{LongPollTimeout: time.Second}
			if c.mint != nil {
				a, err := auth.New(auth.Config{HMACSecret: secret, JWKSFile: jwks})
				if err != nil {
					b.Fatal(err)
				}
				defer a.Close()
				cfg.Auth = a
			}
			srv, err := server.New(eng, cfg)
			if err != nil {
				b.Fatal(err)
			}
			s := &benchSrv{eng: eng, srv: srv}
			defer func() { srv.Shutdown(); eng.Close() }()
			const g = 64
			body := payload(100)
			tmpls := make([]*httpRequestSet, g)
			for w := range tmpls {
				p := "/v1/stream/b/" + strconv.Itoa(w)
				create := req("PUT", p, octet)
				if c.mint != nil {
					create.Header.Set("Authorization", c.mint())
				}
				if code := s.serve(&discardWriter{}, create, nil); code != 201 {
					b.Fatalf("create: %d", code)
				}
				tmpls[w] = &httpRequestSet{r: req("POST", p, octet)}
				if c.mint != nil {
					tmpls[w].r.Header.Set("Authorization", c.mint())
				}
			}
			// Fresh tokens are signed before the timer starts.
			var fresh [][]string
			if c.fresh {
				fresh = make([][]string, g)
				for w := range fresh {
					for range b.N/g + 1 {
						fresh[w] = append(fresh[w], c.mint())
					}
				}
			}
			b.SetBytes(int64(len(body)))
			cpu0 := cpuTime()
			parallelOps(b, g, func(w int, dw *discardWriter) int {
				t := tmpls[w]
				if c.fresh {
					r := t.r.Clone(t.r.Context())
					r.Header.Set("Authorization", fresh[w][t.n%len(fresh[w])])
					t.n++
					return s.serve(dw, r, body)
				}
				return s.serve(dw, t.r, body)
			})
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

type httpRequestSet struct {
	r *http.Request
	n int
}
