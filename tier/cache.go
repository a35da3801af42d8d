package tier

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Re-cached evicted bytes. Blocks of cacheBlockBytes, aligned in their
// object, that were fetched whole for a reader are kept as files in
// Config.CacheDir, within Config.CacheBytes, least recently used dropped
// first; a later read of them does not go to the bucket. Segment objects
// are never rewritten (create-only keys, a new key per incarnation), so a
// block is valid for as long as its key exists; a removed stream's blocks
// go with its objects. The cache is not durable state: it starts empty (the
// files a previous run left are deleted), and a block whose file cannot be
// read is forgotten and fetched again.
const cacheBlockBytes = readAheadBytes

type blockCache struct {
	dir   string
	limit int64
	log   *slog.Logger

	mu     sync.Mutex
	blocks map[blockID]*cachedBlock
	bytes  int64
	clock  int64
	seq    int64 // file names

	hits, fills atomic.Int64
}

type blockID struct {
	key string
	idx int64
}

type cachedBlock struct {
	file string
	n    int64
	used int64
}

// newBlockCache opens dir as the cache, deleting the block files of an
// earlier run. Nil when the cache is off (dir or limit unset).
func newBlockCache(dir string, limit int64, log *slog.Logger) (*blockCache, error) {
	if dir == "" || limit <= 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tier: read cache: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tier: read cache: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".blk") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("tier: read cache: %w", err)
			}
		}
	}
	return &blockCache{dir: dir, limit: limit, log: log, blocks: map[blockID]*cachedBlock{}}, nil
}

// wholeBlock reports whether [off, off+n) of an object of size bytes is
// one whole cache block (the last block of an object may be short).
func wholeBlock(off, n, size int64) bool {
	return off%cacheBlockBytes == 0 && (n == cacheBlockBytes || (size >= 0 && off+n == size))
}

// has reports whether block idx of key is cached.
func (c *blockCache) has(key string, idx int64) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blocks[blockID{key, idx}] != nil
}

// read returns [off, off+n) of key if every block it spans is cached, or
// nil.
func (c *blockCache) read(key string, off, n int64) []byte {
	if c == nil {
		return nil
	}
	type part struct {
		id       blockID
		file     string
		at       int64 // offset in the block
		from, to int64 // of the bytes asked for
	}
	var parts []part
	c.mu.Lock()
	c.clock++
	for pos := off; pos < off+n; {
		idx := pos / cacheBlockBytes
		id := blockID{key, idx}
		b := c.blocks[id]
		end := min(off+n, idx*cacheBlockBytes+cacheBlockBytes)
		if b == nil || end-idx*cacheBlockBytes > b.n {
			c.mu.Unlock()
			return nil
		}
		b.used = c.clock
		parts = append(parts, part{id, b.file, pos - idx*cacheBlockBytes, pos - off, end - off})
		pos = end
	}
	c.mu.Unlock()
	out := make([]byte, n)
	for _, p := range parts {
		if err := readFileAt(p.file, out[p.from:p.to], p.at); err != nil {
			// Not there: dropped since (file names are never reused).
			if !errors.Is(err, fs.ErrNotExist) {
				c.log.Warn("tier: read cache: a cached block is unreadable; fetching it again", "key", p.id.key, "err", err)
			}
			c.forget(p.id, p.file)
			return nil
		}
	}
	c.hits.Add(1)
	return out
}

func readFileAt(name string, p []byte, off int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// put keeps b as block idx of key, dropping the least recently used blocks
// past the limit. A failure to write only means the block is not cached.
func (c *blockCache) put(key string, idx int64, b []byte) {
	if c == nil || int64(len(b)) > c.limit {
		return
	}
	id := blockID{key, idx}
	c.mu.Lock()
	if c.blocks[id] != nil {
		c.mu.Unlock()
		return
	}
	c.seq++
	file := filepath.Join(c.dir, strconv.FormatInt(c.seq, 10)+".blk")
	c.mu.Unlock()
	// No reader opens the file before it is in c.blocks, below; a crash
	// leaves at most a short file that the next start deletes. (No sync:
	// a start empties the cache anyway.)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		c.log.Warn("tier: read cache: cannot keep a block", "key", key, "err", err)
		os.Remove(file)
		return
	}
	c.mu.Lock()
	if c.blocks[id] != nil { // another reader kept it meanwhile
		c.mu.Unlock()
		os.Remove(file)
		return
	}
	c.clock++
	c.blocks[id] = &cachedBlock{file: file, n: int64(len(b)), used: c.clock}
	c.bytes += int64(len(b))
	var drop []string
	for c.bytes > c.limit {
		drop = append(drop, c.dropColdest())
	}
	c.mu.Unlock()
	c.fills.Add(1)
	removeFiles(drop)
}

// held is the bytes of the blocks kept.
func (c *blockCache) held() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// dropColdest forgets the least recently used block and returns its file.
// c.mu held.
func (c *blockCache) dropColdest() string {
	var cold blockID
	var cb *cachedBlock
	for id, b := range c.blocks {
		if cb == nil || b.used < cb.used {
			cold, cb = id, b
		}
	}
	delete(c.blocks, cold)
	c.bytes -= cb.n
	return cb.file
}

// forget drops block id if file still holds it.
func (c *blockCache) forget(id blockID, file string) {
	c.mu.Lock()
	b := c.blocks[id]
	if b != nil && b.file != file {
		b = nil // dropped and kept again meanwhile
	}
	if b != nil {
		delete(c.blocks, id)
		c.bytes -= b.n
	}
	c.mu.Unlock()
	if b != nil {
		os.Remove(b.file)
	}
}

// dropKeys forgets the blocks of the given keys and of every key under
// prefix (a removed stream's objects).
func (c *blockCache) dropKeys(prefix string, keys []string) {
	if c == nil {
		return
	}
	gone := map[string]bool{}
	for _, k := range keys {
		gone[k] = true
	}
	var drop []string
	c.mu.Lock()
	for id, b := range c.blocks {
		if gone[id.key] || strings.HasPrefix(id.key, prefix) {
			delete(c.blocks, id)
			c.bytes -= b.n
			drop = append(drop, b.file)
		}
	}
	c.mu.Unlock()
	removeFiles(drop)
}

func removeFiles(names []string) {
	for _, n := range names {
		os.Remove(n)
	}
}
