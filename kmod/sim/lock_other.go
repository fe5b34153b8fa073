//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sim

import (
	"fmt"

	"github.com/splicefleet/splicefleet/kmod"
)

// lockDir fails where there is no flock: a simulated kernel shared by
// processes needs it.
func lockDir(dir string) (unlock func(), err error) {
	return nil, fmt.Errorf("lock %s: flock: %w", dir, kmod.ErrNotSupported)
}
