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

func TestCheckOwnedAndPrivate(t *testing.T) {
	uid := os.Geteuid()
	dir := t.TempDir()
	file := filepath.Join(dir, "trusted.asc")
	if err := os.WriteFile(file, []byte("keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	chmod := func(p string, m os.FileMode) {
		t.Helper()
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckOwnedAndPrivate(file, uid); err != nil {
		t.Fatalf("a 0644 file in a 0700 folder of the agent's user: %v", err)
	}
	for _, tt := range []struct {
		mode os.FileMode
		want string
	}{
		{0o666, "writable by group and others"},
		{0o664, "writable by group"},
		{0o646, "writable by others"},
	} {
		chmod(file, tt.mode)
		err := CheckOwnedAndPrivate(file, uid)
		var e *PathError
		if !errors.Is(err, ErrUnsafe) || !errors.As(err, &e) || e.Path != file || !strings.Contains(err.Error(), tt.want) ||
			!strings.Contains(err.Error(), "chmod go-w "+file) {
			t.Errorf("mode %04o: %v, want %q naming the file and the fix", tt.mode, err, tt.want)
		}
	}
	chmod(file, 0o644)

	// A folder above that others may write lets them swap the file.
	chmod(dir, 0o777)
	err := CheckOwnedAndPrivate(file, uid)
	var e *PathError
	if !errors.As(err, &e) || e.Path != dir || !strings.Contains(err.Error(), "a folder above "+file) {
		t.Errorf("world-writable folder above: %v", err)
	}
	// With the sticky bit (like /tmp) others cannot replace our entries.
	chmod(dir, os.ModeSticky|0o777)
	if err := CheckOwnedAndPrivate(file, uid); err != nil {
		t.Errorf("sticky folder above: %v", err)
	}
	chmod(dir, 0o700)

	// A symbolic link is judged by what it points to.
	link := filepath.Join(dir, "link.asc")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	chmod(file, 0o666)
	if err := CheckOwnedAndPrivate(link, uid); !errors.As(err, &e) || e.Path != file {
		t.Errorf("link to a world-writable file: %v", err)
	}
	chmod(file, 0o644)

	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing exists")
	}
	if err := CheckOwnedAndPrivate(filepath.Join(dir, "missing"), uid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// A file owned by another user than the agent's or root is refused,
// whatever its mode: its owner may change it. Needs root to chown.
func TestCheckOwnedAndPrivateOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("chown to another user needs root; CI runs the tests as root")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "trusted.asc")
	if err := os.WriteFile(file, []byte("keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(file, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	err := CheckOwnedAndPrivate(file, 0)
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "owned by uid 4242, neither root nor the agent's user (uid 0)") {
		t.Errorf("a file another user owns: %v", err)
	}
	// The agent's own user may own it.
	if err := CheckOwnedAndPrivate(file, 4242); err != nil {
		t.Errorf("owned by the agent's user 4242: %v", err)
	}
}
