package tier_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/tier"
	"github.com/durastream/durastream/tier/s3test"
)

// node is an engine with a tier, driven by Sync (no background loop).
type node struct {
	t    *testing.T
	dir  string
	eng  *engine.Engine
	tier *tier.Tier
	cfg  tier.Config
	opts engine.Options
}

func tierConfig(s *s3test.Server, endpoint string) tier.Config {
	return tier.Config{Endpoint: endpoint, Bucket: s.Bucket, Prefix: "ds/", AccessKey: s.AccessKey, SecretKey: s.SecretKey,
		RequestTimeout: 3 * time.Second}
}

// newTier makes a tier on cfg and checks it (which makes the data
// directory's identity in cfg.IDFile).
func newTier(t testing.TB, cfg tier.Config) *tier.Tier {
	t.Helper()
	tr, err := tier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tr
}

// openNode opens an engine in dir whose segments are small (so that a
// few hundred KiB make many sealed segments) with a tier on cfg, whose
// identity file is in dir unless cfg names one.
func openNode(t *testing.T, dir string, cfg tier.Config, o engine.Options) *node {
	t.Helper()
	if cfg.IDFile == "" {
		cfg.IDFile = filepath.Join(dir, "tier-id")
	}
	tr := newTier(t, cfg)
	if o.MinSegmentSize == 0 {
		o.MinSegmentSize, o.MaxSegmentSize = 4<<10, 32<<10
	}
	o.Remote, o.OnRemove = tr, tr.Removed
	o.CheckpointInterval = time.Hour
	eng, err := engine.Open(dir, &o)
	if err != nil {
		t.Fatal(err)
	}
	tr.Attach(eng)
	n := &node{t: t, dir: dir, eng: eng, tier: tr, cfg: cfg, opts: o}
	t.Cleanup(func() { n.eng.Close() })
	return n
}

func (n *node) restart() {
	n.t.Helper()
	n.eng.Close()
	*n = *openNode(n.t, n.dir, n.cfg, n.opts)
}

func (n *node) sync() {
	n.t.Helper()
	if err := n.tier.Sync(context.Background()); err != nil {
		n.t.Fatalf("tier round: %v", err)
	}
}

// fill writes msgs appends to a text stream and a JSON stream and returns
// what each reads back as.
func (n *node) fill(text, js string, msgs int) (string, string) {
	n.t.Helper()
	ctx := context.Background()
	n.eng.Create(ctx, text, engine.CreateOptions{ContentType: "text/plain"})
	n.eng.Create(ctx, js, engine.CreateOptions{ContentType: "application/json"})
	var tb bytes.Buffer
	var jm []string
	for i := range msgs {
		p := fmt.Sprintf("%s line %05d %s\n", text, i, strings.Repeat("t", i%211))
		tb.WriteString(p)
		if _, err := n.eng.Append(ctx, text, []byte(p), engine.AppendOptions{}); err != nil {
			n.t.Fatal(err)
		}
		m := fmt.Sprintf(`{"i":%d,"s":"%s"}`, i, strings.Repeat("j", i%97))
		jm = append(jm, m)
		if _, err := n.eng.Append(ctx, js, []byte(m), engine.AppendOptions{}); err != nil {
			n.t.Fatal(err)
		}
	}
	return tb.String(), "[" + strings.Join(jm, ",") + "]"
}

func (n *node) read(path string) (string, error) {
	c, err := n.eng.Read(path, engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{MaxBytes: 1 << 30})
	if err != nil {
		return "", err
	}
	defer c.Release()
	return string(c.Bytes()), nil
}

func (n *node) mustRead(path, want, what string) {
	n.t.Helper()
	got, err := n.read(path)
	if err != nil {
		n.t.Fatalf("%s: read %s: %v", what, path, err)
	}
	if got != want {
		n.t.Fatalf("%s: %s reads %d bytes that differ from the %d written", what, path, len(got), len(want))
	}
}

func (n *node) segFiles() int {
	files, _ := filepath.Glob(filepath.Join(n.dir, "streams", "*", "*.seg"))
	return len(files)
}

func objects(t *testing.T, cl *minio.Client, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for oi := range cl.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		keys = append(keys, oi.Key)
	}
	return keys
}

