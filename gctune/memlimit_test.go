package gctune

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMachineMemory(t *testing.T) {
	const meminfo = "MemTotal:       24683568 kB\nMemFree:  100 kB\n"
	const memTotal = 24683568 << 10
	cases := []struct {
		name   string
		cgroup string            // /proc/self/cgroup
		files  map[string]string // under the cgroup root
		want   int64
		source string
	}{
		{"no cgroup limit", "0::/\n", map[string]string{"memory.max": "max\n"}, memTotal, "MemTotal"},
		{"v2 limit on own cgroup", "0::/app/svc\n",
			map[string]string{"app/svc/memory.max": "1073741824\n", "app/memory.max": "max\n"}, 1 << 30, "cgroup ROOT/app/svc/memory.max"},
		{"v2 limit on an ancestor", "0::/app/svc\n",
			map[string]string{"app/svc/memory.max": "max\n", "app/memory.max": "536870912\n"}, 512 << 20, "cgroup ROOT/app/memory.max"},
		{"v2 namespaced container", "0::/\n", map[string]string{"memory.max": "268435456\n"}, 256 << 20, "cgroup ROOT/memory.max"},
		{"v1 unlimited", "4:memory:/process_api/c14\n3:cpuset:/\n",
			map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, memTotal, "MemTotal"},
		{"v1 limit", "4:cpuacct,memory:/a\n",
			map[string]string{"memory/a/memory.limit_in_bytes": "2147483648\n"}, 2 << 30, "cgroup ROOT/memory/a/memory.limit_in_bytes"},
		{"cgroup above MemTotal", "0::/x\n", map[string]string{"x/memory.max": "107374182400\n"}, memTotal, "MemTotal"},
		{"garbage", "0::/x\n", map[string]string{"x/memory.max": "lots\n"}, memTotal, "MemTotal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			root := filepath.Join(dir, "cg")
			write(t, filepath.Join(dir, "cgroup"), c.cgroup)
			write(t, filepath.Join(dir, "meminfo"), meminfo)
			for p, v := range c.files {
				write(t, filepath.Join(root, p), v)
			}
			got := machineMemory(filepath.Join(dir, "cgroup"), root, filepath.Join(dir, "meminfo"))
			src := c.source
			if len(src) > 7 && src[:7] == "cgroup " {
				src = "cgroup " + filepath.Join(root, src[len("cgroup ROOT/"):])
			}
			if got.Bytes != c.want || got.Source != src {
				t.Errorf("got %d from %q, want %d from %q", got.Bytes, got.Source, c.want, src)
			}
		})
	}
	if m := machineMemory("/nonexistent", "/nonexistent", "/nonexistent"); m.Bytes != 0 || m.Source != "" {
		t.Errorf("nothing readable: got %+v", m)
	}
}

func TestDefaultMemoryLimitOnThisMachine(t *testing.T) {
	m := DefaultMemoryLimit()
	t.Logf("default memory limit %d MiB (from %s)", m.Bytes>>20, m.Source)
	if _, err := os.Stat("/proc/meminfo"); err == nil && m.Bytes <= 0 {
		t.Errorf("no default memory limit on a machine with /proc/meminfo: %+v", m)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
