package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/tier"
)

// tierFlags turn on the object-storage tier (package tier): sealed
// segments uploaded to an S3-compatible bucket, the local disk kept within
// a budget. Off unless --s3-bucket is set.
type tierFlags struct {
	endpoint, bucket, prefix, region string
	accessKey, secretKey             string
	tls                              bool
	localBudget                      string
	readCache                        string
	sealAfter                        time.Duration
	scanInterval                     time.Duration
	restore                          bool
}

func (tf *tierFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&tf.endpoint, "s3-endpoint", "s3.amazonaws.com", "object-storage tier: S3 API endpoint, host[:port] (MinIO, Ceph, R2, versitygw, AWS)")
	fs.StringVar(&tf.bucket, "s3-bucket", "", "object-storage tier: bucket for sealed segments and manifests (the tier is off when empty)")
	fs.StringVar(&tf.prefix, "s3-prefix", "durastream/", "object-storage tier: key prefix in the bucket (one server per prefix)")
	fs.StringVar(&tf.region, "s3-region", "", "object-storage tier: region (empty: asked of the endpoint)")
	fs.StringVar(&tf.accessKey, "s3-access-key", "", "object-storage tier: access key (default $AWS_ACCESS_KEY_ID)")
	fs.StringVar(&tf.secretKey, "s3-secret-key", "", "object-storage tier: secret key (default $AWS_SECRET_ACCESS_KEY; flags show in ps)")
	fs.BoolVar(&tf.tls, "s3-tls", true, "object-storage tier: HTTPS to the endpoint (--s3-tls=false for a local plain-HTTP server)")
	fs.StringVar(&tf.localBudget, "local-budget", "", "object-storage tier: most bytes of stream segment files kept on local disk, e.g. 512MiB; past it the coldest segments safely in the bucket are evicted and read back from it (empty: keep all, the bucket is a copy)")
	fs.StringVar(&tf.readCache, "s3-read-cache", "", "object-storage tier: how much of --local-budget keeps evicted bytes read back from the bucket (in <data-dir>/tier-cache, least recently used dropped first), e.g. 128MiB; 0: none (empty: a quarter of the budget)")
	fs.DurationVar(&tf.sealAfter, "seal-after", 10*time.Minute, "object-storage tier: a stream's last segment older than this is sealed and uploaded (the next append starts a new one): it bounds the history that exists only on local disk")
	fs.DurationVar(&tf.scanInterval, "s3-scan-interval", 5*time.Second, "object-storage tier: how often sealed segments are looked for (a scan visits every stream)")
	fs.BoolVar(&tf.restore, "s3-restore", false, "object-storage tier: at start, restore every stream in the bucket that is not on local disk (disaster recovery onto a new machine; a new data directory refuses a prefix that holds objects without it)")
}

func (tf *tierFlags) enabled() bool { return tf.bucket != "" }

// newTier builds the tier from the flags, checks that its bucket answers,
// and sets the engine options it needs. Nil when the tier is off.
func (tf *tierFlags) newTier(durability, dataDir string, opts *engine.Options, log *slog.Logger) (*tier.Tier, error) {
	if !tf.enabled() {
		if tf.localBudget != "" || tf.restore || tf.readCache != "" {
			return nil, errors.New("--local-budget, --s3-read-cache and --s3-restore need the object-storage tier: set --s3-bucket")
		}
		return nil, nil
	}
	if durability != string(engine.DurabilitySync) {
		return nil, errors.New("the object-storage tier needs --durability sync")
	}
	cfg := tier.Config{Endpoint: tf.endpoint, Bucket: tf.bucket, Prefix: tf.prefix, Region: tf.region,
		AccessKey: tf.accessKey, SecretKey: tf.secretKey, TLS: tf.tls, ScanInterval: tf.scanInterval, Logger: log,
		IDFile: filepath.Join(dataDir, "tier-id"), Restore: tf.restore}
	if cfg.AccessKey == "" {
		cfg.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
	}
	if cfg.SecretKey == "" {
		cfg.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if tf.localBudget != "" {
		n, err := parseBytes(tf.localBudget)
		if err != nil {
			return nil, fmt.Errorf("--local-budget: %w", err)
		}
		cfg.LocalBudget = n
	}
	cfg.CacheDir, cfg.CacheBytes = filepath.Join(dataDir, "tier-cache"), cfg.LocalBudget/4
	if tf.readCache != "" {
		n, err := parseBytes(tf.readCache)
		if err != nil {
			return nil, fmt.Errorf("--s3-read-cache: %w", err)
		}
		if cfg.LocalBudget == 0 && n > 0 {
			return nil, errors.New("--s3-read-cache needs --local-budget (without a budget nothing is evicted)")
		}
		cfg.CacheBytes = n
	}
	t, err := tier.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.Check(ctx); err != nil {
		if errors.Is(err, tier.ErrPrefixInUse) {
			return nil, fmt.Errorf("%w: to serve the streams stored there (a replaced disk), start with --s3-restore; to start afresh, use another --s3-prefix (or empty this one first)", err)
		}
		return nil, err
	}
	opts.Remote = t
	opts.OnRemove = t.Removed
	opts.SealAfter = tf.sealAfter
	log.Info("object-storage tier on", "endpoint", cfg.Endpoint, "bucket", cfg.Bucket, "prefix", cfg.Prefix, "id", t.ID(),
		"tls", cfg.TLS, "local_budget", cfg.LocalBudget, "read_cache", cfg.CacheBytes, "seal_after", tf.sealAfter)
	return t, nil
}

// start restores what the bucket has and the disk lacks (with
// --s3-restore), then starts the background uploads and evictions.
func (tf *tierFlags) start(t *tier.Tier, eng *engine.Engine, log *slog.Logger) error {
	if t == nil {
		return nil
	}
	if tf.restore {
		n, err := t.Restore(context.Background(), eng)
		log.Info("restore from object storage", "streams", n, "err", err)
		if err != nil {
			return fmt.Errorf("--s3-restore: %w", err)
		}
	}
	t.Start(eng)
	return nil
}

// tierMetrics adds the tier's counters to /metrics (nil: no tier).
func tierMetrics(t *tier.Tier) func(io.Writer) {
	if t == nil {
		return nil
	}
	return t.WriteMetrics
}
