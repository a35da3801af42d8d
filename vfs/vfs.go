// Package vfs is the seam between durastream's storage layers and the file
// system: the operations that can fail in ways the engine must handle
// (a full disk, a failed sync) go through an FS, so that tests can inject
// those failures (see vfs/errorfs). Reads, listing and opening go straight
// to the os package.
package vfs

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FS performs the fallible storage operations.
type FS interface {
	// Fallocate reserves [0, size) of f.
	Fallocate(f *os.File, size int64) error
	// Msync makes a memory-mapped range of the file at path durable.
	Msync(path string, b []byte) error
	// WriteAt writes b to f at off.
	WriteAt(f *os.File, b []byte, off int64) (int, error)
	// Fsync makes f (a file or a directory) durable.
	Fsync(f *os.File) error
	// Fdatasync makes f's data durable (and the metadata needed to read
	// it back, such as its size).
	Fdatasync(f *os.File) error
	// Rename renames a file.
	Rename(from, to string) error
}

// OS is the real file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) Fallocate(f *os.File, size int64) error { return unix.Fallocate(int(f.Fd()), 0, 0, size) }

func (osFS) Msync(_ string, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, _, e := unix.Syscall(unix.SYS_MSYNC, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MS_SYNC)
	if e != 0 {
		return e
	}
	return nil
}

func (osFS) WriteAt(f *os.File, b []byte, off int64) (int, error) { return f.WriteAt(b, off) }

func (osFS) Fsync(f *os.File) error { return f.Sync() }

func (osFS) Fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

func (osFS) Rename(from, to string) error { return os.Rename(from, to) }

// Or returns fs, or OS when fs is nil.
func Or(fs FS) FS {
	if fs == nil {
		return OS
	}
	return fs
}
