package main

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/golang-jwt/jwt/v5"
)

func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:4437": true, "localhost:4437": true, "[::1]:80": true, "127.9.9.9:1": true,
		":4437": false, "0.0.0.0:4437": false, "[::]:1": false, "10.0.0.1:80": false, "bad": false,
	} {
		if got := isLoopbackAddr(addr); got != want {
			t.Errorf("isLoopbackAddr(%q) = %v", addr, got)
		}
	}
}

// TestAuthFlagsExposure: the refuse-to-start rules serve applies, on the
// configured address strings (nothing listens): streams on a non-loopback
// address need tokens or --allow-anonymous; pprof on one needs
// --allow-remote-pprof, whatever the stream settings; neither opt-in
// covers the other.
func TestAuthFlagsExposure(t *testing.T) {
	clearEnv(t)
	secret := "--auth-hmac-secret=" + strings.Repeat("s", 32)
	for _, c := range []struct {
		args []string
		err  string // "": starts
	}{
		{nil, ""},
		{[]string{"--addr", "127.0.0.1:4437", "--fetch-addr", "localhost:4438", "--pprof-addr", "[::1]:6060"}, ""},
		{[]string{"--addr", "0.0.0.0:4437"}, "--addr 0.0.0.0:4437 listens beyond this machine, and no access control"},
		{[]string{"--addr", ":4437"}, "--allow-anonymous"},
		{[]string{"--fetch-addr", "10.1.2.3:4438"}, "--fetch-addr 10.1.2.3:4438"},
		{[]string{"--addr", "0.0.0.0:4437", "--allow-anonymous"}, ""},
		{[]string{"--addr", ":4437", "--fetch-addr", "[::]:4438", "--allow-anonymous"}, ""},
		{[]string{"--addr", "10.1.2.3:4437", "--allow-anonymous"}, ""},
		{[]string{"--addr", "0.0.0.0:4437", secret}, ""},
		{[]string{"--pprof-addr", "0.0.0.0:6060"}, "--pprof-addr 0.0.0.0:6060 listens beyond this machine, and pprof has no access control"},
		{[]string{"--pprof-addr", ":6060"}, "--allow-remote-pprof"},
		{[]string{"--pprof-addr", "10.0.0.5:6060", secret}, "--pprof-addr 10.0.0.5:6060"},
		{[]string{"--addr", ":4437", "--pprof-addr", ":6060", "--allow-anonymous"}, "--pprof-addr :6060"},
		{[]string{"--pprof-addr", "10.0.0.5:6060", "--allow-remote-pprof"}, ""},
		{[]string{"--addr", ":4437", "--pprof-addr", ":6060", "--allow-remote-pprof"}, "--addr :4437"},
		{[]string{"--addr", ":4437", "--pprof-addr", ":6060", "--allow-remote-pprof", "--allow-anonymous"}, ""},
	} {
		f, err := parseServeFlags(c.args)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		cfg, err := f.auth.config(slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		err = f.checkExposure(cfg)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q refused: %v", c.args, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: err %v, want one containing %q", c.args, err, c.err)
		}
	}
	t.Setenv("DURASTREAM_ALLOW_REMOTE_PPROF", "true")
	f, err := parseServeFlags([]string{"--pprof-addr", ":6060"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.checkExposure(auth.Config{}); err != nil {
		t.Errorf("DURASTREAM_ALLOW_REMOTE_PPROF=true: %v", err)
	}
}

// TestServeWithAuth: the binary with an HS256 secret from the environment
// and an anonymous read grant: tokens are required where granted nothing,
// and /health is open on --ops-addr only. (That a non-loopback address is
// allowed once auth is on is TestAuthFlagsExposure: tests listen on loopback.)
func TestServeWithAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ops := ln.Addr().String()
	ln.Close()
	secret := strings.Repeat("x", 40)
	c := startServerEnv(t, bin, []string{"DURASTREAM_AUTH_HMAC_SECRET=" + secret}, "serve", "--addr", "127.0.0.1:0", "--durability", "memory", "--log-format", "json",
		"--anonymous", "read:public/**", "--ops-addr", ops)
	defer c.stop(t)
	base := c.base
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(),
		"ds": map[string]any{"create": []string{"logs/**"}, "append": []string{"logs/**"}}}).SignedString([]byte(secret))
	if resp, _ := httpDo(t, "PUT", base+"/v1/stream/logs/a", nil, "Content-Type", "text/plain"); resp.StatusCode != 401 ||
		!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("create without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, _ := httpDo(t, "PUT", base+"/v1/stream/logs/a", nil, "Content-Type", "text/plain", "Authorization", "Bearer "+tok); resp.StatusCode != 201 {
		t.Errorf("create with a token: %d", resp.StatusCode)
	}
	if resp, _ := httpDo(t, "GET", base+"/v1/stream/logs/a?offset=-1", nil, "Authorization", "Bearer "+tok); resp.StatusCode != 403 {
		t.Errorf("read without a read grant: %d", resp.StatusCode)
	}
	if resp, _ := httpDo(t, "GET", base+"/health", nil); resp.StatusCode != 401 {
		t.Errorf("/health on the main listener without a token: %d", resp.StatusCode)
	}
	resp, err := http.Get("http://" + ops + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/health on --ops-addr: %d", resp.StatusCode)
	}
}
