package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/durastream/durastream/engine"
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