// TestUploadEvictRestart: sealed segments go to the bucket with a manifest
// per stream; past the budget the coldest are evicted and read back from
// the bucket exactly, whole and paged, before and after a restart.
func TestUploadEvictRestart(t *testing.T) {
	s3 := s3test.Start(t)
	cfg := tierConfig(s3, s3.Endpoint)
	n := openNode(t, t.TempDir(), cfg, engine.Options{})
	text, js := n.fill("logs/a", "chat/1", 3000)
	n.sync()
	st := n.tier.Stats()
	if st.Uploads < 10 || st.Evictions != 0 {
		t.Fatalf("after a round with no budget: %+v, want uploads and no evictions", st)
	}
	cl := s3.Client(t)
	if m := objects(t, cl, s3.Bucket, "ds/manifest/"); len(m) != 2 {
		t.Fatalf("manifests %v, want one per stream", m)
	}
	if segs := objects(t, cl, s3.Bucket, "ds/seg/"); int64(len(segs)) != st.Uploads {
		t.Fatalf("%d segment objects for %d uploads", len(segs), st.Uploads)
	}
	before := n.segFiles()
	// Now a budget of 64 KiB: nearly everything goes.
	n.tier.Close()
	cfg = n.cfg
	cfg.LocalBudget = 64 << 10
	n.restartWith(newTier(t, cfg))
	n.sync()
	st = n.tier.Stats()
	if st.Evictions == 0 || st.LocalBytes == 0 {
		t.Fatalf("after a round over budget: %+v", st)
	}
	n.eng.Checkpoint() // evicted files go at the next checkpoint
	if after := n.segFiles(); after >= before {
		t.Fatalf("segment files %d before eviction, %d after", before, after)
	}
	n.mustRead("logs/a", text, "evicted")
	n.mustRead("chat/1", js, "evicted")
	if n.tier.Stats().RemoteReads == 0 {
		t.Fatal("no range GETs for evicted bytes")
	}
	// Paged JSON reads cut at message boundaries in evicted segments.
	var parts []string
	for off := engine.Offset(0); ; {
		c, err := n.eng.Read("chat/1", engine.At(off), engine.ReadOptions{MaxBytes: 5000})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, strings.TrimSuffix(strings.TrimPrefix(string(c.Bytes()), "["), "]"))
		off = c.Next
		done := c.UpToDate
		c.Release()
		if done {
			break
		}
	}
	if got := "[" + strings.Join(parts, ",") + "]"; got != js {
		t.Fatal("paged read of evicted JSON differs")
	}
	var metrics bytes.Buffer
	n.tier.WriteMetrics(&metrics)
	if want := fmt.Sprintf("durastream_tier_evictions_total %d\n", n.tier.Stats().Evictions); !strings.Contains(metrics.String(), want) {
		t.Fatalf("metrics lack %q:\n%s", want, metrics.String())
	}
	n.restart()
	n.mustRead("logs/a", text, "after restart")
	n.mustRead("chat/1", js, "after restart")
}

func (n *node) restartWith(tr *tier.Tier) {
	n.t.Helper()
	n.eng.Close()
	n.opts.Remote, n.opts.OnRemove = tr, tr.Removed
	eng, err := engine.Open(n.dir, &n.opts)
	if err != nil {
		n.t.Fatal(err)
	}
	tr.Attach(eng)
	n.eng, n.tier = eng, tr
}

