//go:build linux

package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMapErrno(t *testing.T) {
	tests := []struct {
		op    string
		errno unix.Errno
		want  error // nil: no sentinel
	}{
		{opFinit, unix.EEXIST, ErrAlreadyLoaded},
		{opFinit, unix.ENOEXEC, ErrWrongKernel},
		{opFinit, unix.EKEYREJECTED, ErrKeyRejected},
		{opFinit, unix.EPERM, ErrNotPermitted},
		{opDelete, unix.EPERM, ErrNotPermitted},
		{opDelete, unix.EBUSY, ErrBusy},
		{opDelete, unix.EAGAIN, ErrInUse},
		{opFinit, unix.EAGAIN, nil},
		{opFinit, unix.ENOSYS, ErrNoSyscall},
		{opDelete, unix.ENOENT, ErrNotLoaded},
		{opFinit, unix.ENOENT, nil},
		{opFinit, unix.EINVAL, nil},
	}
	sentinels := []error{ErrAlreadyLoaded, ErrWrongKernel, ErrKeyRejected, ErrNotPermitted, ErrBusy, ErrInUse, ErrNoSyscall, ErrNotLoaded}
	for _, tt := range tests {
		t.Run(tt.op+" "+unix.ErrnoName(tt.errno), func(t *testing.T) {
			err := mapErrno(tt.op, tt.errno)
			if !errors.Is(err, tt.errno) {
				t.Errorf("%v: the errno is not in the chain", err)
			}
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), s == tt.want; got != want {
					t.Errorf("%v: errors.Is(err, %q) = %t, want %t", err, s, got, want)
				}
			}
			wantErrContaining(t, err, tt.op+": ")
		})
	}
	if err := mapErrno(opFinit, nil); err != nil {
		t.Errorf("mapErrno(nil) = %v", err)
	}
	other := errors.New("not an errno")
	if err := mapErrno(opFinit, other); !errors.Is(err, other) {
		t.Errorf("mapErrno(other) = %v, lost the cause", err)
	}
}

// TestReadKmsgNonDevice exercises the raw read loop on a regular file (one
// read returns it whole, the next returns 0) and on a missing path.
func TestReadKmsgNonDevice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kmsg")
	if err := os.WriteFile(path, []byte("6,1,2,-;hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err := readKmsg(path)
	if err != nil || len(recs) != 1 || string(recs[0]) != "6,1,2,-;hello\n" {
		t.Errorf("readKmsg = %q, %v; want one record", recs, err)
	}
	_, err = readKmsg(filepath.Join(dir, "missing"))
	if !errors.Is(err, unix.ENOENT) {
		t.Errorf("readKmsg(missing): err = %v, want ENOENT", err)
	}
	wantErrContaining(t, err, filepath.Join(dir, "missing"))
}
