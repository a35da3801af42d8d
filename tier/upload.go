package tier

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/durastream/durastream/engine"
)

// manifest is a stream's history in the bucket: every segment verified
// there, in offset order. It is rewritten (a plain PUT) after each upload
// round that added to it; a segment is listed only once its object is
// verified, and evicted only once a manifest listing it is stored.
type manifest struct {
	Version     int    `json:"version"`
	Path        string `json:"path"`
	Incarnation string `json:"incarnation"`
	ContentType string `json:"content_type"`
	Fork        bool   `json:"fork,omitempty"`
	// Closed: the last segment listed ends at the stream's final offset.
	Closed bool `json:"closed,omitempty"`
	// Deleted: deleted while forks still read it; its objects stay until
	// the last fork goes. Not restored.
	Deleted  bool      `json:"deleted,omitempty"`
	Segments []segment `json:"segments"`
	Updated  time.Time `json:"updated"`
}

type segment struct {
	Base uint64 `json:"base"`
	Len  int64  `json:"len"`
	Key  string `json:"key"`
	MD5  string `json:"md5"`
}

// streamState is what the tier knows of one stream incarnation.
type streamState struct {
	loaded  bool               // its manifest was read from the bucket
	segs    map[uint64]segment // verified in the bucket, by base
	closed  bool
	deleted bool // the stored manifest says deleted
	stored  bool // the manifest in the bucket lists every entry of segs
	touched bool // seen in the last scan
}

// streamSegs is one stream's segments from a scan, in offset order.
type streamSegs struct {
	path, inc   string
	id          uint64
	contentType string
	fork        bool
	// deleted: soft-deleted (forks still read its bytes): tiered as
	// before, its manifest says deleted (not restored).
	deleted bool
	segs    []engine.SegmentInfo
}

// scan lists every stream's segments, grouped by stream.
func (t *Tier) scan() ([]*streamSegs, error) {
	byID := map[uint64]*streamSegs{}
	var out []*streamSegs
	err := t.eng.Load().Segments(func(in engine.SegmentInfo) bool {
		ss := byID[in.StreamID]
		if ss == nil {
			ss = &streamSegs{path: in.Path, id: in.StreamID, inc: t.incarnation(in.CreatedAt, in.StreamID),
				contentType: in.ContentType, fork: in.Fork, deleted: in.Deleted}
			byID[in.StreamID] = ss
			out = append(out, ss)
		}
		ss.segs = append(ss.segs, in)
		return true
	})
	// Forget streams that are gone.
	for id := range t.streams {
		if byID[id] == nil {
			delete(t.streams, id)
		}
	}
	return out, err
}

// uploadAll uploads every sealed local segment not yet verified in the
// bucket, and stores the manifests that changed; streams in parallel.
func (t *Tier) uploadAll(ctx context.Context, all []*streamSegs) error {
	var work []*streamSegs
	for _, ss := range all {
		if t.pending(ss) {
			work = append(work, ss)
		}
	}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, t.cfg.Uploaders)
	var wg sync.WaitGroup
	for _, ss := range work {
		st := t.state(ss.id)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := t.uploadStream(ctx, ss, st); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stream %q: %w", ss.path, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (t *Tier) state(id uint64) *streamState {
	st := t.streams[id]
	if st == nil {
		st = &streamState{segs: map[uint64]segment{}}
		t.streams[id] = st
	}
	return st
}

// pending reports whether ss has a sealed segment, or a closure, that its
// manifest in the bucket does not have yet.
func (t *Tier) pending(ss *streamSegs) bool {
	st := t.streams[ss.id]
	if st != nil && st.stored && st.deleted != ss.deleted {
		return true
	}
	if st == nil || !st.stored {
		return slices.ContainsFunc(ss.segs, func(in engine.SegmentInfo) bool { return in.Sealed && in.Len > 0 })
	}
	for _, in := range ss.segs {
		if !in.Sealed || in.Len == 0 {
			continue
		}
		if e, ok := st.segs[uint64(in.Base)]; !ok || e.Len != in.Len || in.Final && !st.closed {
			return true
		}
	}
	return false
}

