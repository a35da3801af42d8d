package powerfs

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Available says why FUSE mounts cannot work here ("" if they may): they
// need /dev/fuse and root (mount(2) is called directly).
func Available() string {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Sprintf("no /dev/fuse (%v)", err)
	}
	if os.Geteuid() != 0 {
		return "not root: mounting without fusermount needs mount(2)"
	}
	return ""
}

// Mount is one power-on of a Disk: a FUSE mount of its durable state, plus
// everything written since, which lives in this process until synced.
type Mount struct {
	disk *Disk
	opts Options // the Disk's options when it was mounted
	dir  string
	srv  *fuse.Server
	cut  atomic.Bool

	mu         sync.Mutex
	nodes      map[uint64]*node
	jr         *journal
	dirHandles map[uint64][]fuse.DirEntry
	nextFh     uint64

	st counters
}

// counters are the mount's statistics (see Stats).
type counters struct {
	writes, writeBytes, ignoredWrites atomic.Int64
	fsyncs, dirSyncs, syncedBytes     atomic.Int64
	committedOps                      atomic.Int64
	fallocRefused, directRefused      atomic.Int64
}

// Stats are what a mount did, and what its power cut dropped.
type Stats struct {
	Writes, WriteBytes int64 // WRITE requests and their bytes (write(2) and written-back mapped pages)
	Fsyncs, DirSyncs   int64 // FSYNC (fsync, fdatasync, msync) and FSYNCDIR requests
	SyncedBytes        int64 // bytes written to backing files by syncs
	CommittedOps       int64 // namespace operations made durable
	FallocRefused      int64 // fallocate calls refused (Options.NoFallocate)
	DirectRefused      int64 // O_DIRECT opens refused
	// Set by PowerCut: what was lost.
	DroppedFiles  int   // files with unsynced content
	DroppedBytes  int64 // their dirty overlay pages, in bytes (a page each)
	DroppedOps    int   // namespace operations never committed
	IgnoredWrites int64 // WRITE requests that arrived after the cut
}

// Mount mounts the Disk's durable state at dir (an existing, empty
// directory). One mount at a time.
func (d *Disk) Mount(dir string) (*Mount, error) {
	d.mu.Lock()
	if d.mounted {
		d.mu.Unlock()
		return nil, errors.New("powerfs: already mounted")
	}
	nodes, err := d.tree()
	if err == nil {
		d.mounted = true
	}
	o := d.opts
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	m := &Mount{disk: d, opts: o, dir: dir, nodes: nodes, jr: newJournal(), dirHandles: map[uint64][]fuse.DirEntry{}}
	opts := &fuse.MountOptions{
		FsName:            "powerfs",
		Name:              "powerfs",
		DirectMountStrict: true, // no fusermount here: mount(2) as root
		MaxWrite:          1 << 20,
		MaxBackground:     64,
		// Everything reaches the file through this mount, so the kernel's
		// page cache never goes stale: keep it (no invalidation on attribute
		// changes or opens).
		ExplicitDataCacheControl: true,
		DisableReadDirPlus:       true,
		DisableXAttrs:            true,
		Debug:                    o.Debug,
	}
	if !o.Debug {
		// go-fuse logs the aborted reads of an unmount (a power cut) and
		// replies to requests the kernel gave up on: expected here.
		opts.Logger = log.New(io.Discard, "", 0)
	}
	srv, err := fuse.NewServer(&rawFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), m: m}, dir, opts)
	if err != nil {
		d.mu.Lock()
		d.mounted = false
		d.mu.Unlock()
		return nil, fmt.Errorf("powerfs: mount %s: %w", dir, err)
	}
	m.srv = srv
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		m.PowerCut()
		return nil, fmt.Errorf("powerfs: mount %s: %w", dir, err)
	}
	return m, nil
}

// Dir is the mount point.
func (m *Mount) Dir() string { return m.dir }

// Stats returns the mount's counters so far.
func (m *Mount) Stats() Stats {
	return Stats{
		Writes: m.st.writes.Load(), WriteBytes: m.st.writeBytes.Load(),
		Fsyncs: m.st.fsyncs.Load(), DirSyncs: m.st.dirSyncs.Load(), SyncedBytes: m.st.syncedBytes.Load(),
		CommittedOps: m.st.committedOps.Load(), FallocRefused: m.st.fallocRefused.Load(),
		DirectRefused: m.st.directRefused.Load(), IgnoredWrites: m.st.ignoredWrites.Load(),
	}
}

// PowerCut cuts the power: from now on writes are ignored and syncs fail,
// what was not synced is dropped, and the file system is unmounted (the
// kernel's dirty pages it flushes meanwhile are ignored too). Mount the Disk
// again to power it back on. The processes using the mount should be dead
// (SIGKILL): unmounting waits up to a few seconds for their files to close,
// then detaches the mount lazily.
func (m *Mount) PowerCut() (Stats, error) {
	if !m.cut.CompareAndSwap(false, true) {
		return m.Stats(), errors.New("powerfs: power already cut")
	}
	st := Stats{}
	m.mu.Lock()
	st.DroppedOps = len(m.jr.pending)
	for _, n := range m.nodes {
		if n.data == nil {
			continue
		}
		n.mu.Lock()
		if n.data.dirty() {
			st.DroppedFiles++
			st.DroppedBytes += int64(len(n.data.pages)) * pageSize
		}
		n.mu.Unlock()
	}
	m.mu.Unlock()

	err := m.unmount()

	m.mu.Lock()
	for _, n := range m.nodes {
		if n.data != nil {
			n.mu.Lock()
			n.data.closeBacking()
			n.mu.Unlock()
		}
	}
	m.nodes = nil
	m.mu.Unlock()
	m.disk.mu.Lock()
	m.disk.mounted = false
	m.disk.mu.Unlock()

	s := m.Stats()
	s.DroppedFiles, s.DroppedBytes, s.DroppedOps = st.DroppedFiles, st.DroppedBytes, st.DroppedOps
	return s, err
}

// unmount unmounts the file system, retrying while the kernel still holds
// files of it open (a killed process's last references go asynchronously),
// then detaching it; and waits for the FUSE server to stop.
func (m *Mount) unmount() error {
	if m.srv == nil {
		return nil
	}
	var err error
	delay := time.Millisecond
	for deadline := time.Now().Add(5 * time.Second); ; {
		err = syscall.Unmount(m.dir, 0)
		if err == nil || err == syscall.EINVAL || time.Now().After(deadline) {
			break
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
	if err != nil && err != syscall.EINVAL {
		if err2 := syscall.Unmount(m.dir, syscall.MNT_DETACH); err2 != nil {
			return fmt.Errorf("powerfs: unmount %s: %v; detach: %w", m.dir, err, err2)
		}
		err = fmt.Errorf("powerfs: unmount %s: %w (detached instead)", m.dir, err)
	} else {
		err = nil
	}
	done := make(chan struct{})
	go func() { m.srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		err = errors.Join(err, fmt.Errorf("powerfs: the FUSE server of %s did not stop 10s after the unmount", m.dir))
	}
	return err
}
