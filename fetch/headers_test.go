package fetch

import (
	"net/http"
	"reflect"
	"testing"
)

// secClientRequest is a proxy-protocol create request's headers with one of
// everything.
func secClientRequest() http.Header {
	return http.Header{
		"Authorization":          {"Bearer proxy-secret"},
		"Upstream-Authorization": {"Bearer sk-upstream"},
		"Upstream-Url":           {"https://api.example.com/v1/chat"},
		"Upstream-Method":        {"POST"},
		"Upstream-Other":         {"x"},
		"Host":                   {"durastream.local"},
		"Connection":             {"keep-alive, X-Hop, Upgrade"},
		"Proxy-Connection":       {"X-Proxy-Hop"},
		"X-Hop":                  {"connection-scoped"},
		"X-Proxy-Hop":            {"also"},
		"Keep-Alive":             {"timeout=5"},
		"Proxy-Authorization":    {"Basic cHJveHk="},
		"Proxy-Authenticate":     {"Basic"},
		"Te":                     {"trailers"},
		"Trailer":                {"X-Checksum"},
		"Trailers":               {"X-Checksum"},
		"Transfer-Encoding":      {"chunked"},
		"Upgrade":                {"websocket"},
		"Content-Length":         {"42"},
		"Expect":                 {"100-continue"},
		"Accept-Encoding":        {"gzip, br"},
		"Content-Type":           {"application/json"},
		"Accept":                 {"text/event-stream"},
		"Cookie":                 {"session=abc"},
		"User-Agent":             {"test/1"},
		"Openai-Organization":    {"org-1"},
		"X-Custom":               {"a", "b"},
	}
}

