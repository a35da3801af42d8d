package gctune

// The default soft memory limit. Without one, the Go runtime lets the heap
// double between collections and returns freed memory to the operating
// system only slowly, so a burst of large requests leaves the process at
// its peak. With a limit the collector works harder as the heap nears it
// and hands memory back, so a burst costs memory only while it lasts.

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// unlimited is the least value a cgroup reports for "no limit" that is
// taken as one (v1 reports 2^63 rounded down to a page; v2 says "max").
const unlimited = 1 << 62

// Memory is what the process may use and where that figure came from.
type Memory struct {
	Bytes  int64  // 0: unknown
	Source string // "cgroup <file>", "MemTotal" or "" when unknown
}

// MachineMemory returns the memory available to this process: the least
// cgroup memory limit on its cgroup's path (v2 memory.max, v1
// memory.limit_in_bytes, the process's cgroup and every ancestor) and the
// machine's MemTotal, whichever is smaller.
func MachineMemory() Memory {
	return machineMemory("/proc/self/cgroup", "/sys/fs/cgroup", "/proc/meminfo")
}

// DefaultMemoryLimit is the soft memory limit for a process given none:
// three quarters of MachineMemory (the rest is for the page cache, file
// mappings and memory the Go runtime does not count), or 0 when that is
// unknown.
func DefaultMemoryLimit() Memory {
	m := MachineMemory()
	m.Bytes = m.Bytes / 4 * 3
	return m
}

func machineMemory(cgroupFile, cgroupRoot, meminfo string) Memory {
	var best Memory
	if n, ok := memTotal(meminfo); ok {
		best = Memory{n, "MemTotal"}
	}
	for _, c := range cgroupLimits(cgroupFile, cgroupRoot) {
		if best.Bytes == 0 || c.Bytes < best.Bytes {
			best = c
		}
	}
	return best
}

// memTotal reads MemTotal from /proc/meminfo.
func memTotal(path string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || kb <= 0 {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// cgroupLimits returns the memory limits set on the process's cgroup and
// its ancestors, v2 and v1. In a container with its own cgroup namespace
// the process's path is "/" and the limit is on the mount root.
func cgroupLimits(cgroupFile, root string) []Memory {
	data, err := os.ReadFile(cgroupFile)
	if err != nil {
		return nil
	}
	var out []Memory
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(string(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir, file string
		switch {
		case parts[0] == "0" && parts[1] == "": // v2
			dir, file = root, "memory.max"
		case hasController(parts[1], "memory"): // v1
			dir, file = filepath.Join(root, "memory"), "memory.limit_in_bytes"
		default:
			continue
		}
		for p := filepath.Clean("/" + parts[2]); ; p = filepath.Dir(p) {
			f := filepath.Join(dir, p, file)
			if n, ok := readLimit(f); ok {
				out = append(out, Memory{n, "cgroup " + f})
			}
			if p == "/" {
				break
			}
		}
	}
	return out
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads a cgroup memory limit file; "max" and huge values are no
// limit.
func readLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= unlimited {
		return 0, false
	}
	return n, true
}
