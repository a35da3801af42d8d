package tier

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestBlockCacheUnderEviction: readers and fillers of many blocks in a
// cache that holds three, so that blocks are dropped (and their files
// removed) while they are being read: every read answers the block's exact
// bytes or nothing, and the files on disk stay within the limit.
func TestBlockCacheUnderEviction(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old.blk"), []byte("an earlier run's"), 0o600)
	const blockLen = 1000
	c, err := newBlockCache(dir, 3*blockLen, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.blk")); !os.IsNotExist(err) {
		t.Fatalf("an earlier run's block file: %v, want it deleted", err)
	}
	content := func(key string) []byte {
		return bytes.Repeat([]byte(key), blockLen/len(key))
	}
	var wg sync.WaitGroup
	var hits sync.Map
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 3000 {
				key := fmt.Sprintf("seg/k%d/0-%d", rng.IntN(10), blockLen)
				if rng.IntN(2) == 0 {
					c.put(key, 0, content(key))
					continue
				}
				off, n := int64(rng.IntN(blockLen/2)), int64(1+rng.IntN(blockLen/2))
				if b := c.read(key, off, n); b != nil {
					if !bytes.Equal(b, content(key)[off:off+n]) {
						t.Errorf("%s [%d,+%d): wrong bytes", key, off, n)
						return
					}
					hits.Store(key, true)
				}
			}
		}()
	}
	wg.Wait()
	files, _ := filepath.Glob(filepath.Join(dir, "*.blk"))
	if len(files) > 3 || c.held() > 3*blockLen {
		t.Fatalf("%d block files, %d bytes held, want at most 3 blocks", len(files), c.held())
	}
	n := 0
	hits.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		t.Fatal("no read was answered from the cache")
	}
	if c.read("seg/k0/0-1000", 900, 200) != nil {
		t.Fatal("a read past a short block was answered")
	}
}
