package tier

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
)

// Reads of evicted bytes. The engine asks for at most a MiB at a time; a
// catch-up read asks for the pieces of an object in order. One range GET
// per piece would leave the connection idle while each piece is sent on,
// so once a reader is seen reading an object in order, the next
// readAheadBlocks blocks of readAheadBytes are fetched in the background
// (at most readAheadMaxBytes in all, for every reader together); a piece
// they hold is copied from them. Anything else is one range GET of exactly
// the bytes asked for, so the first byte of an evicted range leaves before
// the rest is fetched. A short object is an error, never a short read.
// Whole blocks fetched either way are kept in the read cache (cache.go),
// which is asked first.
const (
	readAheadBytes    = 4 << 20
	readAheadBlocks   = 2
	readAheadMaxBytes = 64 << 20
	readAheadMaxKeys  = 64
)

// ReadRange is engine.Remote. Bytes from a block fetched ahead are a
// slice of it (blocks are never written once fetched), not a copy.
func (t *Tier) ReadRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	b := t.cache.read(key, off, n)
	if b == nil {
		b = t.ra.read(key, off, n)
	}
	if b == nil {
		b = make([]byte, n)
		if err := t.get(ctx, key, b, off); err != nil {
			return nil, err
		}
		if wholeBlock(off, n, objectLen(key)) {
			t.cache.put(key, off/cacheBlockBytes, b)
		}
	}
	t.ra.ahead(t, key, off, off+n)
	return b, nil
}

// get is one range GET of exactly len(p) bytes at off. The answer must
// say it holds those bytes: minio-go also takes a 200 for a range GET, and
// a proxy that drops Range would have the object's first bytes read as
// if they were at off.
func (t *Tier) get(ctx context.Context, key string, p []byte, off int64) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.RequestTimeout)
	defer cancel()
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return err
	}
	body, info, h, err := minio.Core{Client: t.s3}.GetObject(ctx, t.cfg.Bucket, key, opts)
	if err != nil {
		t.stats.readErrors.Add(1)
		if isNotFound(err) {
			t.log.Error("tier: an evicted segment's object is missing from the bucket", "key", key)
		}
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer body.Close()
	if !rangeAnswered(h.Get("Content-Range"), info.Size, off, int64(len(p))) {
		t.stats.readErrors.Add(1)
		t.log.Warn("tier: the bucket answered a range GET with other bytes (does a proxy drop the Range header?)",
			"key", key, "off", off, "len", len(p), "content_range", h.Get("Content-Range"), "content_length", info.Size)
		return fmt.Errorf("get %s at %d+%d: answered with Content-Range %q and %d bytes", key, off, len(p), h.Get("Content-Range"), info.Size)
	}
	n, err := io.ReadFull(body, p)
	if err != nil {
		t.stats.readErrors.Add(1)
		return fmt.Errorf("get %s at %d: %d of %d bytes: %w", key, off, n, len(p), err)
	}
	t.stats.reads.Add(1)
	t.stats.readBytes.Add(int64(n))
	return nil
}

// rangeAnswered reports whether an answer to a range GET of n bytes at off
// holds them: a 206 whose Content-Range is that range, or a whole object
// of n bytes when n bytes at 0 were asked for (size: the answer's length).
func rangeAnswered(contentRange string, size, off, n int64) bool {
	if contentRange == "" {
		return off == 0 && size == n
	}
	return strings.HasPrefix(contentRange, fmt.Sprintf("bytes %d-%d/", off, off+n-1))
}

// objectLen is the length a segment key ends with (<base>-<len>), or -1.
func objectLen(key string) int64 {
	i := strings.LastIndexByte(key, '-')
	if i < 0 || strings.LastIndexByte(key, '/') > i {
		return -1
	}
	n, err := strconv.ParseInt(key[i+1:], 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// readAhead holds blocks fetched ahead of sequential readers, by key.
type readAhead struct {
	mu    sync.Mutex
	keys  map[string]*raKey
	bytes int64 // in blocks held or being fetched
	clock int64
}

type raKey struct {
	next   int64 // where an in-order reader reads next
	blocks []*raBlock
	used   int64 // readAhead.clock at the last use
}

type raBlock struct {
	off  int64
	b    []byte
	err  error
	done chan struct{}
}

// read returns [off, off+n) from a block fetched ahead, waiting for it if
// it is on its way; nil if no block holds it (or its fetch failed: the
// caller asks the bucket itself).
func (ra *readAhead) read(key string, off, n int64) []byte {
	ra.mu.Lock()
	k := ra.keys[key]
	var blk *raBlock
	if k != nil {
		for _, b := range k.blocks {
			if off >= b.off && off+n <= b.off+int64(cap(b.b)) {
				blk = b
				break
			}
		}
	}
	ra.mu.Unlock()
	if blk == nil {
		return nil
	}
	<-blk.done
	if blk.err != nil || off+n > blk.off+int64(len(blk.b)) {
		return nil
	}
	return blk.b[off-blk.off : off-blk.off+n : off-blk.off+n]
}

// ahead notes that a reader of key read [off, next). Blocks wholly before
// next go; when the read began where the last one ended (an in-order
// reader), the blocks after it that are not on their way yet are fetched.
func (ra *readAhead) ahead(t *Tier, key string, off, next int64) {
	size := objectLen(key)
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.keys == nil {
		ra.keys = map[string]*raKey{}
	}
	ra.clock++
	k := ra.keys[key]
	if k == nil {
		if len(ra.keys) >= readAheadMaxKeys {
			ra.dropColdest()
		}
		ra.keys[key] = &raKey{next: next, used: ra.clock}
		return
	}
	inOrder := off == k.next
	k.next, k.used = next, ra.clock
	kept := k.blocks[:0]
	for _, b := range k.blocks {
		if b.off+int64(cap(b.b)) <= next || !inOrder {
			ra.bytes -= int64(cap(b.b))
			continue
		}
		kept = append(kept, b)
	}
	k.blocks = kept
	if !inOrder || size < 0 {
		return
	}
	from := next
	if n := len(k.blocks); n > 0 {
		last := k.blocks[n-1]
		from = max(from, last.off+int64(cap(last.b)))
	}
	// Blocks are aligned in the object (the first one starts before next
	// when next is not), so that each is one whole block of the read cache.
	from -= from % readAheadBytes
	for len(k.blocks) < readAheadBlocks && from < size && ra.bytes+readAheadBytes <= readAheadMaxBytes {
		n := min(readAheadBytes, size-from)
		if t.cache.has(key, from/cacheBlockBytes) {
			from += n
			continue
		}
		blk := &raBlock{off: from, b: make([]byte, n), done: make(chan struct{})}
		k.blocks = append(k.blocks, blk)
		ra.bytes += n
		from += n
		go func() {
			defer close(blk.done)
			blk.err = t.get(context.Background(), key, blk.b, blk.off)
			if blk.err == nil {
				t.cache.put(key, blk.off/cacheBlockBytes, blk.b)
			}
		}()
	}
}

// dropColdest forgets the least recently used key and its blocks (a fetch
// on its way finishes into a block nobody reads).
func (ra *readAhead) dropColdest() {
	var coldest string
	var k *raKey
	for key, c := range ra.keys {
		if k == nil || c.used < k.used {
			coldest, k = key, c
		}
	}
	for _, b := range k.blocks {
		ra.bytes -= int64(cap(b.b))
	}
	delete(ra.keys, coldest)
}
