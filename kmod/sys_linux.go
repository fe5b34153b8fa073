//go:build linux

package kmod

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"golang.org/x/sys/unix"
)

// deleteNonBlock makes delete_module fail with EAGAIN (EWOULDBLOCK)
// instead of waiting for the module's users to go away.
const deleteNonBlock = unix.O_NONBLOCK

// maxKmsgRecords bounds one read of the kernel log buffer.
const maxKmsgRecords = 1 << 16

// finitModule loads the module open at fd (finit_module(2)).
func finitModule(fd int, params string, flags int) error {
	return mapErrno(opFinit, unix.FinitModule(fd, params, flags))
}

// deleteModule removes the named module (delete_module(2)).
func deleteModule(name string, flags int) error {
	return mapErrno(opDelete, unix.DeleteModule(name, flags))
}

// errnoSentinels maps the errnos module system calls return to the
// package's sentinels. ENOENT and EAGAIN are mapped only for
// delete_module.
var errnoSentinels = map[unix.Errno]error{
	unix.EEXIST:       ErrAlreadyLoaded,
	unix.ENOEXEC:      ErrWrongKernel,
	unix.EKEYREJECTED: ErrKeyRejected,
	unix.EPERM:        ErrNotPermitted,
	unix.EBUSY:        ErrBusy,
	unix.ENOSYS:       ErrNoSyscall,
}

// mapErrno turns the error of system call op into one that wraps both the
// matching sentinel (when there is one) and the errno, so callers can test
// either with errors.Is. A nil err stays nil.
func mapErrno(op string, err error) error {
	if err == nil {
		return nil
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("%s: %w", op, err)
	}
	sentinel := errnoSentinels[errno]
	if op == opDelete {
		switch errno {
		case unix.ENOENT:
			sentinel = ErrNotLoaded
		case unix.EAGAIN: // EWOULDBLOCK: the reference count is not zero
			sentinel = ErrInUse
		}
	}
	if sentinel == nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, sentinel, err)
}

// readKmsg reads every record in the kernel log buffer from path (a
// /dev/kmsg device). It uses raw system calls on purpose: through Go's os
// package a non-blocking read of /dev/kmsg parks in the runtime poller and
// never returns at the end of the buffer, whereas read(2) returns EAGAIN.
// Each read returns exactly one record. EPIPE means records were
// overwritten while reading; the next read continues with the oldest one
// left.
func readKmsg(path string) ([][]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, mapErrno("open "+path, err)
	}
	defer func() { _ = unix.Close(fd) }()
	buf := make([]byte, 16<<10) // a record is at most 8 KiB with its dictionary
	var recs [][]byte
	for len(recs) < maxKmsgRecords {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EAGAIN || err == nil && n <= 0:
			return recs, nil
		case err == unix.EINTR || err == unix.EPIPE:
			continue
		case err != nil:
			return recs, mapErrno("read "+path, err)
		}
		recs = append(recs, bytes.Clone(buf[:n]))
	}
	return recs, nil
}

// accessWrite says whether this process may write below path: EROFS on
// a read-only mount (a sandbox's ProtectKernelTunables), EACCES without
// the permission.
func accessWrite(path string) error {
	if err := unix.Access(path, unix.W_OK); err != nil {
		return &fs.PathError{Op: "access for writing", Path: path, Err: err}
	}
	return nil
}

// limitPrivileges drops every capability but keep from the bounding set
// and sets no_new_privs, for this process and what it executes.
func limitPrivileges(keep []uint) error {
	for c := uint(0); c < 64; c++ {
		if slices.Contains(keep, c) {
			continue
		}
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the last capability this kernel knows
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}
