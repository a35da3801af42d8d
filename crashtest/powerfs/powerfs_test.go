package powerfs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mounted mounts a new Disk for a test (skipping where FUSE is unavailable)
// and returns a function that cuts the power and mounts it again.
func mounted(t *testing.T, opts Options) (dir string, m *Mount, cycle func() Stats) {
	t.Helper()
	if why := Available(); why != "" {
		t.Skip("powerfs: " + why)
	}
	disk, err := NewDisk(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	m, err = disk.Mount(dir)
	if err != nil {
		t.Skipf("powerfs: cannot mount FUSE here: %v", err)
	}
	t.Cleanup(func() { m.PowerCut() })
	cycle = func() Stats {
		t.Helper()
		st, err := m.PowerCut()
		if err != nil {
			t.Fatal(err)
		}
		if m, err = disk.Mount(dir); err != nil {
			t.Fatal(err)
		}
		return st
	}
	return dir, m, cycle
}

func writeFile(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func fsyncPath(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestSyncedSurvivesUnsyncedDoesNot(t *testing.T) {
	dir, _, cycle := mounted(t, Options{})
	writeFile(t, filepath.Join(dir, "synced"), []byte("durable"), true)
	writeFile(t, filepath.Join(dir, "unsynced"), []byte("volatile"), false)
	fsyncPath(t, dir) // both names durable; only one content
	// Written after the sync: lost, even after syncfs (not forwarded to FUSE).
	f, err := os.OpenFile(filepath.Join(dir, "synced"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" and more")
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeFile(t, filepath.Join(dir, "never"), []byte("x"), false)
	if got := readOr(filepath.Join(dir, "synced")); got != "durable and more" {
		t.Fatalf("before the cut: %q", got)
	}
	st := cycle()
	if got := readOr(filepath.Join(dir, "synced")); got != "durable" {
		t.Errorf("synced file after the cut: %q, want %q", got, "durable")
	}
	if got := readOr(filepath.Join(dir, "unsynced")); got != "" {
		t.Errorf("unsynced file (its name synced) after the cut: %q, want empty", got)
	}
	if got := readOr(filepath.Join(dir, "never")); got != "<missing>" {
		t.Errorf("never synced file after the cut: %q, want missing", got)
	}
	if st.DroppedFiles < 2 || st.DroppedOps < 1 {
		t.Errorf("cut stats %+v: want at least 2 dropped files and 1 dropped op", st)
	}
}

// mmapChildEnv names the file TestMmapChild maps: the mapping is made in a
// child process. A page fault on a FUSE mapping blocks its thread without
// the Go scheduler knowing, so in the daemon's own process a stop-the-world
// (GC) can wait for the faulting goroutine while the fault waits for the
// daemon: a deadlock. (The torture's server is a process of its own.)
const mmapChildEnv = "POWERFS_MMAP_CHILD"

// TestMmapChild is TestMmapMsync's child: it writes a page through a
// shared mapping and msyncs it, then dirties another page and exits.
func TestMmapChild(t *testing.T) {
	path := os.Getenv(mmapChildEnv)
	if path == "" {
		t.Skip("run by TestMmapMsync")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 4*pageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, 4*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // the mapping keeps the file open, as the engine's do
	copy(b[10:], "synced page")
	if err := unix.Msync(b[:pageSize], unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	copy(b[2*pageSize:], "dirty page") // never msynced
	// Exit with the page dirty: the kernel writes it back at some point.
}

func TestMmapMsync(t *testing.T) {
	dir, m, cycle := mounted(t, Options{})
	path := filepath.Join(dir, "m")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMmapChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), mmapChildEnv+"="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Contains(got, []byte("dirty page")) {
		t.Fatal("the unsynced mapped write is not visible before the cut")
	}
	if st := m.Stats(); st.Fsyncs < 2 || st.Writes < 1 {
		t.Errorf("stats %+v: want the msync's WRITE and FSYNC", st)
	}
	cycle()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4*pageSize {
		t.Fatalf("size %d after the cut, want %d", len(got), 4*pageSize)
	}
	if !bytes.Equal(got[10:21], []byte("synced page")) {
		t.Errorf("msynced bytes lost: %q", got[10:21])
	}
	if bytes.Contains(got, []byte("dirty page")) {
		t.Errorf("bytes never msynced survived the cut")
	}
}

func TestRenameNeedsDirSync(t *testing.T) {
	dir, _, cycle := mounted(t, Options{})
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a+".tmp", []byte("A"), true) // name committed with the file
	if err := os.Rename(a+".tmp", a); err != nil {
		t.Fatal(err)
	}
	writeFile(t, b+".tmp", []byte("B"), true)
	if err := os.Rename(b+".tmp", b); err != nil {
		t.Fatal(err)
	}
	fsyncPath(t, b) // a file's sync commits its rename (old and new name together)
	cycle()
	if got := names(t, dir); !slices.Equal(got, []string{"a.tmp", "b"}) {
		t.Fatalf("after the cut: %v, want [a.tmp b]", got)
	}
	if err := os.Rename(a+".tmp", a); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	fsyncPath(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub", "c"), []byte("C"), true) // commits sub's mkdir too
	cycle()
	if got := names(t, dir); !slices.Equal(got, []string{"a", "sub"}) {
		t.Fatalf("after the second cut: %v, want [a sub]", got)
	}
	if got := readOr(filepath.Join(dir, "sub", "c")); got != "C" {
		t.Errorf("sub/c: %q", got)
	}
}

func TestJournalGlobal(t *testing.T) {
	dir, _, cycle := mounted(t, Options{Journal: JournalGlobal})
	writeFile(t, filepath.Join(dir, "x"), []byte("X"), false)
	writeFile(t, filepath.Join(dir, "y"), []byte("Y"), true) // commits x's name too
	cycle()
	if got := names(t, dir); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("after the cut: %v, want [x y]", got)
	}
	if got := readOr(filepath.Join(dir, "x")); got != "" {
		t.Errorf("x: %q, want empty (its data was never synced)", got)
	}
}

func TestTruncateAndExtend(t *testing.T) {
	dir, _, cycle := mounted(t, Options{})
	path := filepath.Join(dir, "t")
	writeFile(t, path, bytes.Repeat([]byte("a"), 3*pageSize), true)
	fsyncPath(t, dir)
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 2*pageSize); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat([]byte("a"), 100), make([]byte, 2*pageSize-100)...)
	if got := readOr(path); got != string(want) {
		t.Fatal("truncate then extend: wrong bytes before the cut")
	}
	fsyncPath(t, path)
	cycle()
	if got := readOr(path); got != string(want) {
		t.Fatal("truncate then extend: wrong bytes after the cut")
	}
}

func TestRefusals(t *testing.T) {
	dir, m, _ := mounted(t, Options{NoFallocate: true})
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 1<<20); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("fallocate with NoFallocate: %v, want EOPNOTSUPP", err)
	}
	if _, err := os.OpenFile(filepath.Join(dir, "f"), os.O_WRONLY|syscall.O_DIRECT, 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("O_DIRECT open: %v, want EINVAL", err)
	}
	if st := m.Stats(); st.FallocRefused != 1 || st.DirectRefused != 1 {
		t.Errorf("stats %+v: want one refused fallocate and one refused O_DIRECT", st)
	}
}

func TestWritesAfterCutIgnored(t *testing.T) {
	dir, m, _ := mounted(t, Options{})
	path := filepath.Join(dir, "w")
	writeFile(t, path, []byte("before"), true)
	fsyncPath(t, dir)
	m.cut.Store(true) // as PowerCut does first
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("AFTER!"), 0)
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync after the cut: %v, want EIO", err)
	}
	f.Close()
	m.cut.Store(false)
	if got := readOr(path); got != "before" {
		t.Errorf("a write after the cut changed the file: %q", got)
	}
}
