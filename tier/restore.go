package tier

import (
	"context"
	"errors"
	"fmt"

	"github.com/minio/minio-go/v7"

	"github.com/durastream/durastream/engine"
)

// Restore puts back onto eng every stream that has a manifest in the
// bucket and no stream at its path in eng: created with its content type,
// its verified segments attached as remote (read from the bucket when
// asked for), and closed if its manifest says it was. What is not in a
// manifest is not restored: bytes not yet sealed and uploaded, producer
// and Stream-Seq state, TTLs and expiry times. Forks are skipped (their
// history lives in their source). Run it before Start (and Check with
// Config.Restore set, so that a new data directory takes the prefix).
// Restored segments keep the keys they were stored under: the sweep never
// deletes them while a stream lists them.
func (t *Tier) Restore(ctx context.Context, eng *engine.Engine) (int, error) {
	n := 0
	var errs []error
	for oi := range t.s3.ListObjects(ctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: t.cfg.Prefix + "manifest/", Recursive: true}) {
		if oi.Err != nil {
			return n, fmt.Errorf("restore: list manifests: %w", oi.Err)
		}
		m, err := t.readManifest(ctx, oi.Key)
		if err != nil || m == nil {
			errs = append(errs, err)
			continue
		}
		if m.Deleted {
			continue // deleted; kept only while forks read it
		}
		if m.Fork {
			t.log.Warn("restore: skipping a fork (its history is its source's)", "path", m.Path)
			continue
		}
		if _, err := eng.Head(m.Path); err == nil {
			continue // already here
		}
		var segs []engine.RemoteSegment
		next := uint64(0)
		for _, e := range m.Segments {
			if e.Base != next {
				t.log.Error("restore: a gap in a stream's manifest; restoring the history before it", "path", m.Path, "at", next)
				m.Closed = false
				break
			}
			segs = append(segs, engine.RemoteSegment{Base: engine.Offset(e.Base), Len: e.Len, Key: e.Key})
			next += uint64(e.Len)
		}
		if _, _, err := eng.Create(ctx, m.Path, engine.CreateOptions{ContentType: m.ContentType}); err != nil {
			errs = append(errs, fmt.Errorf("restore %q: %w", m.Path, err))
			continue
		}
		if err := eng.AttachRemote(ctx, m.Path, segs); err != nil {
			errs = append(errs, fmt.Errorf("restore %q: %w", m.Path, err))
			continue
		}
		if m.Closed {
			if _, err := eng.Append(ctx, m.Path, nil, engine.AppendOptions{Close: true}); err != nil {
				errs = append(errs, fmt.Errorf("restore %q: close: %w", m.Path, err))
				continue
			}
		}
		t.log.Info("restored stream from object storage", "path", m.Path, "bytes", next, "segments", len(segs), "closed", m.Closed)
		n++
	}
	return n, errors.Join(errs...)
}