// uploadStream brings one stream's objects and manifest up to date. Its
// state is touched by this goroutine only while it runs.
func (t *Tier) uploadStream(ctx context.Context, ss *streamSegs, st *streamState) error {
	if !st.loaded {
		m, err := t.getManifest(ctx, ss.path)
		if err != nil {
			return err
		}
		if m != nil {
			// Entries of this incarnation, and the remote segments it was
			// restored from, were verified before that manifest was stored;
			// another incarnation's are not this stream's bytes.
			for _, e := range m.Segments {
				if strings.HasPrefix(e.Key, t.incPrefix(ss.inc)) || slices.ContainsFunc(ss.segs, func(in engine.SegmentInfo) bool { return in.Remote == e.Key }) {
					st.segs[e.Base] = e
				}
			}
		}
		st.loaded = true
	}
	var errs []error
	var replaced []string
	changed := false
	for _, in := range ss.segs {
		if !in.Sealed || in.Len == 0 {
			continue
		}
		if e, ok := st.segs[uint64(in.Base)]; ok && e.Len == in.Len && (in.Remote == "" || e.Key == in.Remote) {
			continue
		}
		if in.Remote != "" {
			// Attached by a restore: its object is the one it came from.
			st.segs[uint64(in.Base)] = segment{Base: uint64(in.Base), Len: in.Len, Key: in.Remote}
			changed = true
			continue
		}
		e, err := t.uploadSegment(ctx, ss, in)
		if err != nil {
			errs = append(errs, err)
			break // later segments wait: the manifest lists a prefix of the history
		}
		if old, ok := st.segs[e.Base]; ok && old.Key != e.Key && strings.HasPrefix(old.Key, t.incPrefix(ss.inc)) {
			// The segment at this base was laid out differently before a
			// crash (a power cut can lose a new segment's file): its old
			// object goes once the manifest no longer lists it.
			replaced = append(replaced, old.Key)
		}
		st.segs[e.Base] = e
		changed = true
	}
	final := len(ss.segs) > 0 && ss.segs[len(ss.segs)-1].Final
	if _, ok := st.segs[uint64(ss.segs[len(ss.segs)-1].Base)]; final && ok && !st.closed {
		st.closed, changed = true, true
	}
	if st.deleted != ss.deleted {
		st.deleted, changed = ss.deleted, true
	}
	if changed || !st.stored {
		st.stored = false
		if err := t.putManifest(ctx, ss, st); err != nil {
			return errors.Join(append(errs, err)...)
		}
		st.stored = true
		if err := t.deleteKeys(ctx, replaced); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// uploadSegment uploads one sealed segment create-only and verifies it.
func (t *Tier) uploadSegment(ctx context.Context, ss *streamSegs, in engine.SegmentInfo) (segment, error) {
	c, err := t.eng.Load().Read(ss.path, engine.At(in.Base), engine.ReadOptions{
		End: in.Base + engine.Offset(in.Len), MaxBytes: in.Len, Housekeeping: true, OnePass: true})
	if err != nil {
		return segment{}, fmt.Errorf("read segment at %d: %w", in.Base, err)
	}
	defer c.Release()
	data := c.Data()
	if len(data) != 1 || int64(len(data[0])) != in.Len {
		return segment{}, fmt.Errorf("segment at %d: read %d pieces, want one of %d bytes", in.Base, len(data), in.Len)
	}
	b := data[0]
	sum := md5.Sum(b)
	e := segment{Base: uint64(in.Base), Len: in.Len, Key: t.segKey(ss.inc, in.Base, in.Len), MD5: hex.EncodeToString(sum[:])}
	// One PUT, its integrity carried by Content-MD5 (the server refuses a
	// body that does not match it): the payload is not also signed
	// (aws-chunked SHA-256 per chunk costs more CPU than the upload).
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}
	opts.SetMatchETagExcept("*") // create-only: never overwrite
	rctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout+time.Duration(in.Len>>20)*time.Second)
	defer cancel()
	start := time.Now()
	_, err = minio.Core{Client: t.s3}.PutObject(rctx, t.cfg.Bucket, e.Key, bytes.NewReader(b), in.Len,
		base64.StdEncoding.EncodeToString(sum[:]), "", opts)
	// Created now, or already there (412): by an upload a crash cut short
	// of its manifest. Any other failure may also have stored it (some
	// servers answer 412 before reading the body, then reset the
	// connection): the object decides. Either way it must be exactly these
	// bytes.
	oi, serr := t.s3.StatObject(rctx, t.cfg.Bucket, e.Key, minio.StatObjectOptions{})
	if serr != nil {
		t.stats.uploadErrors.Add(1)
		if err != nil && !isPreconditionFailed(err) {
			return segment{}, fmt.Errorf("upload %s: %w", e.Key, err)
		}
		return segment{}, fmt.Errorf("verify %s: %w", e.Key, serr)
	}
	if oi.Size != in.Len || !etagIsMD5(oi.ETag, e.MD5) {
		t.stats.uploadErrors.Add(1)
		return segment{}, fmt.Errorf("verify %s: the bucket holds %d bytes with ETag %s, want %d bytes with MD5 %s",
			e.Key, oi.Size, oi.ETag, in.Len, e.MD5)
	}
	if err == nil {
		t.stats.uploads.Add(1)
		t.stats.uploadBytes.Add(in.Len)
		t.stats.uploadNanos.Add(int64(time.Since(start)))
	}
	return e, nil
}

// etagIsMD5: a single-part upload's ETag is the MD5 of its bytes.
func etagIsMD5(etag, md5hex string) bool {
	return len(etag) == 32 && bytes.EqualFold([]byte(etag), []byte(md5hex)) ||
		len(etag) == 34 && bytes.EqualFold([]byte(etag[1:33]), []byte(md5hex))
}

func isPreconditionFailed(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusPreconditionFailed || r.Code == "PreconditionFailed"
}

// putManifest stores st as ss's manifest.
func (t *Tier) putManifest(ctx context.Context, ss *streamSegs, st *streamState) error {
	m := manifest{Version: 1, Path: ss.path, Incarnation: ss.inc, ContentType: ss.contentType, Fork: ss.fork,
		Closed: st.closed, Deleted: st.deleted, Updated: time.Now().UTC()}
	for _, e := range st.segs {
		m.Segments = append(m.Segments, e)
	}
	slices.SortFunc(m.Segments, func(a, b segment) int { return cmp.Compare(a.Base, b.Base) })
	body, err := json.Marshal(&m)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout)
	defer cancel()
	_, err = t.s3.PutObject(rctx, t.cfg.Bucket, t.manifestKey(ss.path), bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/json", DisableMultipart: true, SendContentMd5: true})
	if err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	return nil
}

// getManifest reads path's manifest; nil if there is none.
func (t *Tier) getManifest(ctx context.Context, path string) (*manifest, error) {
	return t.readManifest(ctx, t.manifestKey(path))
}

func (t *Tier) readManifest(ctx context.Context, key string) (*manifest, error) {
	rctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout)
	defer cancel()
	obj, err := t.s3.GetObject(rctx, t.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	defer obj.Close()
	var m manifest
	if err := json.NewDecoder(obj).Decode(&m); err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	return &m, nil
}
