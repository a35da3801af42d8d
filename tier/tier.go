// Package tier keeps sealed stream segments in S3-compatible object storage
// (MinIO, Ceph, R2, versitygw, AWS S3) and the local disk within a budget.
//
// In the background it uploads every sealed segment (engine.Segments) as
// one create-only object, verifies it (the server checks Content-MD5; a
// HEAD checks size and ETag), and records it in the stream's manifest, a
// small JSON object at a key derived from the stream's path, so a stream's
// history is found without listing the bucket. When the local segment
// files exceed the budget, the coldest segments that the manifest says are
// verified in the bucket are evicted (engine.EvictSegments): reads of them
// then come back through ReadRange, with range GETs of the bytes asked for,
// and whole blocks of them are kept in a local read cache within its share
// of the budget (cache.go).
//
// Before each scan, the last segment of a stream not appended to for
// engine.Options.SealAfter is sealed (engine.SealIdle), so that bound
// holds for idle streams too.
//
// The tier never sits on the append path: a bucket that is down only
// delays uploads (retried with backoff) and fails reads of evicted bytes
// (engine.ErrUnavailable; the server answers 503). Deleted and expired
// streams' objects are deleted after the fact (Removed), and a sweep at
// start deletes what a crash left behind. Restore puts every stream of a
// bucket back onto an empty engine (disaster recovery).
//
// One server per bucket prefix. Every key and manifest carries the data
// directory's identity (owner.go), and the sweep deletes only objects of
// this data directory's that no live stream of it refers to; a data
// directory with no identity yet refuses a prefix that holds objects,
// unless it restores from it.
package tier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/durastream/durastream/engine"
)

// Config configures a Tier. Zero fields take the defaults given.
type Config struct {
	Endpoint  string // host[:port] of the S3 API, no scheme
	Bucket    string
	Prefix    string // key prefix; "" or ending in "/"
	Region    string
	AccessKey string // default $AWS_ACCESS_KEY_ID (read by the caller)
	SecretKey string
	TLS       bool // https to the endpoint

	// LocalBudget bounds the bytes of local segment files: past it, the
	// coldest sealed segments verified in the bucket are evicted. 0: never
	// evict (the bucket is then a copy for disaster recovery).
	LocalBudget int64
	// CacheDir and CacheBytes: evicted bytes read back from the bucket are
	// kept in CacheDir (whole 4 MiB blocks, least recently used dropped
	// first), up to CacheBytes of the LocalBudget; segment files then get
	// the rest of the budget. The directory is the tier's own: block files
	// an earlier run left in it are deleted at New. Off when either is
	// unset or LocalBudget is 0.
	CacheDir   string
	CacheBytes int64
	// ScanInterval is how often sealed segments are looked for (each scan
	// visits every stream). Default 5 s.
	ScanInterval time.Duration
	// MaxBackoff caps the wait between scans after failures (doubling from
	// ScanInterval). Default 60 s.
	MaxBackoff time.Duration
	// Uploaders is how many segments upload at once. Default 4.
	Uploaders int
	// RequestTimeout bounds each request to the bucket. Default 30 s; an
	// upload gets this plus 1 s per MiB.
	RequestTimeout time.Duration
	// IDFile keeps the data directory's identity in the bucket (owner.go):
	// made by the first Check, then read by New. Required.
	IDFile string
	// Restore: the caller restores the prefix's streams (Restore) before
	// Start, so the first Check of a data directory accepts a prefix that
	// holds objects; without it, that Check fails with ErrPrefixInUse.
	Restore bool
	// Transport for the S3 client (tests); default minio-go's.
	Transport http.RoundTripper
	Logger    *slog.Logger
}

