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
// the file judged is the file read. [CheckOwnedAndPrivate] judges a
// path and every folder above it, following links as a read would (a
// sticky folder such as /tmp passes): the agent's keyring at start and
// at every reload.
package fileperm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

// PathError is a refused path: the file itself or a folder above it.
type PathError struct {
	// Path is the file or folder refused; File the file that was checked.
	Path, File string
	// UID owns Path; Mode is its permission bits.
	UID  int
	Mode fs.FileMode
	// Problem says what is wrong; Fix how to mend it.
	Problem, Fix string
}

func (e *PathError) Error() string {
	where := e.Path
	if e.Path != e.File {
		where = fmt.Sprintf("%s (a folder above %s)", e.Path, e.File)
	}
	return fmt.Sprintf("%s %s: %s (owner uid %d, mode %04o); %s", where, ErrUnsafe, e.Problem, e.UID, uint32(e.Mode.Perm()), e.Fix)
}

func (e *PathError) Unwrap() error { return ErrUnsafe }

// CheckOwnedAndPrivate refuses path when it, or any folder on the way to
// it, is owned by a user other than uid or root, or is writable by group
// or others (a sticky folder excepted). uid is the agent's user
// (os.Geteuid() for the running agent).
func CheckOwnedAndPrivate(path string, uid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	file, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	for p, first := file, true; ; first = false {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := checkOnPath(p, file, st, uid, first); err != nil {
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

func checkOnPath(p, file string, st fs.FileInfo, uid int, isFile bool) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information on this system", p)
	}
	owner := int(sys.Uid)
	mode := st.Mode()
	refuse := func(problem, fix string) error {
		return &PathError{Path: p, File: file, UID: owner, Mode: mode, Problem: problem, Fix: fix}
	}
	if owner != uid && owner != 0 {
		return refuse(fmt.Sprintf("owned by uid %d, neither root nor the agent's user (uid %d)", owner, uid),
			fmt.Sprintf("chown root %s", p))
	}
	if mode.Perm()&0o022 == 0 {
		return nil
	}
	if !isFile && mode.IsDir() && mode&fs.ModeSticky != 0 {
		// Others may add entries, not replace ours.
		return nil
	}
	who := "group and others"
	switch {
	case mode.Perm()&0o022 == 0o020:
		who = "group"
	case mode.Perm()&0o022 == 0o002:
		who = "others"
	}
	return refuse("writable by "+who, fmt.Sprintf("chmod go-w %s", p))
}
