package powerfs

import (
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is an inode as the running mount sees it (its volatile state). Its
// FUSE node id is its inode number: numbers are never reused on a Disk, so
// the kernel can never confuse two inodes.
type node struct {
	ino  uint64
	mode uint32 // S_IFDIR or S_IFREG, and the permission bits

	// Guarded by Mount.mu.
	entries map[string]*node // a directory's entries
	parent  *node            // a directory's parent (the root's is itself)
	links   int              // names it has (files); 0 once unlinked
	opens   int              // open FUSE handles (files)

	// Guarded by mu.
	mu    sync.Mutex
	data  *fileData // a file's content
	mtime time.Time
	ctime time.Time
}

func (n *node) isDir() bool { return n.mode&syscall.S_IFMT == syscall.S_IFDIR }

// attr fills a with n's attributes. Directory attributes are read under
// Mount.mu, file attributes under n.mu: the caller holds the right one.
func (n *node) attr(a *fuse.Attr) {
	*a = fuse.Attr{Ino: n.ino, Mode: n.mode, Blksize: pageSize}
	if n.isDir() {
		a.Nlink = 2
		for _, c := range n.entries {
			if c.isDir() {
				a.Nlink++
			}
		}
		a.Size = pageSize
	} else {
		a.Nlink = uint32(n.links)
		a.Size = uint64(n.data.size)
		a.Blocks = (a.Size + 511) / 512
	}
	a.SetTimes(&n.mtime, &n.mtime, &n.ctime)
}

// touch records a change of n at now.
func (n *node) touch() {
	n.mtime = time.Now()
	n.ctime = n.mtime
}