// TestBucketFailures: with the bucket failing, appends go on, rounds fail
// and retry, nothing is evicted that is not verified, and reads of evicted
// bytes fail (503 with Retry-After over HTTP), never short or wrong.
func TestBucketFailures(t *testing.T) {
	s3 := s3test.Start(t)
	px := s3test.NewProxy(t, s3.Endpoint)
	cfg := tierConfig(s3, px.Endpoint)
	cfg.LocalBudget = 64 << 10
	n := openNode(t, t.TempDir(), cfg, engine.Options{})

	// Uploads fail: nothing is evicted.
	px.SetModeFor(http.MethodPut, s3test.Fail503)
	text, js := n.fill("a", "j", 2000)
	files := n.segFiles()
	if err := n.tier.Sync(context.Background()); err == nil {
		t.Fatal("a round with every upload failing reported no error")
	}
	if st := n.tier.Stats(); st.Evictions != 0 || st.Uploads != 0 {
		t.Fatalf("with uploads failing: %+v", st)
	}
	if n.segFiles() != files {
		t.Fatal("segment files removed while none was in the bucket")
	}
	// The bucket refuses connections: appends are not held up.
	px.SetMode(s3test.Refuse)
	start := time.Now()
	for i := range 200 {
		if _, err := n.eng.Append(context.Background(), "a", []byte(fmt.Sprintf("down %d\n", i)), engine.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		text += fmt.Sprintf("down %d\n", i)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("200 appends with the bucket down took %v", d)
	}
	// Back: the next round uploads and evicts.
	px.SetMode(s3test.Pass)
	px.SetModeFor(http.MethodPut, s3test.Pass)
	n.sync()
	if st := n.tier.Stats(); st.Evictions == 0 {
		t.Fatalf("after the bucket came back: %+v", st)
	}
	n.mustRead("a", text, "bucket back")

	// Down again: reads of evicted bytes fail; local ones do not.
	for _, m := range []s3test.Mode{s3test.Fail503, s3test.Refuse} {
		px.SetMode(m)
		if _, err := n.read("j"); !errors.Is(err, engine.ErrUnavailable) {
			t.Fatalf("%v: read of evicted bytes: %v, want ErrUnavailable", m, err)
		}
	}
	// Over HTTP: 503 with Retry-After, for a catch-up read from the start.
	srv, err := server.New(n.eng, server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/v1/stream/j?offset=-1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP read of evicted bytes with the bucket down: %d %q (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	px.SetMode(s3test.Pass)
	n.mustRead("j", js, "bucket back again")
	resp, err = http.Get(hs.URL + "/v1/stream/j?offset=-1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != js {
		t.Fatalf("HTTP read once the bucket is back: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// TestCreateOnly: an object already at a segment's key with other bytes
// (another writer's) is never overwritten, never listed, never relied on.
func TestCreateOnly(t *testing.T) {
	s3 := s3test.Start(t)
	cfg := tierConfig(s3, s3.Endpoint)
	cfg.LocalBudget = 1
	n := openNode(t, t.TempDir(), cfg, engine.Options{})
	ctx := context.Background()
	n.eng.Create(ctx, "s", engine.CreateOptions{ContentType: "text/plain"})
	for range 40 {
		n.eng.Append(ctx, "s", bytes.Repeat([]byte("s"), 1000), engine.AppendOptions{})
	}
	// Plant other bytes at the first sealed segment's key.
	var first engine.SegmentInfo
	n.eng.Segments(func(in engine.SegmentInfo) bool {
		if in.Sealed {
			first = in
			return false
		}
		return true
	})
	key := fmt.Sprintf("ds/seg/%s/%016x-%x/%020d-%d", n.tier.ID(), first.CreatedAt, first.StreamID, uint64(first.Base), first.Len)
	cl := s3.Client(t)
	planted := bytes.Repeat([]byte("X"), int(first.Len))
	if _, err := cl.PutObject(ctx, s3.Bucket, key, bytes.NewReader(planted), first.Len, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n.tier.Sync(ctx); err == nil || !strings.Contains(err.Error(), "verify") {
		t.Fatalf("round with a foreign object at a key: %v, want a verification error", err)
	}
	obj, _ := cl.GetObject(ctx, s3.Bucket, key, minio.GetObjectOptions{})
	got, _ := io.ReadAll(obj)
	if !bytes.Equal(got, planted) {
		t.Fatal("the foreign object was overwritten")
	}
	if st := n.tier.Stats(); st.Evictions != 0 {
		t.Fatalf("evicted %d segments after a failed verification", st.Evictions)
	}
	n.mustRead("s", strings.Repeat("s", 40000), "after the conflict")
}

// TestDeleteAndExpiry: a deleted or expired stream's objects and manifest
// are deleted; a crash before that leaves them to the start-up sweep.
func TestDeleteAndExpiry(t *testing.T) {
	s3 := s3test.Start(t)
	cfg := tierConfig(s3, s3.Endpoint)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	n := openNode(t, t.TempDir(), cfg, engine.Options{Clock: clock, ExpiryInterval: 20 * time.Millisecond})
	ctx := context.Background()
	n.fill("del/a", "del/j", 1000)
	n.eng.Create(ctx, "ttl/x", engine.CreateOptions{ContentType: "text/plain", TTL: 60, HasTTL: true})
	for range 100 {
		n.eng.Append(ctx, "ttl/x", bytes.Repeat([]byte("x"), 1000), engine.AppendOptions{})
	}
	n.eng.Create(ctx, "keep", engine.CreateOptions{ContentType: "text/plain"})
	for range 100 {
		n.eng.Append(ctx, "keep", bytes.Repeat([]byte("k"), 1000), engine.AppendOptions{})
	}
	n.sync()
	cl := s3.Client(t)
	if m := objects(t, cl, s3.Bucket, "ds/manifest/"); len(m) != 4 {
		t.Fatalf("%d manifests, want 4", len(m))
	}
	if err := n.eng.Delete(ctx, "del/a"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute) // ttl/x expires
	mu.Unlock()
	n.eng.Append(ctx, "keep", []byte("k"), engine.AppendOptions{}) // touched: keep lives
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := n.eng.Head("ttl/x"); errors.Is(err, engine.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ttl/x did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.sync()
	if m := objects(t, cl, s3.Bucket, "ds/manifest/"); len(m) != 2 {
		t.Fatalf("%d manifests after a delete and an expiry, want 2", len(m))
	}
	// A delete the tier does not hear of (a crash before its objects went):
	// the sweep of the next start finds them.
	n.eng.Close()
	o := n.opts
	o.OnRemove = nil
	eng, err := engine.Open(n.dir, &o)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Delete(ctx, "del/j"); err != nil {
		t.Fatal(err)
	}
	eng.Close()
	n.restart()
	n.sync() // the first round of a new tier sweeps
	if m := objects(t, cl, s3.Bucket, "ds/manifest/"); len(m) != 1 {
		t.Fatalf("%d manifests after the sweep, want 1 (keep)", len(m))
	}
	var inc []string
	n.eng.Segments(func(in engine.SegmentInfo) bool {
		inc = append(inc, fmt.Sprintf("ds/seg/%s/%016x-%x/", n.tier.ID(), in.CreatedAt, in.StreamID))
		return false
	})
	for _, k := range objects(t, cl, s3.Bucket, "ds/seg/") {
		if !strings.HasPrefix(k, inc[0]) {
			t.Fatalf("object %s of a deleted stream survived the sweep", k)
		}
	}
}

// TestRestore: a new machine with an empty disk and the bucket serves
// every stream's sealed history; closed streams stay closed; appends go on.
func TestRestore(t *testing.T) {
	s3 := s3test.Start(t)
	cfg := tierConfig(s3, s3.Endpoint)
	ctx := context.Background()
	old := openNode(t, t.TempDir(), cfg, engine.Options{})
	text, js := old.fill("r/text", "r/json", 2000)
	old.eng.Append(ctx, "r/json", nil, engine.AppendOptions{Close: true})
	old.sync()
	old.sync() // the closure makes the last segment sealed: uploaded now
	var sealedText int64
	old.eng.Segments(func(in engine.SegmentInfo) bool {
		if in.Path == "r/text" && in.Sealed {
			sealedText = int64(in.Base) + in.Len
		}
		return true
	})
	old.eng.Close()

	// A new data directory on the prefix without restoring refuses it,
	// and changes nothing.
	cl := s3.Client(t)
	before := bucketState(t, cl, s3.Bucket, "ds/")
	freshDir := t.TempDir()
	fcfg := cfg
	fcfg.IDFile = filepath.Join(freshDir, "tier-id")
	tr, err := tier.New(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Check(ctx); !errors.Is(err, tier.ErrPrefixInUse) {
		t.Fatalf("a new data directory on a prefix that holds objects: Check %v, want ErrPrefixInUse", err)
	}
	if _, err := os.Stat(fcfg.IDFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("identity file after the refusal: %v", err)
	}
	if after := bucketState(t, cl, s3.Bucket, "ds/"); !maps.Equal(after, before) {
		t.Fatalf("the refusal changed the bucket: %d objects before, %d after", len(before), len(after))
	}
	// Restoring, it takes the prefix; its first round, a sweep with no
	// stream yet, deletes nothing the old data directory wrote.
	fcfg.Restore = true
	fresh := openNode(t, freshDir, fcfg, engine.Options{})
	fresh.sync()
	if after := bucketState(t, cl, s3.Bucket, "ds/"); !maps.Equal(after, before) {
		t.Fatalf("a new data directory's sweep changed the bucket: %d objects before, %d after", len(before), len(after))
	}
	got, err := fresh.tier.Restore(ctx, fresh.eng)
	if err != nil || got != 2 {
		t.Fatalf("restore: %d streams, %v", got, err)
	}
	fresh.mustRead("r/json", js, "restored closed JSON stream")
	if info, _ := fresh.eng.Head("r/json"); !info.Closed {
		t.Fatal("a closed stream was restored open")
	}
	fresh.mustRead("r/text", text[:sealedText], "restored sealed history")
	// Appends go on after the restored history; the next round records it.
	if _, err := fresh.eng.Append(ctx, "r/text", []byte("after\n"), engine.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh.sync()
	fresh.mustRead("r/text", text[:sealedText]+"after\n", "appended after restore")
	// Restore again is a no-op for streams already there.
	if got, err := fresh.tier.Restore(ctx, fresh.eng); err != nil || got != 0 {
		t.Fatalf("second restore: %d, %v", got, err)
	}
	fresh.restart()
	fresh.mustRead("r/json", js, "restored, after restart")
	now := bucketState(t, cl, s3.Bucket, "ds/seg/")
	for k := range before {
		if _, ok := now[k]; !ok && strings.HasPrefix(k, "ds/seg/") {
			t.Fatalf("restored history %s was deleted", k)
		}
	}
}

// bucketState is every object under prefix: key -> ETag.
func bucketState(t *testing.T, cl *minio.Client, bucket, prefix string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for oi := range cl.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		m[oi.Key] = oi.ETag
	}
	return m
}

func cacheFiles(t *testing.T, dir string) (n int, bytes int64) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.blk"))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		bytes += fi.Size()
	}
	return len(files), bytes
}

// TestReadCache: evicted bytes read back from the bucket are kept in the
// read cache within its share of the budget, and read again from it
// exactly, even with the bucket down; a cached block whose file is gone is
// fetched again (or, with the bucket down, the read fails: never short);
// a deleted stream's blocks go; a new Tier starts with an empty cache.
func TestReadCache(t *testing.T) {
	s3 := s3test.Start(t)
	px := s3test.NewProxy(t, s3.Endpoint)
	cfg := tierConfig(s3, px.Endpoint)
	cacheDir := t.TempDir()
	cfg.LocalBudget, cfg.CacheBytes, cfg.CacheDir = 4<<20+64<<10, 4<<20, cacheDir
	n := openNode(t, t.TempDir(), cfg, engine.Options{})
	text, js := n.fill("logs/a", "chat/1", 3000)
	n.sync()
	if st := n.tier.Stats(); st.Evictions < 15 {
		t.Fatalf("segments not kept within the budget less the cache: %+v", st)
	}
	n.eng.Checkpoint()
	n.mustRead("logs/a", text, "first read of evicted bytes")
	n.mustRead("chat/1", js, "first read of evicted bytes")
	st := n.tier.Stats()
	files, held := cacheFiles(t, cacheDir)
	if st.RemoteReads == 0 || st.CacheFills == 0 || int64(files) != st.CacheFills || held != st.CacheBytes {
		t.Fatalf("after the first reads: %+v; %d cache files of %d bytes", st, files, held)
	}

	// The bucket down: served from the cache alone.
	px.SetMode(s3test.Refuse)
	n.mustRead("logs/a", text, "from the cache, bucket down")
	n.mustRead("chat/1", js, "from the cache, bucket down")
	if st2 := n.tier.Stats(); st2.RemoteReads != st.RemoteReads || st2.CacheHits == 0 {
		t.Fatalf("reads with everything cached: %+v (before %+v)", st2, st)
	}
	// A cached file gone: with the bucket down the read fails, then comes
	// back from the bucket.
	blk, _ := filepath.Glob(filepath.Join(cacheDir, "*.blk"))
	for _, f := range blk {
		os.Remove(f)
	}
	if _, err := n.read("logs/a"); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("cache files gone, bucket down: %v, want ErrUnavailable", err)
	}
	px.SetMode(s3test.Pass)
	n.mustRead("logs/a", text, "cache files gone, bucket back")
	n.mustRead("chat/1", js, "cache files gone, bucket back")

	// Deleting a stream drops its blocks.
	_, before := cacheFiles(t, cacheDir)
	if err := n.eng.Delete(context.Background(), "logs/a"); err != nil {
		t.Fatal(err)
	}
	n.sync()
	if _, after := cacheFiles(t, cacheDir); after >= before || after != n.tier.Stats().CacheBytes {
		t.Fatalf("cache bytes %d before deleting a stream, %d after (stats %d)", before, after, n.tier.Stats().CacheBytes)
	}

	// A small cache: bounded, least recently used out.
	n.tier.Close()
	cfg = n.cfg
	cfg.CacheBytes = 64 << 10
	cfg.LocalBudget = 128 << 10
	tr := newTier(t, cfg)
	if files, _ := cacheFiles(t, cacheDir); files != 0 {
		t.Fatalf("%d cache files left for a new Tier", files)
	}
	n.restartWith(tr)
	n.mustRead("chat/1", js, "small cache")
	n.mustRead("chat/1", js, "small cache, again")
	if st := n.tier.Stats(); st.CacheFills == 0 || st.CacheBytes > 64<<10 {
		t.Fatalf("small cache: %+v", st)
	}
	if _, held := cacheFiles(t, cacheDir); held > 64<<10 {
		t.Fatalf("small cache holds %d bytes of files", held)
	}
}

// TestReadCacheLargeObject: an evicted object of several cache blocks (the
// last one short) read in order fills the cache through the read-ahead,
// whose blocks are aligned to cache blocks; then whole and paged reads,
// from unaligned offsets too, come from the cache alone, exactly.
func TestReadCacheLargeObject(t *testing.T) {
	s3 := s3test.Start(t)
	px := s3test.NewProxy(t, s3.Endpoint)
	cfg := tierConfig(s3, px.Endpoint)
	cfg.LocalBudget, cfg.CacheBytes, cfg.CacheDir = 32<<20+64<<10, 32<<20, t.TempDir()
	n := openNode(t, t.TempDir(), cfg, engine.Options{MinSegmentSize: 16 << 20, MaxSegmentSize: 16 << 20})
	ctx := context.Background()
	n.eng.Create(ctx, "big", engine.CreateOptions{ContentType: "application/octet-stream"})
	want := make([]byte, 10<<20+12345)
	for i := range want {
		want[i] = byte(i*7 + i>>13)
	}
	for off := 0; off < len(want); off += 256 << 10 {
		end := min(off+256<<10, len(want))
		if _, err := n.eng.Append(ctx, "big", want[off:end], engine.AppendOptions{Close: end == len(want)}); err != nil {
			t.Fatal(err)
		}
	}
	n.sync()
	if st := n.tier.Stats(); st.Evictions == 0 {
		t.Fatalf("nothing evicted: %+v", st)
	}
	n.eng.Checkpoint()
	n.mustRead("big", string(want), "first read")
	st := n.tier.Stats()
	if st.CacheFills < 3 {
		t.Fatalf("after an in-order read of 10 MiB: %+v, want its 3 blocks cached", st)
	}
	px.SetMode(s3test.Refuse)
	n.mustRead("big", string(want), "from the cache")
	for _, from := range []int{0, 123, 4<<20 - 1, 5<<20 + 777, 8 << 20, len(want) - 10} {
		c, err := n.eng.Read("big", engine.At(engine.Offset(from)), engine.ReadOptions{MaxBytes: 3<<20 + 5})
		if err != nil {
			t.Fatalf("paged read from %d with the bucket down: %v", from, err)
		}
		got := c.Bytes()
		if !bytes.Equal(got, want[from:from+len(got)]) || len(got) == 0 {
			t.Fatalf("paged read from %d: %d bytes that differ", from, len(got))
		}
		c.Release()
	}
	if st2 := n.tier.Stats(); st2.RemoteReads != st.RemoteReads {
		t.Fatalf("reads with the object cached went to the bucket: %d range GETs", st2.RemoteReads-st.RemoteReads)
	}
}

// TestIdleStreamSealed: a stream appended to once and then left idle has
// its bytes uploaded once its segment is older than SealAfter (the scan
// seals it), not only at its next append; the next append starts a new
// segment, and a restart changes neither (nothing uploaded again).
func TestIdleStreamSealed(t *testing.T) {
	s3 := s3test.Start(t)
	cfg := tierConfig(s3, s3.Endpoint)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func() { mu.Lock(); now = now.Add(2 * time.Minute); mu.Unlock() }
	n := openNode(t, t.TempDir(), cfg, engine.Options{Clock: clock, SealAfter: time.Minute})
	ctx := context.Background()
	n.eng.Create(ctx, "idle", engine.CreateOptions{ContentType: "text/plain"})
	if _, err := n.eng.Append(ctx, "idle", []byte("once\n"), engine.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	n.sync()
	cl := s3.Client(t)
	if st := n.tier.Stats(); st.Uploads != 0 {
		t.Fatalf("uploaded before SealAfter: %+v", st)
	}
	advance()
	n.sync()
	segs := objects(t, cl, s3.Bucket, "ds/seg/")
	if st := n.tier.Stats(); st.Uploads != 1 || len(segs) != 1 {
		t.Fatalf("an idle stream past SealAfter: %+v, objects %v; want its bytes uploaded", st, segs)
	}
	obj, err := cl.GetObject(ctx, s3.Bucket, segs[0], minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || string(got) != "once\n" {
		t.Fatalf("uploaded %q, %v", got, err)
	}
	if _, err := n.eng.Append(ctx, "idle", []byte("twice\n"), engine.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	n.restart()
	n.sync()
	if st := n.tier.Stats(); st.Uploads != 0 {
		t.Fatalf("after a restart: %+v; the sealed segment was laid out again", st)
	}
	advance()
	n.sync()
	if segs := objects(t, cl, s3.Bucket, "ds/seg/"); len(segs) != 2 {
		t.Fatalf("objects %v after the second segment aged, want 2", segs)
	}
	n.mustRead("idle", "once\ntwice\n", "after the seals")
}

// TestRangeGetChecked: a range GET answered with other bytes than those
// asked for (a proxy that drops Range: the whole object, 200) fails the
// read, as a bucket that is down does (503 with Retry-After over HTTP),
// never serving the object's first bytes as if they were at the offset;
// a whole object asked for whole is still read.
func TestRangeGetChecked(t *testing.T) {
	s3 := s3test.Start(t)
	px := s3test.NewProxy(t, s3.Endpoint)
	px.SignWith(s3.AccessKey, s3.SecretKey)
	cfg := tierConfig(s3, px.Endpoint)
	cfg.LocalBudget = 1
	n := openNode(t, t.TempDir(), cfg, engine.Options{})
	text, _ := n.fill("t", "j", 1000)
	n.sync()
	n.eng.Checkpoint()
	var ev engine.SegmentInfo
	n.eng.Segments(func(in engine.SegmentInfo) bool {
		if in.Path == "t" && in.Remote != "" && in.Len > 100 {
			ev = in
			return false
		}
		return true
	})
	if ev.Remote == "" {
		t.Fatal("no evicted segment")
	}
	readAt := func(off engine.Offset, max int64) (string, error) {
		c, err := n.eng.Read("t", engine.At(off), engine.ReadOptions{MaxBytes: max})
		if err != nil {
			return "", err
		}
		defer c.Release()
		return string(c.Bytes()), nil
	}
	px.SetModeFor(http.MethodGet, s3test.StripRange)
	mid := ev.Base + 10
	if got, err := readAt(mid, 50); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("read inside an evicted segment with Range dropped: %q, %v; want ErrUnavailable", got, err)
	}
	if got, err := readAt(ev.Base, ev.Len); err != nil || got != text[ev.Base:int64(ev.Base)+ev.Len] {
		t.Fatalf("whole evicted segment with Range dropped: %d bytes, %v", len(got), err)
	}
	srv, err := server.New(n.eng, server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	resp, err := http.Get(fmt.Sprintf("%s/v1/stream/t?offset=%s", hs.URL, mid))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP read inside an evicted segment with Range dropped: %d %q (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	px.SetModeFor(http.MethodGet, s3test.Pass)
	if got, err := readAt(mid, 50); err != nil || got != text[mid:mid+50] {
		t.Fatalf("with Range passed again: %q, %v", got, err)
	}
}

// putLog records when each PUT of an S3 client began.
type putLog struct {
	next http.RoundTripper
	mu   sync.Mutex
	puts []loggedPut
}

type loggedPut struct {
	path string
	at   time.Time
}

func (l *putLog) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut {
		l.mu.Lock()
		l.puts = append(l.puts, loggedPut{r.URL.Path, time.Now()})
		l.mu.Unlock()
	}
	return l.next.RoundTrip(r)
}

// retryLog records the tier's failed rounds: when each was logged, and
// the wait it logged before the next one (its retry_in).
type retryLog struct {
	mu    sync.Mutex
	at    []time.Time
	waits []time.Duration
}

func (h *retryLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *retryLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *retryLog) WithGroup(string) slog.Handler            { return h }

func (h *retryLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry_in" {
			h.mu.Lock()
			h.at = append(h.at, r.Time)
			h.waits = append(h.waits, a.Value.Duration())
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

// TestUploadBackoff: with every PUT answered 503, the tier's loop retries
// its rounds after waits that double from the scan interval up to the
// cap, each round's first PUT coming that long after the last round
// failed; once the bucket takes PUTs again, the upload goes through.
func TestUploadBackoff(t *testing.T) {
	s3 := s3test.Start(t)
	px := s3test.NewProxy(t, s3.Endpoint)
	cfg := tierConfig(s3, px.Endpoint)
	const scan, maxWait = 100 * time.Millisecond, 800 * time.Millisecond
	cfg.ScanInterval, cfg.MaxBackoff = scan, maxWait
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	puts := &putLog{next: tr}
	retries := &retryLog{}
	cfg.Transport, cfg.Logger = puts, slog.New(retries)
	n := openNode(t, t.TempDir(), cfg, engine.Options{})
	ctx := context.Background()
	n.eng.Create(ctx, "s", engine.CreateOptions{ContentType: "text/plain"})
	for range 20 {
		n.eng.Append(ctx, "s", bytes.Repeat([]byte("s"), 1000), engine.AppendOptions{})
	}
	px.SetModeFor(http.MethodPut, s3test.Fail503)
	n.tier.Start(n.eng)
	t.Cleanup(n.tier.Close)

	want := []time.Duration{scan, 2 * scan, 4 * scan, maxWait, maxWait}
	var gaps []time.Duration
	for deadline := time.Now().Add(20 * time.Second); len(gaps) < len(want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("failed rounds not seen: gaps %v so far", gaps)
		}
		retries.mu.Lock()
		at := slices.Clone(retries.at)
		retries.mu.Unlock()
		puts.mu.Lock()
		gaps = gaps[:0]
		for _, failed := range at {
			// The next round's first PUT of the segment.
			if i := slices.IndexFunc(puts.puts, func(p loggedPut) bool {
				return p.at.After(failed) && strings.Contains(p.path, "/ds/seg/")
			}); i >= 0 {
				gaps = append(gaps, puts.puts[i].at.Sub(failed))
			}
		}
		puts.mu.Unlock()
	}
	retries.mu.Lock()
	waits := slices.Clone(retries.waits[:len(want)])
	retries.mu.Unlock()
	if !slices.Equal(waits, want) {
		t.Fatalf("waits after failed rounds %v, want %v", waits, want)
	}
	for i, g := range gaps[:len(want)] {
		// Never sooner; later by at most a loaded machine's delay.
		if g < want[i] || g > want[i]+300*time.Millisecond {
			t.Fatalf("the first PUT of each round came %v after the last round failed, want about %v", gaps[:len(want)], want)
		}
	}
	t.Logf("first PUT of each round after the last one failed: %v", gaps[:len(want)])
	if st := n.tier.Stats(); st.Uploads != 0 {
		t.Fatalf("uploads with every PUT failing: %+v", st)
	}

	px.SetModeFor(http.MethodPut, s3test.Pass)
	cl := s3.Client(t)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := objects(t, cl, s3.Bucket, "ds/manifest/"); len(m) == 1 && n.tier.Stats().Uploads > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing uploaded after the bucket took PUTs again: %+v", n.tier.Stats())
		}
	}
}

// TestAppendsWhileUploadsHang: with every PUT held by the bucket, the
// tier's loop keeps failing rounds, and appends (which seal segment after
// segment) each complete promptly; once PUTs go through, uploads follow.
func TestAppendsWhileUploadsHang(t *testing.T) {
	s3 := s3test.Start(t)
	px := s3test.NewProxy(t, s3.Endpoint)
	cfg := tierConfig(s3, px.Endpoint)
	cfg.ScanInterval, cfg.MaxBackoff, cfg.RequestTimeout = 50*time.Millisecond, 200*time.Millisecond, time.Second
	n := openNode(t, t.TempDir(), cfg, engine.Options{})
	px.SetModeFor(http.MethodPut, s3test.Hang)
	n.tier.Start(n.eng)
	t.Cleanup(n.tier.Close)
	ctx := context.Background()
	n.eng.Create(ctx, "a", engine.CreateOptions{ContentType: "text/plain"})
	var want strings.Builder
	var slowest time.Duration
	for i := 0; i < 300; i++ {
		p := fmt.Sprintf("%04d %s\n", i, strings.Repeat("a", 1000))
		start := time.Now()
		if _, err := n.eng.Append(ctx, "a", []byte(p), engine.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		want.WriteString(p)
		time.Sleep(10 * time.Millisecond)
	}
	if slowest > 2*time.Second {
		t.Fatalf("an append took %v with the bucket holding PUTs", slowest)
	}
	if px.Count(http.MethodPut) == 0 || n.tier.Stats().Uploads != 0 {
		t.Fatalf("no PUT was held (%d PUTs, %+v)", px.Count(http.MethodPut), n.tier.Stats())
	}
	t.Logf("slowest of 300 appends with PUTs held: %v", slowest)
	px.SetModeFor(http.MethodPut, s3test.Pass)
	for deadline := time.Now().Add(10 * time.Second); n.tier.Stats().Uploads == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("nothing uploaded once PUTs went through: %+v", n.tier.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.mustRead("a", want.String(), "after the hang")
}
