package main

import (
	"slices"
	"testing"
	"time"
)

func TestProxyFlags(t *testing.T) {
	f, err := parseServeFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.proxySecret != "" || len(f.proxyAllow) != 0 || f.proxyURLTTL != 24*time.Hour || f.proxyBaseURL != "" {
		t.Errorf("defaults: secret %q allow %q ttl %v base %q", f.proxySecret, f.proxyAllow, f.proxyURLTTL, f.proxyBaseURL)
	}
	f, err = parseServeFlags([]string{"--proxy-secret", "0123456789abcdef", "--proxy-allow", "https://a.example/**",
		"--proxy-allow", "http://127.0.0.1:8081/**, https://b.example/v1/*", "--proxy-url-ttl", "1h",
		"--proxy-base-url", "https://api.example/v1/proxy"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://a.example/**", "http://127.0.0.1:8081/**", "https://b.example/v1/*"}
	if !slices.Equal(f.proxyAllow, want) || f.proxyURLTTL != time.Hour || f.proxyBaseURL != "https://api.example/v1/proxy" {
		t.Errorf("parsed: allow %q ttl %v base %q", f.proxyAllow, f.proxyURLTTL, f.proxyBaseURL)
	}
	// The environment: one variable, comma- or space-separated.
	t.Setenv("DURASTREAM_PROXY_ALLOW", "https://a.example/** https://b.example/**,https://c.example/**")
	if f, err = parseServeFlags(nil); err != nil {
		t.Fatal(err)
	}
	if len(f.proxyAllow) != 3 {
		t.Errorf("from the environment: %q", f.proxyAllow)
	}
}
