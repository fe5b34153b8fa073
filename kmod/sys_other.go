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
