//go:build !linux

package kmod

import "fmt"

// deleteNonBlock has no meaning where modules cannot be removed.
const deleteNonBlock = 0

// finitModule fails: only Linux loads kernel modules.
func finitModule(fd int, params string, flags int) error {
	return fmt.Errorf("%s: %w", opFinit, ErrNotSupported)
}

// deleteModule fails: only Linux removes kernel modules.
func deleteModule(name string, flags int) error {
	return fmt.Errorf("%s: %w", opDelete, ErrNotSupported)
}

// readKmsg fails: only Linux has /dev/kmsg.
func readKmsg(path string) ([][]byte, error) {
	return nil, fmt.Errorf("read %s: %w", path, ErrNotSupported)
}

// accessWrite fails: only Linux has the livepatch interface.
func accessWrite(path string) error {
	return fmt.Errorf("access %s: %w", path, ErrNotSupported)
}

// limitPrivileges fails: capability bounding sets are Linux's.
func limitPrivileges(keep []uint) error {
	return fmt.Errorf("limit privileges: %w", ErrNotSupported)
}
