package powerfs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// File requests. Handles carry no state (Fh 0): every request names its
// inode, and the content is the inode's.

// file returns file id. Called with m.mu held.
func (m *Mount) file(id uint64) (*node, fuse.Status) {
	n := m.nodes[id]
	switch {
	case n == nil:
		return nil, fuse.ENOENT
	case n.isDir():
		return nil, fuse.Status(syscall.EISDIR)
	}
	return n, fuse.OK
}

// lookupFile is file under m.mu.
func (m *Mount) lookupFile(id uint64) (*node, fuse.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.file(id)
}

// openFlags checks an open's flags: O_DIRECT is refused unless
// Options.DirectIO (the kernel never passes O_CREAT, O_EXCL or O_TRUNC here).
func (m *Mount) openFlags(flags uint32, out *fuse.OpenOut) fuse.Status {
	if flags&uint32(syscall.O_DIRECT) != 0 && !m.opts.DirectIO {
		m.st.directRefused.Add(1)
		return fuse.EINVAL
	}
	// Every change goes through this mount: what the kernel has cached
	// stays valid across opens.
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (fs *rawFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	n, st := m.file(in.NodeId)
	if !st.Ok() {
		return st
	}
	if st := m.openFlags(in.Flags, out); !st.Ok() {
		return st
	}
	n.opens++
	return fuse.OK
}

func (fs *rawFS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	d, st := m.dirNode(in.NodeId)
	if !st.Ok() {
		return st
	}
	if st := m.openFlags(in.Flags, &out.OpenOut); !st.Ok() {
		return st
	}
	n := d.entries[name]
	switch {
	case n == nil:
		n = m.create(d, name, syscall.S_IFREG|in.Mode&0o7777)
	case in.Flags&uint32(syscall.O_EXCL) != 0:
		return fuse.Status(syscall.EEXIST)
	case n.isDir():
		return fuse.Status(syscall.EISDIR)
	}
	n.opens++
	m.entry(n, &out.EntryOut)
	return fuse.OK
}

func (fs *rawFS) Release(_ <-chan struct{}, in *fuse.ReleaseIn) {
	m := fs.m
	m.mu.Lock()
	defer m.mu.Unlock()
	n, st := m.file(in.NodeId)
	if !st.Ok() {
		return
	}
	if n.opens--; n.opens <= 0 {
		n.opens = 0
		n.mu.Lock()
		n.data.closeBacking()
		n.mu.Unlock()
	}
}

func (fs *rawFS) Flush(_ <-chan struct{}, _ *fuse.FlushIn) fuse.Status { return fuse.OK }

func (fs *rawFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	n, st := fs.m.lookupFile(in.NodeId)
	if !st.Ok() {
		return nil, st
	}
	buf = buf[:min(len(buf), int(in.Size))]
	n.mu.Lock()
	k, err := n.data.read(buf, int64(in.Offset))
	n.mu.Unlock()
	if err != nil {
		return nil, errno(err)
	}
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

func (fs *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	return fs.Writev(cancel, in, [][]byte{data})
}

// Writev stores the data in the daemon's memory: volatile until a sync.
// After the power cut writes are acknowledged and dropped.
func (fs *rawFS) Writev(_ <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	m := fs.m
	var total int
	for _, b := range data {
		total += len(b)
	}
	if m.cut.Load() {
		m.st.ignoredWrites.Add(1)
		return uint32(total), fuse.OK
	}
	n, st := m.lookupFile(in.NodeId)
	if !st.Ok() {
		return 0, st
	}
	m.st.writes.Add(1)
	m.st.writeBytes.Add(int64(total))
	n.mu.Lock()
	defer n.mu.Unlock()
	off := int64(in.Offset)
	for _, b := range data {
		if err := n.data.write(b, off); err != nil {
			return 0, errno(err)
		}
		off += int64(len(b))
	}
	n.touch()
	return uint32(total), fuse.OK
}

// Fsync (fsync, fdatasync, and msync after the kernel has written the
// mapping's dirty pages back) makes the file's content durable and commits
// the namespace operations that named it.
func (fs *rawFS) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	m := fs.m
	if m.cut.Load() {
		return fuse.EIO
	}
	n, st := m.lookupFile(in.NodeId)
	if !st.Ok() {
		return st
	}
	m.st.fsyncs.Add(1)
	n.mu.Lock()
	written, err := n.data.sync()
	n.mu.Unlock()
	m.st.syncedBytes.Add(written)
	if err != nil {
		return errno(err)
	}
	m.mu.Lock()
	m.commit(m.jr.forIno(n.ino))
	m.mu.Unlock()
	return fuse.OK
}

func (fs *rawFS) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	m := fs.m
	if m.opts.NoFallocate {
		m.st.fallocRefused.Add(1)
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	if m.cut.Load() {
		return fuse.OK
	}
	n, st := m.lookupFile(in.NodeId)
	if !st.Ok() {
		return st
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.data.fallocate(in.Mode, int64(in.Offset), int64(in.Length)); err != nil {
		return errno(err)
	}
	n.touch()
	return fuse.OK
}
