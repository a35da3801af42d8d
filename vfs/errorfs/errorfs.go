// Package errorfs wraps a vfs.FS and fails chosen operations on chosen
// paths with chosen errors (ENOSPC, EIO, ...), in the spirit of Pebble's
// errorfs: fault injection for tests of disk-full and sync-failure handling.
package errorfs

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/durastream/durastream/vfs"
)

// Op names an operation of vfs.FS.
type Op string

const (
	Fallocate Op = "fallocate"
	Msync     Op = "msync"
	Write     Op = "write"
	Fsync     Op = "fsync"
	Fdatasync Op = "fdatasync"
	Rename    Op = "rename"
)

// Rule fails Op on paths containing PathContains ("" matches all) with Err.
// Times > 0 limits how often it fires; 0 means until removed.
type Rule struct {
	Op           Op
	PathContains string
	Err          error
	Times        int
}

// FS injects errors into an inner vfs.FS.
type FS struct {
	inner vfs.FS
	mu    sync.Mutex
	rules []*rule
	hits  atomic.Int64
}

type rule struct {
	Rule
	left int
}

// New wraps inner (nil: the real file system).
func New(inner vfs.FS) *FS { return &FS{inner: vfs.Or(inner)} }

// Inject adds a rule.
func (f *FS) Inject(r Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &rule{Rule: r, left: r.Times})
}

// Clear removes every rule: the "disk" works again.
func (f *FS) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Hits reports how many operations were failed so far.
func (f *FS) Hits() int64 { return f.hits.Load() }

func (f *FS) check(op Op, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if r.Op != op || !strings.Contains(path, r.PathContains) {
			continue
		}
		if r.Times > 0 {
			r.left--
			if r.left == 0 {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
			}
		}
		f.hits.Add(1)
		return &os.PathError{Op: string(op), Path: path, Err: r.Err}
	}
	return nil
}

func (f *FS) Fallocate(file *os.File, size int64) error {
	if err := f.check(Fallocate, file.Name()); err != nil {
		return err
	}
	return f.inner.Fallocate(file, size)
}

func (f *FS) Msync(path string, b []byte) error {
	if err := f.check(Msync, path); err != nil {
		return err
	}
	return f.inner.Msync(path, b)
}

func (f *FS) WriteAt(file *os.File, b []byte, off int64) (int, error) {
	if err := f.check(Write, file.Name()); err != nil {
		return 0, err
	}
	return f.inner.WriteAt(file, b, off)
}

func (f *FS) Fsync(file *os.File) error {
	if err := f.check(Fsync, file.Name()); err != nil {
		return err
	}
	return f.inner.Fsync(file)
}

func (f *FS) Fdatasync(file *os.File) error {
	if err := f.check(Fdatasync, file.Name()); err != nil {
		return err
	}
	return f.inner.Fdatasync(file)
}

func (f *FS) Rename(from, to string) error {
	if err := f.check(Rename, from); err != nil {
		return err
	}
	return f.inner.Rename(from, to)
}
