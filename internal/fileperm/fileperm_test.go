package fileperm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckRefusesWritableByOthers(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckPath(p); err != nil {
		t.Fatalf("a 0600 file of this user: %v", err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		want string
	}{
		{0o620, "writable by group (owner uid"},
		{0o602, "writable by others (owner uid"},
		{0o666, "writable by group and others"},
	} {
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckPath(p)
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "fix: chmod go-w "+p) {
			t.Errorf("mode %04o: %v", tc.mode, err)
		}
		if _, err := Open(p); !errors.Is(err, ErrUnsafe) {
			t.Errorf("open mode %04o: %v", tc.mode, err)
		}
	}
}

func TestCheckRefusesAnotherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns a file to uid 65534 and must run as root (as the project's tests do)")
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := CheckPath(dir)
	want := dir + ": owned by uid 65534, not root or uid 0 (this process) (owner uid 65534, mode 0700): refusing a path another user could change; fix: chown root " + dir
	if !errors.Is(err, ErrUnsafe) || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
}

func TestOpenDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "lock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(link, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600); !errors.Is(err, ErrSymlink) {
		t.Fatalf("open a symlink: %v", err)
	}
	if err := CheckPath(link); !errors.Is(err, ErrSymlink) {
		t.Fatalf("check a symlink: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatalf("target changed: %q", b)
	}
}