func (c *Config) withDefaults() Config {
	r := *c
	if r.ScanInterval <= 0 {
		r.ScanInterval = 5 * time.Second
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 60 * time.Second
	}
	if r.Uploaders <= 0 {
		r.Uploaders = 4
	}
	if r.RequestTimeout <= 0 {
		r.RequestTimeout = 30 * time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.Prefix != "" && !strings.HasSuffix(r.Prefix, "/") {
		r.Prefix += "/"
	}
	return r
}

// Validate reports every missing or invalid field.
func (c *Config) Validate() error {
	var errs []error
	if c.Endpoint == "" || strings.Contains(c.Endpoint, "://") {
		errs = append(errs, fmt.Errorf("S3 endpoint %q: want host[:port], no scheme (TLS is its own setting)", c.Endpoint))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("S3 bucket is required"))
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		errs = append(errs, errors.New("S3 credentials are required (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or flags)"))
	}
	if c.IDFile == "" {
		errs = append(errs, errors.New("the tier's identity file is required"))
	}
	if c.LocalBudget < 0 {
		errs = append(errs, fmt.Errorf("local budget %d: must not be negative", c.LocalBudget))
	}
	if c.CacheBytes < 0 || (c.LocalBudget > 0 && c.CacheBytes >= c.LocalBudget) {
		errs = append(errs, fmt.Errorf("read cache %d bytes: must be at least 0 and less than the local budget (%d)", c.CacheBytes, c.LocalBudget))
	}
	return errors.Join(errs...)
}

// Tier uploads, evicts and reads back segments. Create it with New, Check
// it, give it to the engine as Options.Remote (and Removed as
// Options.OnRemove), then Start it with the open engine.
type Tier struct {
	cfg Config
	s3  *minio.Client
	log *slog.Logger
	eng atomic.Pointer[engine.Engine]
	id  string // the data directory's identity (owner.go); "" until Check makes it

	streams map[uint64]*streamState // by stream id; the scan goroutine's own

	removed chan engine.RemovedStream
	sweep   atomic.Bool // a removal did not fit the queue: sweep the bucket

	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started atomic.Bool

	stats stats
	ra    readAhead   // blocks fetched ahead of in-order readers (read.go)
	cache *blockCache // evicted bytes kept locally (cache.go); nil: off
}

// New checks the configuration, reads the identity file and makes the S3
// client (no request yet).
func New(cfg Config) (*Tier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	id, err := loadID(c.IDFile)
	if err != nil {
		return nil, err
	}
	cl, err := minio.New(c.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(c.AccessKey, c.SecretKey, ""),
		Secure:    c.TLS,
		Region:    c.Region,
		Transport: c.Transport,
		// A failed round is retried with backoff by the loop; a read of
		// evicted bytes should fail fast (503) rather than retry for long.
		MaxRetries: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("tier: S3 client: %w", err)
	}
	var cache *blockCache
	if c.LocalBudget > 0 {
		if cache, err = newBlockCache(c.CacheDir, c.CacheBytes, c.Logger); err != nil {
			return nil, err
		}
	}
	return &Tier{cfg: c, s3: cl, log: c.Logger, id: id, streams: map[uint64]*streamState{}, cache: cache,
		removed: make(chan engine.RemovedStream, 4096),
		kick:    make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Check makes sure the bucket is there and answers, so that a server with a
// wrong endpoint, bucket or key fails at start with a clear message; then,
// for a data directory with no identity yet, that the prefix is empty (or
// Config.Restore is set: else ErrPrefixInUse), and makes the identity.
// Rounds fail until it has succeeded once.
func (t *Tier) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout)
	defer cancel()
	ok, err := t.s3.BucketExists(ctx, t.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("tier: bucket %q at %s: %w", t.cfg.Bucket, t.cfg.Endpoint, err)
	}
	if !ok {
		return fmt.Errorf("tier: bucket %q does not exist at %s", t.cfg.Bucket, t.cfg.Endpoint)
	}
	return t.claim(ctx)
}

// ID is the data directory's identity in the bucket ("" before Check).
func (t *Tier) ID() string { return t.id }

