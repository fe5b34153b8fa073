// Package testdisk makes a state directory misbehave the way disks do,
// for the tests that show splicefleet refuses to act and loses nothing
// when it cannot write: a small tmpfs that fills up, and a read-only
// bind mount over a directory.
//
// It mounts real file systems, so it needs root (CI runs as root); a
// test that cannot mount fails with the reason rather than skipping.
// Every mount is undone when the test ends. A read-only remount of the
// tmpfs itself is refused (EBUSY) while a process holds a file in it
// open for writing, as a running agent does; the bind mount stands for a
// state directory that became read-only under it.
package testdisk

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes at dir, creating dir, and unmounts
// it at the end of the test.
func Tmpfs(t testing.TB, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount a tmpfs at %s (the test needs root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// Fill writes path until its file system is full, and returns the undo
// that removes it.
func Fill(t testing.TB, path string) func() {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// ReadOnly mounts dir read-only over itself and returns the undo. Files
// already open stay as they are; every new write through the path is
// refused with EROFS.
func ReadOnly(t testing.TB, dir string) func() {
	t.Helper()
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s: %v", dir, err)
	}
	undo := func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount the read-only bind mount %s: %v", dir, err)
		}
	}
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		undo()
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	return undo
}
