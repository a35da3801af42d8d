package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/tier"
	"github.com/durastream/durastream/tier/s3test"
)

// The tier's flags refuse what cannot work, with a message that says why,
// before anything is opened.
func TestTierFlagErrors(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	cases := []struct {
		name       string
		tf         tierFlags
		durability string
		want       string
	}{
		{"budget without a bucket", tierFlags{localBudget: "1MiB"}, "sync", "need the object-storage tier"},
		{"restore without a bucket", tierFlags{restore: true}, "sync", "need the object-storage tier"},
		{"memory mode", tierFlags{bucket: "b", endpoint: "h:1", accessKey: "a", secretKey: "s"}, "memory", "--durability sync"},
		{"scheme in endpoint", tierFlags{bucket: "b", endpoint: "http://h:1", accessKey: "a", secretKey: "s"}, "sync", "no scheme"},
		{"no credentials", tierFlags{bucket: "b", endpoint: "h:1"}, "sync", "credentials are required"},
		{"bad budget", tierFlags{bucket: "b", endpoint: "h:1", accessKey: "a", secretKey: "s", localBudget: "lots"}, "sync", "--local-budget"},
		{"read cache without a bucket", tierFlags{readCache: "1MiB"}, "sync", "need the object-storage tier"},
		{"bad read cache", tierFlags{bucket: "b", endpoint: "h:1", accessKey: "a", secretKey: "s", localBudget: "4MiB", readCache: "lots"}, "sync", "--s3-read-cache"},
		{"read cache without a budget", tierFlags{bucket: "b", endpoint: "h:1", accessKey: "a", secretKey: "s", readCache: "1MiB"}, "sync", "needs --local-budget"},
		{"read cache past the budget", tierFlags{bucket: "b", endpoint: "h:1", accessKey: "a", secretKey: "s", localBudget: "4MiB", readCache: "4MiB"}, "sync", "less than the local budget"},
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	for _, c := range cases {
		tr, err := c.tf.newTier(c.durability, t.TempDir(), &engine.Options{}, log)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (tier %v), want an error containing %q", c.name, err, tr, c.want)
		}
	}
	if tr, err := (&tierFlags{}).newTier("sync", t.TempDir(), &engine.Options{}, log); tr != nil || err != nil {
		t.Errorf("no tier flags: %v %v, want the tier off", tr, err)
	}
}

// TestTierRefusesUsedPrefix: a new data directory on a prefix that holds
// objects refuses to start, saying what to do, and changes nothing; with
// --s3-restore it starts, and from then on without it too.
func TestTierRefusesUsedPrefix(t *testing.T) {
	s3 := s3test.Start(t)
	cl := s3.Client(t)
	ctx := context.Background()
	const key = "durastream/seg/0123456789abcdef/0000000000000001-1/00000000000000000000-5"
	if _, err := cl.PutObject(ctx, s3.Bucket, key, strings.NewReader("hello"), 5, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	tf := tierFlags{endpoint: s3.Endpoint, bucket: s3.Bucket, prefix: "durastream/", accessKey: s3.AccessKey,
		secretKey: s3.SecretKey, sealAfter: time.Minute, scanInterval: time.Second}
	_, err := tf.newTier("sync", dir, &engine.Options{}, log)
	if !errors.Is(err, tier.ErrPrefixInUse) || !strings.Contains(err.Error(), "--s3-restore") || !strings.Contains(err.Error(), "--s3-prefix") {
		t.Fatalf("a new data directory on a used prefix: %v", err)
	}
	if _, err := cl.StatObject(ctx, s3.Bucket, key, minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the object after the refusal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tier-id")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("identity after the refusal: %v", err)
	}
	other := tf
	other.prefix = "elsewhere/"
	if _, err := other.newTier("sync", t.TempDir(), &engine.Options{}, log); err != nil {
		t.Fatalf("another prefix: %v", err)
	}
	tf.restore = true
	if _, err := tf.newTier("sync", dir, &engine.Options{}, log); err != nil {
		t.Fatalf("with --s3-restore: %v", err)
	}
	tf.restore = false
	if _, err := tf.newTier("sync", dir, &engine.Options{}, log); err != nil {
		t.Fatalf("a data directory that took the prefix, restarted: %v", err)
	}
}

// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when the
// flags leave them out (and the flags win): the tier's start-up check of
// the bucket passes with the right ones and fails with wrong ones.
func TestTierCredentialsFromEnvironment(t *testing.T) {
	s3 := s3test.Start(t)
	log := slog.New(slog.DiscardHandler)
	tf := tierFlags{endpoint: s3.Endpoint, bucket: s3.Bucket, prefix: "env/", region: s3test.Region,
		sealAfter: time.Minute, scanInterval: time.Second}
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	if _, err := tf.newTier("sync", t.TempDir(), &engine.Options{}, log); err != nil {
		t.Fatalf("credentials from the environment: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
	if _, err := tf.newTier("sync", t.TempDir(), &engine.Options{}, log); err == nil {
		t.Fatal("a wrong secret from the environment was accepted")
	}
	tf.accessKey, tf.secretKey = s3.AccessKey, s3.SecretKey // the flags win
	if _, err := tf.newTier("sync", t.TempDir(), &engine.Options{}, log); err != nil {
		t.Fatalf("credentials from the flags over a wrong environment: %v", err)
	}
}
