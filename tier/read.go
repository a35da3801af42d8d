package tier

import (
	"context"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"
)

// ReadAt is engine.Remote: one range GET of exactly the bytes asked for
// (the engine asks for at most a MiB at a time on a catch-up read), so the
// first byte of an evicted range leaves before the rest is fetched. A
// short object is an error, never a short read.
func (t *Tier) ReadAt(ctx context.Context, key string, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout)
	defer cancel()
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return err
	}
	obj, err := t.s3.GetObject(ctx, t.cfg.Bucket, key, opts)
	if err != nil {
		t.stats.readErrors.Add(1)
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Close()
	n, err := io.ReadFull(obj, p)
	if err != nil {
		t.stats.readErrors.Add(1)
		if isNotFound(err) {
			t.log.Error("tier: an evicted segment's object is missing from the bucket", "key", key)
		}
		return fmt.Errorf("get %s at %d: %d of %d bytes: %w", key, off, n, len(p), err)
	}
	t.stats.reads.Add(1)
	t.stats.readBytes.Add(int64(n))
	return nil
}
