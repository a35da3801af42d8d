package powerfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Options configure a Disk.
type Options struct {
	// NoFallocate makes fallocate fail with EOPNOTSUPP, as on file systems
	// without it: programs then write zeros to reserve space, and those
	// zeros are durable only once synced.
	NoFallocate bool
	// DirectIO accepts O_DIRECT opens. By default they fail with EINVAL,
	// as on file systems that refuse O_DIRECT: programs fall back to
	// buffered writes.
	DirectIO bool
	// Journal says which namespace operations a sync commits.
	Journal JournalMode
	// Debug logs every FUSE request (go-fuse's debug output).
	Debug bool
}

// JournalMode says which pending namespace operations a sync commits.
type JournalMode int

const (
	// JournalPerInode (the default): a sync commits the operations on the
	// synced inode (a directory: on its entries) and what they depend on.
	JournalPerInode JournalMode = iota
	// JournalGlobal: any sync commits every pending operation (ext4
	// without fast_commit).
	JournalGlobal
)

func (j JournalMode) String() string {
	if j == JournalGlobal {
		return "global"
	}
	return "per-inode"
}

// rootIno is the root directory's inode number (and FUSE node id).
const rootIno = 1

// Disk is the durable medium: what survives a power cut. File contents are
// backing files named by inode number in dir; the namespace is in memory
// (it need not outlive the process that runs the tests).
type Disk struct {
	dir  string
	opts Options

	mu      sync.Mutex
	inodes  map[uint64]*dinode
	nextIno uint64
	mounted bool
}

// dinode is a durable inode.
type dinode struct {
	mode    uint32
	entries map[string]uint64 // directories
}

// NewDisk makes an empty file system whose durable file contents live in
// dir (created if missing; it should be empty and is owned by the Disk).
func NewDisk(dir string, opts Options) (*Disk, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Disk{dir: dir, opts: opts, nextIno: rootIno + 1, inodes: map[uint64]*dinode{
		rootIno: {mode: syscall.S_IFDIR | 0o755, entries: map[string]uint64{}},
	}}, nil
}

// SetJournal sets the journal mode of the next Mount (a file system may
// commit differently from one power-on to the next: a test can vary it).
func (d *Disk) SetJournal(j JournalMode) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opts.Journal = j
}

func (d *Disk) backingPath(ino uint64) string {
	return filepath.Join(d.dir, strconv.FormatUint(ino, 10))
}

// newIno returns an inode number never used on this Disk.
func (d *Disk) newIno() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nextIno++
	return d.nextIno - 1
}

// apply makes committed namespace ops durable, in journal order.
func (d *Disk) apply(ops []*op) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range ops {
		dir := d.inodes[o.dir]
		switch o.kind {
		case opCreate:
			di := &dinode{mode: o.mode}
			if o.mode&syscall.S_IFMT == syscall.S_IFDIR {
				di.entries = map[string]uint64{}
			}
			d.inodes[o.ino] = di
			if dir != nil {
				dir.entries[o.name] = o.ino
			}
		case opRemove:
			if dir != nil && dir.entries[o.name] == o.ino {
				delete(dir.entries, o.name)
			}
		case opRename:
			if dir != nil && dir.entries[o.name] == o.ino {
				delete(dir.entries, o.name)
			}
			if to := d.inodes[o.toDir]; to != nil {
				to.entries[o.toName] = o.ino
			}
		}
	}
}

// reachable returns the durable inodes reachable from the root, dropping
// the others and their backing files: what a file system check would
// leave after a power cut. Called with d.mu held.
func (d *Disk) reachable() (map[uint64]bool, error) {
	seen := map[uint64]bool{}
	var walk func(ino uint64)
	walk = func(ino uint64) {
		di := d.inodes[ino]
		if di == nil || seen[ino] {
			return
		}
		seen[ino] = true
		for _, c := range di.entries {
			walk(c)
		}
	}
	walk(rootIno)
	for ino := range d.inodes {
		if !seen[ino] {
			delete(d.inodes, ino)
		}
	}
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range ents {
		ino, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || !seen[ino] {
			if err := os.Remove(filepath.Join(d.dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return seen, errors.Join(errs...)
}

// fileSize is a backing file's size: its inode's durable size (0 if it was
// never synced).
func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// tree builds the volatile view of the durable state: the nodes a new
// mount starts with. Called with d.mu held.
func (d *Disk) tree() (map[uint64]*node, error) {
	if _, err := d.reachable(); err != nil {
		return nil, fmt.Errorf("powerfs: dropping unreachable inodes: %w", err)
	}
	nodes := map[uint64]*node{}
	var build func(ino uint64, parent *node) (*node, error)
	build = func(ino uint64, parent *node) (*node, error) {
		if n := nodes[ino]; n != nil {
			if n.isDir() {
				return nil, fmt.Errorf("powerfs: directory %d has two names", ino)
			}
			n.links++
			return n, nil
		}
		di := d.inodes[ino]
		n := &node{ino: ino, mode: di.mode, parent: parent}
		n.touch()
		nodes[ino] = n
		if !n.isDir() {
			size, err := fileSize(d.backingPath(ino))
			if err != nil {
				return nil, err
			}
			n.data = newFileData(d.backingPath(ino), size)
			n.links = 1
			return n, nil
		}
		n.entries = map[string]*node{}
		for name, c := range di.entries {
			child, err := build(c, n)
			if err != nil {
				return nil, err
			}
			n.entries[name] = child
		}
		return n, nil
	}
	root, err := build(rootIno, nil)
	if err != nil {
		return nil, err
	}
	root.parent = root
	return nodes, nil
}
