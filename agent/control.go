package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// The control socket changes what the host runs and carries the gossip
// key, so both of its ends check the other:
//
//   - The agent creates the socket only in a folder it owns and that no
//     other user can write to, below folders that only root or the agent
//     can change (a world-writable folder counts only with its sticky bit,
//     like /tmp), and refuses to start otherwise: another user who could
//     write there could put a socket of its own in the socket's place.
//     It binds the socket in a private folder, sets its mode to 0600 and
//     only then renames it into place, so the socket is never reachable
//     with a wider mode. (A restrictive umask would do the same, but the
//     umask belongs to the whole process, and other goroutines create
//     files meanwhile.)
//   - The CLI asks the kernel who serves the socket (SO_PEERCRED) before
//     it sends anything, and talks only to root, to its own user, or to
//     the owner of the socket's folder when only root could have made
//     that folder (every folder above it is root's and writable by
//     nobody else): the agent's user when it runs as one.

// ErrUnsafeControlSocket means the control socket's folder could be
// changed by another user; the agent does not start.
var ErrUnsafeControlSocket = errors.New("unsafe control socket folder")

// ErrUntrustedControlPeer means the process serving the control socket
// runs as a user the CLI does not trust with what it would send.
var ErrUntrustedControlPeer = errors.New("the control socket is served by an untrusted user")

// owner returns the uid owning fi.
func owner(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// checkControlDir checks that dir, the control socket's folder, belongs to
// the agent's user and that no other user can write to it or replace it.
func checkControlDir(socket, dir string) error {
	me := os.Geteuid()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%w: control socket %s: %s is not a folder", ErrUnsafeControlSocket, socket, real)
	case owner(fi) != me:
		return fmt.Errorf("%w: control socket %s: its folder %s belongs to uid %d, not to the agent's user (uid %d); another user could put a socket of its own there: use a folder the agent's user owns (the default is /run/splicefleet)",
			ErrUnsafeControlSocket, socket, real, owner(fi), me)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: control socket %s: its folder %s is writable by group or others (mode %04o); another user could put a socket of its own there: chmod go-w %s, or use a folder of its own",
			ErrUnsafeControlSocket, socket, real, fi.Mode().Perm(), real)
	}
	for p := filepath.Dir(real); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("control socket %s: %w", socket, err)
		}
		if o := owner(fi); o != 0 && o != me {
			return fmt.Errorf("%w: control socket %s: the folder %s above it belongs to uid %d, who could replace the socket's folder",
				ErrUnsafeControlSocket, socket, p, o)
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%w: control socket %s: the folder %s above it is writable by group or others (mode %04o) without the sticky bit, so another user could replace the socket's folder",
				ErrUnsafeControlSocket, socket, p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// controlListener is the control socket; closing it removes the socket
// file, unless another agent has replaced it since.
type controlListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
}

func (l *controlListener) Close() error {
	err := l.UnixListener.Close()
	if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
		_ = os.Remove(l.path)
	}
	return err
}

// listenControl opens the control socket: mode 0600, in a folder only the
// agent's user can write (see checkControlDir). The socket is bound in a
// private folder beside it, given its mode, and renamed into place.
func listenControl(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := checkControlDir(path, dir); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(dir, ".s") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer func() { _ = os.RemoveAll(stage) }()
	tmp := filepath.Join(stage, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		_ = ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	// A socket left by an agent that died is replaced; anything else in
	// its place is not.
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != os.ModeSocket {
		return fail(fmt.Errorf("%s exists and is not a socket", path))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &controlListener{UnixListener: ln, path: path, fi: fi}, nil
}

// checkControlPeer decides whether the CLI may talk to the process that
// serves socket, which runs as uid: root, the CLI's own user, or the
// owner of the socket's folder when only root could have made it.
func checkControlPeer(socket string, uid int) error {
	me := os.Geteuid()
	if uid == 0 || uid == me {
		return nil
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(socket)); err == nil {
		if fi, err := os.Stat(dir); err == nil && owner(fi) == uid && onlyRootCanChange(filepath.Dir(dir)) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is served by a process of uid %d, which is neither root, you (uid %d), nor the owner of a folder only root controls; refusing to send it anything (another user may have put a socket of its own there)",
		ErrUntrustedControlPeer, socket, uid, me)
}

// onlyRootCanChange says whether dir and every folder above it belong to
// root and are writable by nobody else.
func onlyRootCanChange(dir string) bool {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || owner(fi) != 0 || fi.Mode().Perm()&0o022 != 0 {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}

// dialControl connects to the control socket and checks who serves it.
func dialControl(conn net.Conn, socket string) (net.Conn, error) {
	uid, err := peerUID(conn)
	if err == nil {
		err = checkControlPeer(socket, uid)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}
