// Package atomicfile writes files so that readers, and a machine that loses
// power, see either the old contents or the new, never a part: the data goes
// to a temporary file in the same folder, is synced, renamed over the
// target, and the folder is synced so the rename itself is durable. On any
// failure the temporary file is removed and the target is untouched.
//
// WriteFile does it for bytes in memory; Create and Commit for data that
// streams (a module downloaded while it is hashed). The temporary file's
// name pattern is the caller's when leftovers must be recognisable (the
// bundle store names its downloads "*.unverified" and removes them at
// start).
//
// A folder sync that fails is an error, except where the file system says
// it cannot sync folders at all (EINVAL, ENOTSUP: some network and FUSE
// file systems): the files in the folder are complete either way, and
// failing every write there would make the host unusable.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// File is a temporary file that replaces its target when committed.
type File struct {
	*os.File
	path string
	perm os.FileMode
	done bool
}

// Create opens a temporary file in path's folder, to replace path with
// mode perm at Commit. pattern names the temporary file as
// os.CreateTemp's pattern does; "" names it ".BASE.tmp-*".
func Create(path string, perm os.FileMode, pattern string) (*File, error) {
	if pattern == "" {
		pattern = "." + filepath.Base(path) + ".tmp-*"
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), pattern)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &File{File: tmp, path: path, perm: perm}, nil
}

// Commit sets the mode, syncs and closes the file, renames it over its
// target and syncs the folder. On failure the temporary file is removed
// and the target is as it was (unless only the folder sync failed: then
// the new file is in place but its rename may not survive a power loss).
func (f *File) Commit() (err error) {
	if f.done {
		return fmt.Errorf("write %s: already committed or aborted", f.path)
	}
	f.done = true
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(f.perm); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", f.path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", f.path, err)
	}
	if err = os.Rename(f.Name(), f.path); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort closes and removes the temporary file; after Commit it does
// nothing. It is safe to defer.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// WriteFile writes data to path atomically with the given permissions.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileAs(path, data, perm, "")
}

// WriteFileAs is WriteFile with the temporary file named by pattern (see
// Create).
func WriteFileAs(path string, data []byte, perm os.FileMode, pattern string) error {
	f, err := Create(path, perm, pattern)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// SyncDir makes renames and removals in dir durable. A file system that
// cannot sync folders is not an error; any other failure is.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
