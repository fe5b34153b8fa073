// Package testuid lets a test that runs as root act as another user for
// one system call: it listens on a unix socket as that user, so the
// socket's owner and the credentials the kernel reports to its peers
// (SO_PEERCRED) are that user's, as when another user on the host serves
// the socket.
//
// Linux keeps credentials per thread and Go's syscall.Setuid changes
// them on every thread of the process; this package changes them with a
// raw system call on one locked thread only, and gives that thread up if
// it cannot change them back. It is for tests.
package testuid

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
)

// unchanged is -1 for setresuid and setresgid: leave that id as it is.
const unchanged = ^uintptr(0)

func setEffective(uid, gid int) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, unchanged, uintptr(gid), unchanged); e != 0 {
		return fmt.Errorf("setresgid(-1, %d, -1): %w", gid, e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, unchanged, uintptr(uid), unchanged); e != 0 {
		return fmt.Errorf("setresuid(-1, %d, -1): %w", uid, e)
	}
	return nil
}

// ListenUnix listens on a unix socket at path as the user uid and group
// gid. The caller must be root.
func ListenUnix(uid, gid int, path string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			} // else the thread ends with this goroutine
		}()
		if err := setEffective(uid, gid); err != nil {
			restored = setEffective(0, 0) == nil
			done <- result{nil, err}
			return
		}
		ln, err := net.Listen("unix", path)
		// Root again: uid first, which lets the gid change.
		_, _, e1 := syscall.RawSyscall(syscall.SYS_SETRESUID, unchanged, 0, unchanged)
		_, _, e2 := syscall.RawSyscall(syscall.SYS_SETRESGID, unchanged, 0, unchanged)
		restored = e1 == 0 && e2 == 0
		done <- result{ln, err}
	}()
	r := <-done
	return r.ln, r.err
}
