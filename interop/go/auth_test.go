package interop

// Access control through client-go: a token in the per-operation header
// options, and the errors the client returns for 401 and 403. Streams
// under interop-go-auth/ are not granted to anonymous callers.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	ds "github.com/durable-streams/durable-streams/packages/client-go"
)

func authPath(t *testing.T) (string, string) {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	p := fmt.Sprintf("interop-go-auth/%s-%d", name, streamSeq.Add(1))
	return p, streamPrefix + p
}

func bearer(t *testing.T, grants ...string) map[string]string {
	t.Helper()
	var args []string
	for _, g := range grants {
		args = append(args, "--grant", g)
	}
	tok, err := mintToken(args...)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + tok}
}

func TestAuthTokenWithClientGo(t *testing.T) {
	path, url := authPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := newClient()
	s := c.Stream(url)
	rw := bearer(t, "create:"+path, "append:"+path, "read:"+path)

	if err := s.Create(ctx, ds.WithContentType("text/plain")); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("create without a token: %v (status %d), want 401", err, statusOf(err))
	}
	if err := s.Create(ctx, ds.WithContentType("text/plain"), ds.WithCreateHeaders(bearer(t, "read:"+path))); statusOf(err) != http.StatusForbidden {
		t.Fatalf("create with a read-only token: %v, want 403", err)
	}
	if err := s.Create(ctx, ds.WithContentType("text/plain"), ds.WithCreateHeaders(rw)); err != nil {
		t.Fatalf("create with a token: %v", err)
	}
	if _, err := s.Append(ctx, []byte("granted"), ds.WithAppendHeaders(rw)); err != nil {
		t.Fatalf("append with a token: %v", err)
	}
	if _, err := s.Append(ctx, []byte("refused"), ds.WithAppendHeaders(bearer(t, "append:interop-go-auth/other"))); statusOf(err) != http.StatusForbidden {
		t.Fatalf("append with a token for another stream: %v, want 403", err)
	}
	it := s.Read(ctx, ds.WithReadHeaders(rw))
	defer it.Close()
	chunk, err := it.Next()
	if err != nil || string(chunk.Data) != "granted" {
		t.Fatalf("read with a token: %q, %v", chunk.Data, err)
	}
	it2 := s.Read(ctx)
	defer it2.Close()
	if _, err := it2.Next(); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("read without a token: %v, want 401", err)
	}
}
