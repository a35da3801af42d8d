package crashtest

// The crash torture with the object-storage tier on, against a real S3
// server (versitygw, tier/s3test): segments are sealed within a fraction
// of a second (--seal-after), uploaded and evicted past a tiny local
// budget all through the load, so kills land in the middle of uploads,
// manifest writes and evictions, and the verification after each restart
// reads most stream bytes back from the bucket. On top of the torture's
// checks: at the end, after one more start (whose first round sweeps what
// the kills left), every object a manifest lists is in the bucket with the
// listed size, every segment object is listed by a manifest (no orphan),
// and some listed segments have no local file (eviction happened).
//
//	go test -race -count=1 -v -run TestHTTPTierCrashTorture ./crashtest/

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/durastream/durastream/tier/s3test"
)

func TestHTTPTierCrashTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("crash torture builds the server and runs for a minute; skipped with -short")
	}
	cfg := loadTortureConfig(t)
	if os.Getenv("DURASTREAM_TORTURE_ROUNDS") == "" && os.Getenv("DURASTREAM_TORTURE_BUDGET") == "" {
		cfg.rounds, cfg.budget = 8, 60*time.Second
	}
	s3 := s3test.Start(t)
	tt := newTorture(t, cfg)
	tt.data = filepath.Join(t.TempDir(), "data")
	args := []string{"--s3-endpoint", s3.Endpoint, "--s3-bucket", s3.Bucket, "--s3-prefix", "torture/",
		"--s3-tls=false", "--s3-access-key", s3.AccessKey, "--s3-secret-key", s3.SecretKey,
		"--local-budget", "256KiB", "--seal-after", "150ms", "--s3-scan-interval", "200ms",
		"--checkpoint-interval", "1s"}
	tt.serverArgs = func() []string { return args }
	tt.execute()
	if tt.m.nFailures() > 0 {
		return
	}
	// One more start: its first round sweeps; then, with no load, uploads
	// settle.
	if !tt.restart(tt.m.st.rounds, "for the bucket check") {
		t.Fatal("restart for the bucket check failed")
	}
	defer func() {
		if err := tt.srv.stop(30 * time.Second); err != nil {
			t.Errorf("final stop: %v", err)
		}
		tt.srv = nil
	}()
	cl := s3.Client(t)
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var evicted int
		evicted, last = bucketConsistent(t, cl, s3.Bucket, "torture/", tt.data)
		if last == "" {
			t.Logf("bucket consistent; %d listed segments are only in the bucket", evicted)
			if evicted == 0 {
				t.Error("no segment was evicted: the torture did not exercise reads from the bucket")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket still inconsistent 20s after the last start: %s", last)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// bucketConsistent checks the manifests against the bucket and the local
// data directory. It returns how many listed segments have no local file,
// and what is wrong ("" if nothing).
func bucketConsistent(t *testing.T, cl *minio.Client, bucket, prefix, data string) (int, string) {
	ctx := context.Background()
	sizes := map[string]int64{}
	for oi := range cl.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + "seg/", Recursive: true}) {
		if oi.Err != nil {
			return 0, oi.Err.Error()
		}
		sizes[oi.Key] = oi.Size
	}
	listed := map[string]bool{}
	evicted := 0
	for oi := range cl.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + "manifest/", Recursive: true}) {
		if oi.Err != nil {
			return 0, oi.Err.Error()
		}
		obj, err := cl.GetObject(ctx, bucket, oi.Key, minio.GetObjectOptions{})
		if err != nil {
			return 0, err.Error()
		}
		var m struct {
			Path     string
			Segments []struct {
				Base uint64
				Len  int64
				Key  string
			}
		}
		err = json.NewDecoder(obj).Decode(&m)
		obj.Close()
		if err != nil {
			return 0, fmt.Sprintf("manifest %s: %v", oi.Key, err)
		}
		for _, s := range m.Segments {
			listed[s.Key] = true
			if n, ok := sizes[s.Key]; !ok || n != s.Len {
				return 0, fmt.Sprintf("stream %q: manifest lists %s (%d bytes); the bucket has it: %v (%d bytes)", m.Path, s.Key, s.Len, ok, n)
			}
			if id, ok := streamIDOfKey(s.Key); ok {
				f := filepath.Join(data, "streams", fmt.Sprintf("%02x", id&0xff), fmt.Sprintf("%016x.%020d.seg", id, s.Base))
				if _, err := os.Stat(f); err != nil {
					evicted++
				}
			}
		}
	}
	for k := range sizes {
		if !listed[k] {
			return 0, fmt.Sprintf("object %s is in no manifest (an orphan)", k)
		}
	}
	return evicted, ""
}

// streamIDOfKey parses the engine's stream id from a segment key
// <prefix>seg/<created hex>-<id hex>/<base>-<len>.
func streamIDOfKey(key string) (uint64, bool) {
	parts := strings.Split(key, "/")
	if len(parts) < 2 {
		return 0, false
	}
	inc := parts[len(parts)-2]
	i := strings.LastIndexByte(inc, '-')
	if i < 0 {
		return 0, false
	}
	id, err := strconv.ParseUint(inc[i+1:], 16, 64)
	return id, err == nil
}