func TestHeaderUpstreamRequest(t *testing.T) {
	in := secClientRequest()
	before := secClientRequest()
	got := UpstreamRequestHeader(in)
	want := http.Header{
		"Authorization":       {"Bearer sk-upstream"},
		"Accept-Encoding":     {"identity"},
		"Content-Type":        {"application/json"},
		"Accept":              {"text/event-stream"},
		"Cookie":              {"session=abc"},
		"User-Agent":          {"test/1"},
		"Openai-Organization": {"org-1"},
		"X-Custom":            {"a", "b"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UpstreamRequestHeader:\n got %v\nwant %v", got, want)
	}
	if !reflect.DeepEqual(in, before) {
		t.Error("the input was modified")
	}
	got["X-Custom"][0] = "changed"
	if in["X-Custom"][0] != "a" {
		t.Error("the output aliases the input")
	}
}

func TestHeaderUpstreamRequestNoUpstreamAuth(t *testing.T) {
	got := UpstreamRequestHeader(http.Header{"Authorization": {"Bearer proxy-secret"}, "Accept": {"*/*"}})
	if v, ok := got["Authorization"]; ok {
		t.Errorf("Authorization forwarded without Upstream-Authorization: %v", v)
	}
	if got.Get("Accept") != "*/*" || got.Get("Accept-Encoding") != "identity" {
		t.Errorf("got %v", got)
	}
}

func TestHeaderUpstreamRequestNonCanonicalKeys(t *testing.T) {
	in := http.Header{
		"authorization":          {"Bearer proxy-secret"},
		"upstream-authorization": {"Bearer sk"},
		"upstream-url":           {"https://x"},
		"connection":             {"x-hop"},
		"x-hop":                  {"1"},
		"host":                   {"h"},
		"transfer-encoding":      {"chunked"},
		"content-type":           {"text/plain"},
	}
	got := UpstreamRequestHeader(in)
	want := http.Header{
		"Authorization":   {"Bearer sk"},
		"Accept-Encoding": {"identity"},
		"Content-Type":    {"text/plain"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestHeaderPassthroughRequest(t *testing.T) {
	got := PassthroughRequestHeader(secClientRequest())
	want := http.Header{
		"Authorization":       {"Bearer proxy-secret"}, // the durablefetch client's own, meant for the upstream
		"Accept-Encoding":     {"identity"},
		"Content-Type":        {"application/json"},
		"Accept":              {"text/event-stream"},
		"Cookie":              {"session=abc"},
		"User-Agent":          {"test/1"},
		"Openai-Organization": {"org-1"},
		"X-Custom":            {"a", "b"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PassthroughRequestHeader:\n got %v\nwant %v", got, want)
	}
	if got := PassthroughRequestHeader(nil); !reflect.DeepEqual(got, http.Header{"Accept-Encoding": {"identity"}}) {
		t.Errorf("nil input: %v", got)
	}
}

func TestHeaderStoredResponse(t *testing.T) {
	in := http.Header{
		"Content-Type":                {"text/event-stream; charset=utf-8", "text/html"},
		"Content-Language":            {"en", "de"},
		"Content-Disposition":         {`attachment; filename="a.png"`},
		"Last-Modified":               {"Wed, 21 Oct 2015 07:28:00 GMT"},
		"X-Request-Id":                {"req_123"},
		"Request-Id":                  {"req_456"},
		"Set-Cookie":                  {"session=secret; HttpOnly"},
		"Www-Authenticate":            {"Bearer"},
		"Authentication-Info":         {"x"},
		"Authorization":               {"Bearer leaked"},
		"Proxy-Authenticate":          {"Basic"},
		"Connection":                  {"close"},
		"Keep-Alive":                  {"timeout=5"},
		"Transfer-Encoding":           {"chunked"},
		"Content-Length":              {"100"},
		"Content-Encoding":            {"gzip"},
		"Content-Range":               {"bytes 0-9/100"},
		"Trailer":                     {"X-Sum"},
		"Upgrade":                     {"h2c"},
		"Cache-Control":               {"max-age=3600"},
		"Etag":                        {`"abc"`},
		"Expires":                     {"0"},
		"Age":                         {"10"},
		"Vary":                        {"Accept-Encoding"},
		"Location":                    {"https://elsewhere"},
		"Access-Control-Allow-Origin": {"https://one.example"},
		"Strict-Transport-Security":   {"max-age=1"},
		"X-Csrf-Token":                {"t"},
		"X-Subject-Token":             {"keystone-token"},
		"X-Ratelimit-Remaining":       {"9"},
		"Openai-Organization":         {"org-1"},
		"Stream-Next-Offset":          {"123"},
	}
	got := StoredResponseHeader(in)
	want := http.Header{
		"Content-Type":        {"text/event-stream; charset=utf-8"},
		"Content-Language":    {"en", "de"},
		"Content-Disposition": {`attachment; filename="a.png"`},
		"Last-Modified":       {"Wed, 21 Oct 2015 07:28:00 GMT"},
		"X-Request-Id":        {"req_123"},
		"Request-Id":          {"req_456"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("StoredResponseHeader:\n got %v\nwant %v", got, want)
	}
	got["Content-Language"][0] = "fr"
	if in["Content-Language"][0] != "en" {
		t.Error("the output aliases the input")
	}
	if got := StoredResponseHeader(nil); len(got) != 0 {
		t.Errorf("nil input: %v", got)
	}
}

func TestHeaderPlainBody(t *testing.T) {
	tests := []struct {
		h    http.Header
		want bool
	}{
		{http.Header{}, true},
		{http.Header{"Content-Encoding": {""}}, true},
		{http.Header{"Content-Encoding": {"identity"}}, true},
		{http.Header{"Content-Encoding": {"Identity"}}, true},
		{http.Header{"Content-Encoding": {"gzip"}}, false},
		{http.Header{"Content-Encoding": {"identity, br"}}, false},
		{http.Header{"Content-Encoding": {"identity", "deflate"}}, false},
	}
	for _, tt := range tests {
		if got := PlainBody(tt.h); got != tt.want {
			t.Errorf("PlainBody(%v) = %v, want %v", tt.h, got, tt.want)
		}
	}
}
