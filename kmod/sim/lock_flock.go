//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes the exclusive flock on dir's lock file, waiting for it,
// and returns the function that releases it. flock locks belong to the
// open file, so two Kernel values in one process exclude each other just
// as two processes do, and a killed process's lock goes with it.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() {
		// Closing the file releases the lock.
		f.Close()
	}, nil
}
