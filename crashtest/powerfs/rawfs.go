package powerfs

import (
	"maps"
	"slices"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS serves the FUSE protocol for a Mount: the namespace requests here,
// the file requests in rawfile.go. Requests go-fuse's default answers well
// (ENOSYS for xattrs, statx, lseek, locks) are left to it.
type rawFS struct {
	fuse.RawFileSystem
	m *Mount
}

// ttl is how long the kernel may cache entries and attributes. Every change
// goes through the kernel, so its caches stay right; the timeout only
// bounds how long a stale view could last if that were ever not so.
const ttl = time.Second

func (fs *rawFS) String() string { return "powerfs" }

func errno(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	return fuse.ToStatus(err)
}

// dirNode returns directory id. Called with m.mu held.
func (m *Mount) dirNode(id uint64) (*node, fuse.Status) {
	n := m.nodes[id]
	switch {
	case n == nil:
		return nil, fuse.ENOENT
	case !n.isDir():
		return nil, fuse.ENOTDIR
	}
	return n, fuse.OK
}

// entry fills out for n. Called with m.mu held.
func (m *Mount) entry(n *node, out *fuse.EntryOut) {
	out.NodeId = n.ino
	out.Generation = 1
	out.SetEntryTimeout(ttl)
	out.SetAttrTimeout(ttl)
	m.attr(n, &out.Attr)
}

// attr fills a for n. Called with m.mu held.
func (m *Mount) attr(n *node, a *fuse.Attr) {
	if n.data != nil {
		n.mu.Lock()
		defer n.mu.Unlock()
	}
	n.attr(a)
}

func (fs *rawFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	d, st := m.dirNode(h.NodeId)
	if !st.Ok() {
		return st
	}
	c := d.entries[name]
	if c == nil {
		return fuse.ENOENT
	}
	m.entry(c, out)
	return fuse.OK
}

// Forget: nodes stay until the power cut (a mount lives for one round).
func (fs *rawFS) Forget(nodeid, nlookup uint64) {}

func (fs *rawFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[in.NodeId]
	if n == nil {
		return fuse.ENOENT
	}
	m.attr(n, &out.Attr)
	out.SetTimeout(ttl)
	return fuse.OK
}

func (fs *rawFS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[in.NodeId]
	if n == nil {
		return fuse.ENOENT
	}
	if size, ok := in.GetSize(); ok {
		if n.isDir() {
			return fuse.Status(syscall.EISDIR)
		}
		if !m.cut.Load() {
			n.mu.Lock()
			err := n.data.truncate(int64(size))
			n.touch()
			n.mu.Unlock()
			if err != nil {
				return errno(err)
			}
		}
	}
	if mode, ok := in.GetMode(); ok {
		n.mode = n.mode&syscall.S_IFMT | mode&0o7777
	}
	m.attr(n, &out.Attr)
	out.SetTimeout(ttl)
	return fuse.OK
}

// create adds a new inode named name in d. Called with m.mu held.
func (m *Mount) create(d *node, name string, mode uint32) *node {
	n := &node{ino: m.disk.newIno(), mode: mode, parent: d}
	n.touch()
	if n.isDir() {
		n.entries = map[string]*node{}
	} else {
		n.data = newFileData(m.disk.backingPath(n.ino), 0)
		n.links = 1
	}
	m.nodes[n.ino] = n
	d.entries[name] = n
	d.touch()
	m.jr.add(&op{kind: opCreate, dir: d.ino, name: name, ino: n.ino, mode: mode})
	return n
}

func (fs *rawFS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	d, st := m.dirNode(in.NodeId)
	if !st.Ok() {
		return st
	}
	if d.entries[name] != nil {
		return fuse.Status(syscall.EEXIST)
	}
	m.entry(m.create(d, name, syscall.S_IFDIR|in.Mode&0o7777), out)
	return fuse.OK
}

// remove removes d's entry name (a directory if dir). Called with m.mu held.
func (m *Mount) remove(d *node, name string, dir bool) fuse.Status {
	c := d.entries[name]
	switch {
	case c == nil:
		return fuse.ENOENT
	case dir && !c.isDir():
		return fuse.ENOTDIR
	case !dir && c.isDir():
		return fuse.Status(syscall.EISDIR)
	case dir && len(c.entries) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	delete(d.entries, name)
	d.touch()
	if !dir {
		c.links--
	}
	m.jr.add(&op{kind: opRemove, dir: d.ino, name: name, ino: c.ino})
	return fuse.OK
}

func (fs *rawFS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	d, st := m.dirNode(h.NodeId)
	if !st.Ok() {
		return st
	}
	return m.remove(d, name, false)
}

func (fs *rawFS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	d, st := m.dirNode(h.NodeId)
	if !st.Ok() {
		return st
	}
	return m.remove(d, name, true)
}

// renameNoReplace and renameExchange are renameat2(2) flags.
const (
	renameNoReplace = 1
	renameExchange  = 2
)

func (fs *rawFS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if in.Flags&^renameNoReplace != 0 {
		return fuse.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT: not supported
	}
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	from, st := m.dirNode(in.NodeId)
	if !st.Ok() {
		return st
	}
	to, st := m.dirNode(in.Newdir)
	if !st.Ok() {
		return st
	}
	c := from.entries[oldName]
	if c == nil {
		return fuse.ENOENT
	}
	old := to.entries[newName]
	if old == c {
		return fuse.OK
	}
	if old != nil {
		switch {
		case in.Flags&renameNoReplace != 0:
			return fuse.Status(syscall.EEXIST)
		case c.isDir() && !old.isDir():
			return fuse.ENOTDIR
		case !c.isDir() && old.isDir():
			return fuse.Status(syscall.EISDIR)
		case old.isDir() && len(old.entries) > 0:
			return fuse.Status(syscall.ENOTEMPTY)
		}
	}
	if c.isDir() {
		for p := to; ; p = p.parent {
			if p == c {
				return fuse.EINVAL // into its own subtree
			}
			if p.parent == p {
				break
			}
		}
		c.parent = to
	}
	o := &op{kind: opRename, dir: from.ino, name: oldName, toDir: to.ino, toName: newName, ino: c.ino}
	if old != nil {
		o.replaced = old.ino
		if !old.isDir() {
			old.links--
		}
	}
	delete(from.entries, oldName)
	to.entries[newName] = c
	from.touch()
	to.touch()
	m.jr.add(o)
	return fuse.OK
}

// No hard links, symbolic links or device nodes: durastream makes none.
func (fs *rawFS) Link(_ <-chan struct{}, _ *fuse.LinkIn, _ string, _ *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (fs *rawFS) Symlink(_ <-chan struct{}, _ *fuse.InHeader, _, _ string, _ *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (fs *rawFS) Mknod(_ <-chan struct{}, _ *fuse.MknodIn, _ string, _ *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (fs *rawFS) Access(_ <-chan struct{}, _ *fuse.AccessIn) fuse.Status { return fuse.OK }

func (fs *rawFS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	d, st := m.dirNode(in.NodeId)
	if !st.Ok() {
		return st
	}
	names := slices.Sorted(maps.Keys(d.entries))
	list := make([]fuse.DirEntry, 0, len(names))
	for _, name := range names {
		c := d.entries[name]
		list = append(list, fuse.DirEntry{Name: name, Ino: c.ino, Mode: c.mode})
	}
	m.nextFh++
	m.dirHandles[m.nextFh] = list
	out.Fh = m.nextFh
	return fuse.OK
}

// ReadDir lists the entries as they were at OpenDir; entry i has offset i+1.
func (fs *rawFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	list, ok := m.dirHandles[in.Fh]
	if !ok {
		return fuse.EBADF
	}
	for i := in.Offset; i < uint64(len(list)); i++ {
		e := list[i]
		e.Off = i + 1
		if !out.AddDirEntry(e) {
			break
		}
	}
	return fuse.OK
}

func (fs *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.dirHandles, in.Fh)
}

// FsyncDir commits the namespace operations on the directory's entries.
func (fs *rawFS) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	m := fs.m
	if m.cut.Load() {
		return fuse.EIO
	}
	m.st.dirSyncs.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, st := m.dirNode(in.NodeId); !st.Ok() {
		return st
	}
	m.commit(m.jr.forDir(in.NodeId))
	return fuse.OK
}

// commit makes seeds and what they depend on durable (every pending op in
// JournalGlobal mode). Called with m.mu held.
func (m *Mount) commit(seeds []*op) {
	if m.opts.Journal == JournalGlobal {
		seeds = m.jr.all()
	}
	ops := m.jr.take(seeds)
	if len(ops) == 0 {
		return
	}
	m.disk.apply(ops)
	m.st.committedOps.Add(int64(len(ops)))
}

func (fs *rawFS) StatFs(_ <-chan struct{}, _ *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	*out = fuse.StatfsOut{Blocks: 1 << 30, Bfree: 1 << 29, Bavail: 1 << 29, Files: 1 << 24, Ffree: 1 << 23,
		Bsize: pageSize, Frsize: pageSize, NameLen: 255}
	return fuse.OK
}
