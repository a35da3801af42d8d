package engine

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/durastream/durastream/vfs"
)

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

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[:i]
		}
	}
	return "."
}
