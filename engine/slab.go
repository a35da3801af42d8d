package engine

import (
	"fmt"
	"io/fs"
	"log/slog"
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
// format (tests make it smaller: Options.slabFileBytes).
const slabFileBytes int64 = 4 << 20

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
	// Slots of deleted streams wait for a checkpoint before reuse: one that
	// began before the delete may list the deleted stream with its slot,
	// and a new stream given the slot meanwhile would be listed with it too
	// (recovery refuses a slot used twice). deleted: freed since the last
	// checkpoint began; settling: freed before the running one began,
	// released once it is durable.
	deleted, settling []int64
	// repaired: files openSlab made whole, and how many bytes they held
	// before. The checkpoint must name no slot past those (claim).
	repaired map[int]int64
}

// openSlab opens the slab files under root (streams/), named
// slab.<slot size>.<n>. With none yet, new ones will have slots of
// slotSize; existing ones keep theirs, whatever MinSegmentSize says now
// (first segments of another size then get files of their own).
//
// A slab file that is missing below the highest one, or shorter than a
// slab file is, is made whole (zeros) with a warning rather than refused:
// a power cut can leave one so when it was added after the last checkpoint
// (a checkpoint syncs every slab file written before it), and then every
// slot in it holds bytes the commit log has, which replay writes back. If
// the checkpoint names a slot in the lost part, the damage is not a power
// cut's and recovery refuses it (claim).
func openSlab(fsys vfs.FS, root string, slotSize, fileBytes int64, log *slog.Logger) (*slab, error) {
	sb := &slab{fs: fsys, root: root, slotSize: slotSize, pins: map[int64]int32{}, pending: map[int64]bool{}, repaired: map[int]int64{}}
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
	sb.perFile = max(1, fileBytes/sb.slotSize)
	sort.Ints(nums)
	have := map[int]bool{}
	for _, n := range nums {
		have[n] = true
	}
	count := 0
	if len(nums) > 0 {
		count = nums[len(nums)-1] + 1
	}
	for i := range count {
		if err := sb.repair(i, have[i], log); err != nil {
			sb.close()
			return nil, err
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

// repair makes slab file i whole if it is missing or short (see openSlab).
func (sb *slab) repair(i int, exists bool, log *slog.Logger) error {
	path, want := sb.path(i), sb.perFile*sb.slotSize
	var had int64
	if exists {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() >= want {
			return nil // a longer one is refused by the caller
		}
		had = fi.Size()
		log.Warn("slab file is short (a power cut after it was added): making it whole; replay restores its slots",
			"file", path, "size", fi.Size(), "want", want)
	} else {
		log.Warn("slab file is missing (a power cut after it was added): recreating it; replay restores its slots", "file", path)
	}
	f, err := segment.CreateUnmapped(sb.fs, path, want)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = syncDir(vfs.Or(sb.fs), sb.root)
	}
	if err != nil {
		return fmt.Errorf("repair slab file %s: %w", path, classifyIOErr(err))
	}
	sb.repaired[i] = had
	return nil
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

// grow adds a slab file: reserved under a temporary name, synced, renamed
// into place and the directory synced, so a slab file is whole after any
// crash or power cut (where fallocate is missing the reservation is written
// zeros, which only a sync makes durable). Called with sb.mu held.
func (sb *slab) grow() error {
	path := sb.path(len(sb.files))
	f, err := segment.CreateUnmapped(sb.fs, path+".tmp", sb.perFile*sb.slotSize)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = vfs.Or(sb.fs).Rename(path+".tmp", path)
	}
	if err == nil {
		err = syncDir(vfs.Or(sb.fs), sb.root)
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
	if had, ok := sb.repaired[int(slot/sb.perFile)]; ok && (slot%sb.perFile+1)*sb.slotSize > had {
		return fmt.Errorf("%w: slab slot %d named by the checkpoint was in the lost part of %s", ErrCorrupt, slot, sb.path(int(slot/sb.perFile)))
	}
	sb.used[slot/64] |= 1 << (slot % 64)
	return nil
}

// freeDeleted returns a deleted stream's slot once a checkpoint that began
// after the delete is durable (and its last window is gone).
func (sb *slab) freeDeleted(slot int64) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.deleted = append(sb.deleted, slot)
}

// checkpointBegins: slots deleted so far are released when it is durable.
func (sb *slab) checkpointBegins() {
	if sb == nil {
		return
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.settling = append(sb.settling, sb.deleted...)
	sb.deleted = nil
}

// checkpointDurable releases the slots deleted before it began.
func (sb *slab) checkpointDurable() {
	if sb == nil {
		return
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	for _, slot := range sb.settling {
		sb.freeLocked(slot)
	}
	sb.settling = nil
}

// free returns a slot that no checkpoint lists (a segment made for a write
// that failed), at once or when its last window goes.
func (sb *slab) free(slot int64) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.freeLocked(slot)
}

func (sb *slab) freeLocked(slot int64) {
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
