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
// and some listed segments have no local file (eviction happened), and
// evicted bytes read back were kept in the read cache.
//
//	go test -race -count=1 -v -run TestHTTPTierCrashTorture ./crashtest/

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	if cfg.dir != "" {
		tt.data = filepath.Join(cfg.dir, fmt.Sprintf("tier-torture-%d-%d", cfg.seed, time.Now().Unix()))
	}
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
		if tt.srv != nil {
			tt.srv.kill()
			tt.srv = nil
		}
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
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket still inconsistent 20s after the last start: %s", last)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The verification after the last start read evicted bytes back, and
	// kept whole blocks in the read cache (a quarter of the budget).
	if fills := tierMetric(t, tt.srv.base, "durastream_tier_cache_fills_total"); fills == 0 {
		t.Error("no block was kept in the read cache: the torture did not exercise it")
	}
	restoreCheck(t, tt, cl, s3.Bucket, args)
}

// tierMetric is one counter from the server's /metrics.
func tierMetric(t *testing.T, base, name string) int64 {
	t.Helper()
	resp, err := newClient().Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, line)
			}
			return n
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// restoreCheck is disaster recovery through the real binary: what the
// server serves now is read, the server is stopped, and a new one on an
// empty disk with --s3-restore must serve, for every stream in the
// bucket's manifests, a prefix of it that holds every byte the manifest
// lists, and the whole stream, closed, where the manifest says closed.
func restoreCheck(t *testing.T, tt *torture, cl *minio.Client, bucket string, args []string) {
	ctx := context.Background()
	type want struct {
		body   string
		closed bool
		listed int64 // stored bytes the manifest lists
		json   bool
	}
	streams := map[string]*want{}
	c := newClient()
	defer c.CloseIdleConnections()
	read := func(base, path string) (string, bool, error) {
		resp, err := c.Get(base + "/v1/stream/" + path + "?offset=-1")
		if err != nil {
			return "", false, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			return "", false, fmt.Errorf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return string(b), resp.Header.Get("Stream-Closed") == "true", nil
	}
	type manifest struct {
		Path            string
		ContentType     string `json:"content_type"`
		Closed, Deleted bool
		Fork            bool
		Segments        []struct{ Len int64 }
	}
	manifests := func() []manifest {
		var out []manifest
		for oi := range cl.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "torture/manifest/", Recursive: true}) {
			if oi.Err != nil {
				t.Fatal(oi.Err)
			}
			obj, err := cl.GetObject(ctx, bucket, oi.Key, minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var m manifest
			err = json.NewDecoder(obj).Decode(&m)
			obj.Close()
			if minio.ToErrorResponse(err).Code == "NoSuchKey" {
				continue // its stream was deleted since the listing
			}
			if err != nil {
				t.Fatal(err)
			}
			// Internal streams (__ds/: fetch records and bodies,
			// subscription state) are restored too, but not readable here.
			if !m.Deleted && !m.Fork && !strings.HasPrefix(m.Path, "__ds/") {
				out = append(out, m)
			}
		}
		return out
	}
	bodies := map[string]string{}
	for _, m := range manifests() {
		body, _, err := read(tt.srv.base, m.Path)
		if err != nil {
			t.Fatalf("before the restore: %v", err)
		}
		bodies[m.Path] = body
	}
	if err := tt.srv.stop(30 * time.Second); err != nil {
		t.Fatalf("stop before the restore: %v", err)
	}
	tt.srv = nil
	// The manifests as the stopped server left them: what a restore has.
	for _, m := range manifests() {
		body, ok := bodies[m.Path]
		if !ok {
			continue
		}
		w := &want{body: body, closed: m.Closed, json: strings.HasPrefix(m.ContentType, "application/json")}
		for _, s := range m.Segments {
			w.listed += s.Len
		}
		streams[m.Path] = w
	}
	fresh := filepath.Join(t.TempDir(), "restored")
	srv, took, err := startServer(tt.bin, fresh, append(append([]string(nil), args...), "--s3-restore")...)
	if err != nil {
		t.Fatalf("start with --s3-restore on an empty disk: %v", err)
	}
	tt.srv = srv
	t.Logf("restored %d streams onto an empty disk in %v", len(streams), took.Round(time.Millisecond))
	if len(streams) == 0 {
		t.Fatal("no stream to restore: the check would prove nothing")
	}
	for path, w := range streams {
		got, closed, err := read(srv.base, path)
		if err != nil {
			t.Errorf("restored %s: %v", path, err)
			continue
		}
		// Stored bytes: a JSON body is "[" + messages + "]" with the last
		// stored comma dropped.
		stored, all := got, w.body
		if w.json {
			stored = strings.TrimSuffix(strings.TrimPrefix(got, "["), "]")
			all = strings.TrimSuffix(strings.TrimPrefix(w.body, "["), "]")
			if stored != "" {
				stored += ","
			}
			if all != "" {
				all += ","
			}
		}
		// The new server may append meanwhile (a subscription's wake
		// stream): the listed bytes are checked.
		switch {
		case int64(len(stored)) < w.listed:
			t.Errorf("restored %s holds %d stored bytes, its manifest lists %d", path, len(stored), w.listed)
		case !strings.HasPrefix(all, stored[:w.listed]):
			t.Errorf("restored %s: the listed bytes are not a prefix of what the old server served", path)
		case w.closed && (got != w.body || !closed):
			t.Errorf("restored %s: closed in its manifest, but served %d of %d bytes, closed %v", path, len(got), len(w.body), closed)
		}
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
// <prefix>seg/<data-dir id>/<created hex>-<id hex>/<base>-<len>.
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
