package splice

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/splicefleet/splicefleet/internal/fileperm"
)

// ErrLocked is returned when another process holds the state directory.
var ErrLocked = errors.New("state directory is in use by another splicefleet process")

// dirLock is an exclusive flock on the state directory's lock file. The
// kernel drops it when the process dies, however it dies, so a crashed
// process never leaves the host locked.
type dirLock struct{ f *os.File }

func lockDir(path string, wait time.Duration) (*dirLock, error) {
	// Not following a link: a `lock` link planted by another user would
	// have root truncate and write the file it names.
	f, err := fileperm.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder := ""
			b := make([]byte, 32)
			if n, _ := f.ReadAt(b, 0); n > 0 {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
					holder = fmt.Sprintf(" (pid %d)", pid)
				}
			}
			f.Close()
			return nil, fmt.Errorf("%w%s: %s", ErrLocked, holder, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Record the holder for the message above; the lock is the flock, not
	// this content.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
