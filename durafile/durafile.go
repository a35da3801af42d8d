// Package durafile writes small files (identities, keys) so that a crash
// or power cut leaves either the old file or the whole new one: written
// under a temporary name, synced, renamed into place, and the directory
// synced so the rename itself is durable.
package durafile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data (mode perm). The directory must exist.
func Write(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
