// Package fileperm decides whether a file or folder that steers what root
// does (a host's state directory and what is in it, the trust keyring, the
// agent's configuration) may be trusted: it must belong to root or to the
// user running splicefleet, and no group or other user may write to it.
// Anyone who can write such a path can make root load a module of their
// choosing, so a path that fails is refused with a message that names it,
// its owner and mode, and the command that fixes it.
//
// Files are opened with O_NOFOLLOW and judged through the descriptor
// (fstat), so a symbolic link planted in place of a file is refused and
// the file judged is the file read.
package fileperm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrUnsafe is wrapped by every refusal of this package.
var ErrUnsafe = errors.New("unsafe ownership or permissions")

// ErrSymlink is wrapped when a path that must be a file or folder is a
// symbolic link.
var ErrSymlink = errors.New("is a symbolic link")

// UnsafeError says why a path is not trusted.
type UnsafeError struct {
	Path  string
	UID   uint32
	Mode  fs.FileMode
	Issue string // what is wrong: "owned by uid 65534", "writable by group and others"
	Fix   string // the command that fixes it
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("%s: %s (owner uid %d, mode %04o): refusing a path another user could change; fix: %s",
		e.Path, e.Issue, e.UID, uint32(e.Mode.Perm()), e.Fix)
}

// Unwrap makes errors.Is(err, ErrUnsafe) hold.
func (e *UnsafeError) Unwrap() error { return ErrUnsafe }

// trusted reports whether uid may own what root acts on: root, or the
// user running this process.
func trusted(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// Check judges path's FileInfo (from Lstat or Fstat): a symbolic link, an
// owner other than root or this process's user, or write permission for
// group or others is refused.
func Check(path string, fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s %w; refusing to follow it (remove it: rm %s)", path, ErrSymlink, path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: %w: cannot read its owner", path, ErrUnsafe)
	}
	var issue, fix string
	switch {
	case !trusted(st.Uid):
		issue = fmt.Sprintf("owned by uid %d, not root or uid %d (this process)", st.Uid, os.Geteuid())
		fix = fmt.Sprintf("chown %s %s", owner(), path)
		if fi.Mode().Perm()&0o022 != 0 {
			fix += fmt.Sprintf(" && chmod go-w %s", path)
		}
	case fi.Mode().Perm()&0o022 != 0:
		issue = "writable by " + writers(fi.Mode())
		fix = "chmod go-w " + path
	default:
		return nil
	}
	return &UnsafeError{Path: path, UID: st.Uid, Mode: fi.Mode(), Issue: issue, Fix: fix}
}

// owner is how chown names the user this process runs as.
func owner() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return fmt.Sprint(os.Geteuid())
}

func writers(m fs.FileMode) string {
	switch {
	case m&0o020 != 0 && m&0o002 != 0:
		return "group and others"
	case m&0o020 != 0:
		return "group"
	}
	return "others"
}

// CheckPath judges path itself, without following a symbolic link.
func CheckPath(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	return Check(path, fi)
}

// Open opens path for reading with O_NOFOLLOW and judges the opened file
// (Check). A symbolic link is refused with ErrSymlink.
func Open(path string) (*os.File, error) {
	return OpenFile(path, os.O_RDONLY, 0)
}

// OpenFile is os.OpenFile with O_NOFOLLOW, judging the opened file
// (Check) before handing it out.
func OpenFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s %w; refusing to follow it (remove it: rm %s)", path, ErrSymlink, path)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = Check(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads a configuration-like file (the agent's configuration, a
// keyring) of at most limit bytes, judging the file it opened (Check).
// Unlike Open it follows a symbolic link an administrator configured: the
// file it names is judged.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := Check(path, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: larger than the %d byte limit", path, limit)
	}
	return data, nil
}
