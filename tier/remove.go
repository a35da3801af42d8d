package tier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/durastream/durastream/engine"
)

// deleteRemoved deletes the objects of streams removed since the last
// round: their incarnation's segments, the keys of their remote segments,
// and their manifest unless it already belongs to a newer incarnation of
// the path. Deleting is idempotent; what fails is left to the sweep.
func (t *Tier) deleteRemoved(ctx context.Context) error {
	var errs []error
	for {
		var r engine.RemovedStream
		select {
		case r = <-t.removed:
		default:
			if len(errs) > 0 {
				t.sweep.Store(true)
			}
			return errors.Join(errs...)
		}
		inc := t.incarnation(r.CreatedAt, r.StreamID)
		keys := append([]string(nil), r.Remote...)
		t.cache.dropKeys(t.incPrefix(inc), keys)
		m, err := t.getManifest(ctx, r.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ownManifest := m != nil && m.Incarnation == inc
		if ownManifest {
			for _, e := range m.Segments {
				keys = append(keys, e.Key)
			}
		}
		if err := t.deletePrefix(ctx, t.incPrefix(inc)); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := t.deleteKeys(ctx, keys); err != nil {
			errs = append(errs, err)
			continue
		}
		if ownManifest {
			if err := t.deleteKeys(ctx, []string{t.manifestKey(r.Path)}); err != nil {
				errs = append(errs, err)
			}
		}
		t.stats.streamsDeleted.Add(1)
	}
}

// sweepBucket deletes what this data directory wrote and no live stream
// refers to: its manifests of paths that are gone (or of an older
// incarnation), with the objects they list, and segment objects of its
// incarnations no live stream has. Other data directories' objects are
// never its to delete (owner.go): a replaced disk's history stays for a
// restore. It runs at start (a crash may have come between a delete and
// its objects' removal) and when a removal did not fit the queue.
func (t *Tier) sweepBucket(ctx context.Context, live []*streamSegs) error {
	byPath := map[string]*streamSegs{}
	keep := map[string]bool{} // incarnation prefixes and keys in use
	for _, ss := range live {
		byPath[ss.path] = ss
		keep[t.incPrefix(ss.inc)] = true
		for _, in := range ss.segs {
			if in.Remote != "" {
				keep[in.Remote] = true
				if i := strings.LastIndexByte(in.Remote, '/'); i >= 0 {
					keep[in.Remote[:i+1]] = true
				}
			}
		}
	}
	var errs []error
	for oi := range t.s3.ListObjects(ctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: t.cfg.Prefix + "manifest/", Recursive: true}) {
		if oi.Err != nil {
			return fmt.Errorf("sweep: list manifests: %w", oi.Err)
		}
		m, err := t.readManifest(ctx, oi.Key)
		if err != nil || m == nil {
			errs = append(errs, err)
			continue
		}
		if !t.ours(m.Incarnation) {
			continue // another data directory's (owner.go)
		}
		ss := byPath[m.Path]
		if ss != nil && (ss.inc == m.Incarnation || slices.ContainsFunc(ss.segs, func(in engine.SegmentInfo) bool { return in.Sealed })) {
			continue // its stream's, or one the upload round rewrites for a newer incarnation
		}
		var keys []string
		for _, e := range m.Segments {
			if !keep[e.Key] {
				keys = append(keys, e.Key)
			}
		}
		keys = append(keys, oi.Key)
		if err := t.deleteKeys(ctx, keys); err != nil {
			errs = append(errs, err)
		}
	}
	for oi := range t.s3.ListObjects(ctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: t.cfg.Prefix + "seg/" + t.id + "/"}) {
		if oi.Err != nil {
			return fmt.Errorf("sweep: list segment prefixes: %w", oi.Err)
		}
		if !strings.HasSuffix(oi.Key, "/") || keep[oi.Key] {
			continue
		}
		if err := t.deletePrefix(ctx, oi.Key); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deletePrefix deletes every object under prefix.
func (t *Tier) deletePrefix(ctx context.Context, prefix string) error {
	var keys []string
	for oi := range t.s3.ListObjects(ctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return fmt.Errorf("list %s: %w", prefix, oi.Err)
		}
		keys = append(keys, oi.Key)
	}
	return t.deleteKeys(ctx, keys)
}

// deleteKeys deletes objects; one that is already gone is not an error.
func (t *Tier) deleteKeys(ctx context.Context, keys []string) error {
	for _, k := range keys {
		rctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout)
		err := t.s3.RemoveObject(rctx, t.cfg.Bucket, k, minio.RemoveObjectOptions{})
		cancel()
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("delete %s: %w", k, err)
		}
		t.stats.objectsDeleted.Add(1)
	}
	return nil
}
