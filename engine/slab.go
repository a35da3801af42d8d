package engine

import (
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/durastream/durastream/segment"
	"github.com/durastream/durastream/vfs"
)

// A stream's first segment, when its first append fits MinSegmentSize, is
// a slot in a slab rather than a file of its own: a new stream then costs
// no file creation (open(O_CREAT), fallocate, the inode and directory
// entry: about a third of the server's CPU in create-burst), and most
// streams stay that small. Slabs are 4 MiB files streams/slab.<slot
// size>.<n>, made as needed, each mapped once for reads and written through
// its descriptor; a slot is read and written through a segment.Window.
//
// Which slot a segment uses is in the checkpoint; a segment made after it
// gets its slot again by replay, in log order (not necessarily the slot it
// had: its bytes are all in the log, since large appends, whose bytes are
// only in their segment, never go into a slot). A deleted stream's slot is
// reused only after the delete is durable and the last window over the
// slot is gone, so no reader sees another stream's bytes.

// slabFileBytes is the size of every slab file: part of the on-disk
// format (tests make it smaller).
var slabFileBytes int64 = 4 << 20

type slab struct {
	fs       vfs.FS
	root     string
	slotSize int64 // fixed by the first slab file: its name says it
	perFile  int64 // slots per file

	mu      sync.Mutex
	files   []*segment.File
	used    []uint64        // bit per slot: allocated (or freed but still pinned)
	hint    int             // word of used to search from
	pins    map[int64]int32 // windows alive per slot
	pending map[int64]bool  // freed while pinned: free when the last window goes
}

// openSlab opens the slab files under root (streams/), named
// slab.<slot size>.<n>. With none yet, new ones will have slots of
// slotSize; existing ones keep theirs, whatever MinSegmentSize says now
// (first segments of another size then get files of their own).
func openSlab(fsys vfs.FS, root string, slotSize int64) (*slab, error) {
	sb := &slab{fs: fsys, root: root, slotSize: slotSize, pins: map[int64]int32{}, pending: map[int64]bool{}}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var nums []int
	for _, ent := range ents {
		rest, ok := strings.CutPrefix(ent.Name(), "slab.")
		if !ok {
			continue
		}
		if strings.HasSuffix(rest, ".tmp") { // a crash while adding a slab file
			if err := os.Remove(filepath.Join(root, ent.Name())); err != nil {
				return nil, err
			}
			continue
		}
		size, num, _ := strings.Cut(rest, ".")
		sz, err1 := strconv.ParseInt(size, 10, 64)
		n, err2 := strconv.Atoi(num)
		if err1 != nil || err2 != nil || sz <= 0 || n < 0 {
			return nil, fmt.Errorf("%w: unexpected file %s", ErrCorrupt, ent.Name())
		}
		if len(nums) > 0 && sz != sb.slotSize {
			return nil, fmt.Errorf("%w: slab files of slot sizes %d and %d", ErrCorrupt, sb.slotSize, sz)
		}
		sb.slotSize = sz
		nums = append(nums, n)
	}
	sb.perFile = max(1, slabFileBytes/sb.slotSize)
	sort.Ints(nums)
	for i, n := range nums {
		if n != i {
			sb.close()
			return nil, fmt.Errorf("%w: slab file %d missing", ErrCorrupt, i)
		}
		f, err := segment.OpenWritten(fsys, sb.path(i))
		if err == nil && f.Cap() != sb.perFile*sb.slotSize {
			f.Close()
			err = fmt.Errorf("%w: slab file %s is %d bytes", ErrCorrupt, sb.path(i), f.Cap())
		}
		if err != nil {
			sb.close()
			return nil, err
		}
		sb.files = append(sb.files, f)
	}
	sb.used = make([]uint64, (int64(len(sb.files))*sb.perFile+63)/64)
	return sb, nil
}

func (sb *slab) path(i int) string {
	return filepath.Join(sb.root, "slab."+strconv.FormatInt(sb.slotSize, 10)+"."+strconv.Itoa(i))
}

// close drops the slab files (mappings go with their last window). A nil
// slab (memory mode) has none.
func (sb *slab) close() {
	if sb == nil {
		return
	}
	for _, f := range sb.files {
		f.Close()
	}
	sb.files = nil
}

// alloc takes a free slot, adding a slab file when there is none.
func (sb *slab) alloc() (int64, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	total := int64(len(sb.files)) * sb.perFile
	for i := range len(sb.used) {
		w := (sb.hint + i) % len(sb.used)
		if sb.used[w] == ^uint64(0) {
			continue
		}
		if slot := int64(w)*64 + int64(bits.TrailingZeros64(^sb.used[w])); slot < total {
			sb.used[w] |= 1 << (slot % 64)
			sb.hint = w
			return slot, nil
		}
	}
	// Every slot is taken: the new file's first one is free.
	if err := sb.grow(); err != nil {
		return 0, err
	}
	sb.used[total/64] |= 1 << (total % 64)
	sb.hint = int(total / 64)
	return total, nil
}

// grow adds a slab file: reserved under a temporary name first, so a
// slab file is always whole. Called with sb.mu held.
func (sb *slab) grow() error {
	path := sb.path(len(sb.files))
	f, err := segment.CreateUnmapped(sb.fs, path+".tmp", sb.perFile*sb.slotSize)
	if err == nil {
		f.Close()
		err = vfs.Or(sb.fs).Rename(path+".tmp", path)
	}
	if err == nil {
		f, err = segment.OpenWritten(sb.fs, path)
	}
	if err != nil {
		os.Remove(path + ".tmp")
		return classifyIOErr(err)
	}
	sb.files = append(sb.files, f)
	n := (int64(len(sb.files))*sb.perFile + 63) / 64
	sb.used = append(sb.used, make([]uint64, n-int64(len(sb.used)))...)
	return nil
}

// claim marks a slot named by the checkpoint as used.
func (sb *slab) claim(slot int64) error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if slot < 0 || slot >= int64(len(sb.files))*sb.perFile {
		return fmt.Errorf("%w: slab slot %d beyond the slab files", ErrCorrupt, slot)
	}
	if sb.used[slot/64]&(1<<(slot%64)) != 0 {
		return fmt.Errorf("%w: slab slot %d used twice", ErrCorrupt, slot)
	}
	sb.used[slot/64] |= 1 << (slot % 64)
	return nil
}

// free returns a slot, at once or when its last window goes.
func (sb *slab) free(slot int64) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.pins[slot] > 0 {
		sb.pending[slot] = true
		return
	}
	sb.used[slot/64] &^= 1 << (slot % 64)
}

// window opens a File over a slot.
func (sb *slab) window(slot int64) (*segment.File, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	i := slot / sb.perFile
	if slot < 0 || i >= int64(len(sb.files)) {
		return nil, fmt.Errorf("%w: slab slot %d: %w", ErrCorrupt, slot, fs.ErrNotExist)
	}
	w, ok := sb.files[i].Window(slot%sb.perFile*sb.slotSize, sb.slotSize, func() { sb.unpin(slot) })
	if !ok {
		return nil, ErrEngineClosed
	}
	sb.pins[slot]++
	return w, nil
}

func (sb *slab) unpin(slot int64) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.pins[slot]--; sb.pins[slot] > 0 {
		return
	}
	delete(sb.pins, slot)
	if sb.pending[slot] {
		delete(sb.pending, slot)
		sb.used[slot/64] &^= 1 << (slot % 64)
	}
}
