package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// runMachine measures what the disk and memory of this machine can do, in
// the directory the servers keep their data in:
//   - 4 KiB appended to a file, then fdatasync: latency (what one commit
//     costs at best); also the same overwriting a written file in place;
//   - 1 MiB appended, then fdatasync, repeated over MachineMiB: MB/s (the
//     bound for durable large appends); and the same writes with one
//     fdatasync at the end;
//   - copy between two 64 MiB buffers: GB/s.
func runMachine(r *runner) error {
	dir := r.cfg.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	d, err := os.MkdirTemp(dir, "durastream-machine-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(d)
	m := &MachineStats{Dir: dir, CPUs: runtime.NumCPU()}
	m.CPUModel, m.MemGiB, m.Kernel = machineInfo()
	r.startTimed()

	lat, err := syncLatency(filepath.Join(d, "append"), false, r.cfg.MachineSyncs, 3*time.Second)
	if err != nil {
		return err
	}
	m.Fsync4KN = len(lat)
	m.Fsync4KP50Ms = round3(pct(lat, 50).Seconds() * 1000)
	m.Fsync4KP99Ms = round3(pct(lat, 99).Seconds() * 1000)
	over, err := syncLatency(filepath.Join(d, "overwrite"), true, r.cfg.MachineSyncs, 3*time.Second)
	if err != nil {
		return err
	}
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("4 KiB overwrite-in-place + fdatasync (the commit log's path: pwrite into zero-filled blocks): p50 %.3f ms p99 %.3f ms",
		pct(over, 50).Seconds()*1000, pct(over, 99).Seconds()*1000))
	// A fallocated, memory-mapped file, written by copying and made durable
	// with msync: small appends' path to their segments (the commit log
	// used it too before it moved to pwrite into zero-filled blocks).
	mm, err := mmapSyncLatency(filepath.Join(d, "mmap"), r.cfg.MachineSyncs, 3*time.Second)
	if err != nil {
		return err
	}
	m.MmapSync4KP50Ms = round3(pct(mm, 50).Seconds() * 1000)
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("4 KiB copied into a fallocated mmap + msync(MS_SYNC): p50 %.3f ms p99 %.3f ms",
		pct(mm, 50).Seconds()*1000, pct(mm, 99).Seconds()*1000))

	mib := r.cfg.MachineMiB
	m.SeqWriteMiB = mib
	if m.SeqWriteMBs, err = seqWrite(filepath.Join(d, "seq"), mib, true); err != nil {
		return err
	}
	if m.SeqWriteNoSyncMB, err = seqWrite(filepath.Join(d, "seq-nosync"), mib, false); err != nil {
		return err
	}
	if m.MmapWriteMBs, err = mmapSeqWrite(filepath.Join(d, "mmap-seq"), mib); err != nil {
		return err
	}
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("1 MiB copied into a fallocated mmap + msync(MS_SYNC), sequential: %.0f MB/s", m.MmapWriteMBs))
	m.MemcpyGBs = memcpyRate(64<<20, 500*time.Millisecond)
	r.res.Machine = m
	r.endTimed(newTally(), "")
	return nil
}

// syncLatency writes 4 KiB and fdatasyncs, n times or for at most limit.
// overwrite: into the same already-written block; else appended.
func syncLatency(path string, overwrite bool, n int, limit time.Duration) ([]time.Duration, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	block := bytes.Repeat([]byte{'x'}, 4096)
	if overwrite {
		if _, err := f.WriteAt(block, 0); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
	}
	fd := int(f.Fd())
	out := make([]time.Duration, 0, n)
	deadline := time.Now().Add(limit)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		off := int64(i) * 4096
		if overwrite {
			off = 0
		}
		t := time.Now()
		if _, err := f.WriteAt(block, off); err != nil {
			return nil, err
		}
		if err := unix.Fdatasync(fd); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t))
	}
	return out, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// seqWrite appends mib MiB to a new file in 1 MiB writes, each followed by
// fdatasync (or one at the end), and returns MB/s.
func seqWrite(path string, mib int, syncEach bool) (float64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := payload(1 << 20)
	fd := int(f.Fd())
	t := time.Now()
	for i := 0; i < mib; i++ {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if syncEach {
			if err := unix.Fdatasync(fd); err != nil {
				return 0, err
			}
		}
	}
	if err := unix.Fdatasync(fd); err != nil {
		return 0, err
	}
	return round3(float64(mib<<20) / time.Since(t).Seconds() / 1e6), nil
}

// memcpyRate copies between two size-byte buffers for about d; GB/s.
func memcpyRate(size int, d time.Duration) float64 {
	src, dst := make([]byte, size), make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // fault the pages in
	var n int64
	t := time.Now()
	for time.Since(t) < d {
		copy(dst, src)
		n += int64(size)
	}
	return round3(float64(n) / time.Since(t).Seconds() / 1e9)
}

func machineInfo() (model string, memGiB float64, kernel string) {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
				memGiB = round3(kb / (1 << 20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return
}

// mapFallocated creates path with size bytes fallocated (not written) and
// maps it shared, read-write: how the engine lays out its files.
func mapFallocated(path string, size int) ([]byte, func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		return nil, nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, nil, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { unix.Munmap(b); os.Remove(path) }, nil
}

// msyncRange msyncs the pages holding b[lo:hi].
func msyncRange(b []byte, lo, hi int) error {
	page := os.Getpagesize()
	lo = lo / page * page
	return unix.Msync(b[lo:hi], unix.MS_SYNC)
}

// mmapSyncLatency: 4 KiB copied at increasing offsets into a fallocated
// mapping, each followed by msync of its pages.
func mmapSyncLatency(path string, n int, limit time.Duration) ([]time.Duration, error) {
	size := n * 4096
	b, done, err := mapFallocated(path, size)
	if err != nil {
		return nil, err
	}
	defer done()
	block := bytes.Repeat([]byte{'m'}, 4096)
	out := make([]time.Duration, 0, n)
	deadline := time.Now().Add(limit)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		t := time.Now()
		copy(b[i*4096:], block)
		if err := msyncRange(b, i*4096, (i+1)*4096); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t))
	}
	return out, nil
}

// mmapSeqWrite: mib MiB copied 1 MiB at a time into a fallocated mapping,
// each followed by msync; MB/s.
func mmapSeqWrite(path string, mib int) (float64, error) {
	b, done, err := mapFallocated(path, mib<<20)
	if err != nil {
		return 0, err
	}
	defer done()
	buf := payload(1 << 20)
	t := time.Now()
	for i := 0; i < mib; i++ {
		copy(b[i<<20:], buf)
		if err := msyncRange(b, i<<20, (i+1)<<20); err != nil {
			return 0, err
		}
	}
	return round3(float64(mib<<20) / time.Since(t).Seconds() / 1e6), nil
}
