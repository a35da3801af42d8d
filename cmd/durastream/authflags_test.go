package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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

// TestServeWithAuth: the binary with an HS256 secret from the environment
// and an anonymous read grant: tokens are required where granted nothing,
// /health is open on --ops-addr only, and a non-loopback address is
// allowed once auth is on.
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
	c := startServerEnv(t, bin, []string{"DURASTREAM_AUTH_HMAC_SECRET=" + secret}, "serve", "--addr", "0.0.0.0:0", "--durability", "memory", "--log-format", "json",
		"--anonymous", "read:public/**", "--ops-addr", ops)
	defer c.stop(t)
	base := strings.Replace(c.base, "[::]", "127.0.0.1", 1)
	base = strings.Replace(base, "0.0.0.0", "127.0.0.1", 1)
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
