// Package fileperm checks that a file the agent trusts cannot be changed
// by anyone but the agent's user and root.
//
// A keyring decides what code may run on the kernel, a configuration
// which keyring that is, and a state directory what is re-applied at
// boot: whoever can write one of them, or swap it by writing a folder
// above it, holds the host. [CheckOwnedAndPrivate] refuses a file, or
// any folder on its path, that is owned by another user than the agent's
// or root, or that group or others may write (a folder with the sticky
// bit, such as /tmp, protects the entries others own, and passes). It
// does not look at who may read: a keyring is public, while secrets such
// as the gossip keys get their own, stricter check.
//
// The check follows symbolic links on the path, as the read that follows
// it does, and judges what they point to; callers that must not follow a
// link open with O_NOFOLLOW besides. Errors wrap [ErrUnsafe] and name the
// path, its owner and mode, and the command that fixes it.
package fileperm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUnsafe says a file or a folder above it may be changed by someone
// other than the agent's user or root.
var ErrUnsafe = errors.New("may be changed by another user")

// Error is a refused path: the file itself or a folder above it.
type Error struct {
	// Path is the file or folder refused; File the file that was checked.
	Path, File string
	// UID owns Path; Mode is its permission bits.
	UID  int
	Mode fs.FileMode
	// Problem says what is wrong; Fix how to mend it.
	Problem, Fix string
}

func (e *Error) Error() string {
	where := e.Path
	if e.Path != e.File {
		where = fmt.Sprintf("%s (a folder above %s)", e.Path, e.File)
	}
	return fmt.Sprintf("%s %s: %s (owner uid %d, mode %04o); %s", where, ErrUnsafe, e.Problem, e.UID, uint32(e.Mode.Perm()), e.Fix)
}

func (e *Error) Unwrap() error { return ErrUnsafe }

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
		if err := check(p, file, st, uid, first); err != nil {
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

func check(p, file string, st fs.FileInfo, uid int, isFile bool) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information on this system", p)
	}
	owner := int(sys.Uid)
	mode := st.Mode()
	refuse := func(problem, fix string) error {
		return &Error{Path: p, File: file, UID: owner, Mode: mode, Problem: problem, Fix: fix}
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