// Start runs the background work against eng until Close.
func (t *Tier) Start(eng *engine.Engine) {
	t.Attach(eng)
	t.started.Store(true)
	go t.loop()
}

// Close stops the background work and waits for it. In-flight uploads are
// abandoned (create-only objects: a retry after a restart finds them).
func (t *Tier) Close() {
	t.once.Do(func() { close(t.stop) })
	if t.started.Load() {
		<-t.done
	}
}

// Kick asks for a scan now rather than at the next interval.
func (t *Tier) Kick() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Removed is engine.Options.OnRemove: the stream's objects are deleted in
// the background. It never blocks; when the queue is full the next scan
// sweeps the bucket instead.
func (t *Tier) Removed(r engine.RemovedStream) {
	select {
	case t.removed <- r:
		t.Kick()
	default:
		t.sweep.Store(true)
	}
}

func (t *Tier) loop() {
	defer close(t.done)
	wait := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-timer.C:
		case <-t.kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-t.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := t.cycle(ctx)
		cancel()
		if err != nil {
			wait = min(max(2*wait, t.cfg.ScanInterval), t.cfg.MaxBackoff)
			t.log.Warn("tier: object storage work failed; retrying with backoff", "retry_in", wait, "err", err)
		} else {
			wait = t.cfg.ScanInterval
		}
		timer.Reset(wait)
	}
}

// cycle is one round: deletions, seals of idle streams, uploads,
// evictions. Its error is every failure (the round still does what it
// can).
func (t *Tier) cycle(ctx context.Context) error {
	if t.id == "" {
		return errors.New("tier: no identity in the bucket: Check has not succeeded")
	}
	t.stats.cycles.Add(1)
	errs := []error{t.deleteRemoved(ctx)}
	if _, err := t.eng.Load().SealIdle(ctx); err != nil {
		errs = append(errs, fmt.Errorf("seal idle streams: %w", err))
	}
	segs, err := t.scan()
	if err != nil {
		return err
	}
	if t.sweep.Swap(false) {
		if err := t.sweepBucket(ctx, segs); err != nil {
			t.sweep.Store(true)
			errs = append(errs, err)
		}
	}
	errs = append(errs, t.uploadAll(ctx, segs), t.evict(ctx, segs))
	return errors.Join(errs...)
}

// Sync runs one round now, on the caller's goroutine: for tests and
// benchmarks. It must not overlap Start's loop (call it on a Tier that was
// given the engine with Attach instead).
func (t *Tier) Sync(ctx context.Context) error { return t.cycle(ctx) }

// Attach gives the tier its engine without starting the loop (Sync then
// drives it).
func (t *Tier) Attach(eng *engine.Engine) {
	t.eng.Store(eng)
	t.sweep.Store(true) // what a crash left: swept by the first round
}

// Keys.
//
//	<prefix>seg/<incarnation>/<base>-<len>   a segment's bytes
//	<prefix>manifest/<sha256(path)>.json     a stream's manifest
//
// An incarnation is the data directory's identity, then the stream's
// creation time and engine id (<id>/<created>-<stream id>): a stream
// deleted and created again, or restored onto another machine, writes new
// keys, so create-only uploads never collide with an older one's, and the
// sweep tells this data directory's objects from others'.
func (t *Tier) incarnation(createdAt int64, id uint64) string {
	return fmt.Sprintf("%s/%016x-%x", t.id, createdAt, id)
}

func (t *Tier) segKey(inc string, base engine.Offset, n int64) string {
	return fmt.Sprintf("%sseg/%s/%020d-%d", t.cfg.Prefix, inc, uint64(base), n)
}

func (t *Tier) incPrefix(inc string) string { return t.cfg.Prefix + "seg/" + inc + "/" }

func (t *Tier) manifestKey(path string) string {
	h := sha256.Sum256([]byte(path))
	return t.cfg.Prefix + "manifest/" + hex.EncodeToString(h[:]) + ".json"
}

// isNotFound reports a missing key or bucket.
func isNotFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}
