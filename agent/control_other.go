//go:build !linux

package agent

import (
	"errors"
	"fmt"
	"net"
)

// peerUID is Linux-only: elsewhere the CLI cannot tell who serves the
// control socket, and talks to nobody.
func peerUID(net.Conn) (int, error) {
	return -1, fmt.Errorf("peer credentials: %w", errors.ErrUnsupported)
}
