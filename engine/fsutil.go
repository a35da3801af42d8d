package engine

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/durastream/durastream/vfs"
)

var errNoSpace = syscall.ENOSPC

// classifyIOErr wraps a disk-full error with ErrNoSpace so callers and the
// server can tell it from other failures.
func classifyIOErr(err error) error {
	if err != nil && errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// syncDir fsyncs a directory so that entries created or renamed in it are durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fs.Fsync(d)
}

// writeFileAtomic writes data to path via a temporary file, fsync and rename,
// then fsyncs the directory.
func writeFileAtomic(fs vfs.FS, path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := fs.WriteAt(f, data, 0); err != nil {
		f.Close()
		return classifyIOErr(err)
	}
	if err := fs.Fsync(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		return classifyIOErr(err)
	}
	return syncDir(fs, dirOf(path))
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[:i]
		}
	}
	return "."
}
