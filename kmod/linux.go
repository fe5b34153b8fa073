package kmod

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Linux is the Kernel of a running Linux system. It reads kernel state
// through an [FS] and makes its system calls through the package's seam.
type Linux struct {
	fs  FS
	sys sys
	// write writes a sysfs attribute; tests wrap it to watch and react.
	write func(path, value string) error
	log   *slog.Logger
	// cleanup bounds the transitions Load waits for when it backs out a
	// module that is not what was verified.
	cleanup Timeouts
	// busyTries and busyBackoff bound Load's retries of EBUSY, and
	// Unload's of EBUSY and EAGAIN.
	busyTries   int
	busyBackoff time.Duration
}

var _ Kernel = (*Linux)(nil)

// LinuxOption configures a [Linux].
type LinuxOption func(*Linux)

// WithLogger makes the backend log what it does to the kernel to l.
func WithLogger(l *slog.Logger) LinuxOption {
	return func(k *Linux) { k.log = l }
}

// WithCleanupTimeouts bounds the transitions Load waits for when it
// disables and unloads a module that is not what was verified (default
// [DefaultTimeouts]).
func WithCleanupTimeouts(t Timeouts) LinuxOption {
	return func(k *Linux) { k.cleanup = t.WithDefaults() }
}

// NewLinux returns the Kernel of the system whose procfs and sysfs are
// mounted under root ("/" for the running system).
func NewLinux(root string, opts ...LinuxOption) (*Linux, error) {
	fsys, err := NewFS(root)
	if err != nil {
		return nil, err
	}
	k := &Linux{
		fs:          fsys,
		sys:         osSys{},
		write:       writeFile,
		log:         slog.New(slog.DiscardHandler),
		cleanup:     DefaultTimeouts,
		busyTries:   20,
		busyBackoff: 25 * time.Millisecond,
	}
	for _, o := range opts {
		o(k)
	}
	return k, nil
}

// FS is the tree the backend reads kernel state through.
func (k *Linux) FS() FS { return k.fs }

// Identity implements [Kernel].
func (k *Linux) Identity() (Identity, error) { return k.fs.Identity() }

// Livepatches implements [Kernel].
func (k *Linux) Livepatches() ([]Livepatch, error) { return k.fs.Livepatches() }

// Modules implements [Kernel].
func (k *Linux) Modules() ([]Module, error) { return k.fs.Modules() }

// Taint implements [Kernel].
func (k *Linux) Taint() (Taint, error) { return k.fs.Taint() }

// Load implements [Kernel]. It refuses a kernel without livepatch support
// and a patch name already present, loads the module with finit_module,
// and then checks that the kernel registered a livepatch named spec.Name
// whose replace flag (where the kernel shows one) is spec.Replace. A
// module that fails the check is backed out (disabled, then unloaded) and
// the error wraps [ErrSpecMismatch].
func (k *Linux) Load(ctx context.Context, module *os.File, spec LoadSpec) error {
	if err := checkName(spec.Name); err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	if module == nil {
		return fmt.Errorf("load module %s: no module file", spec.Name)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load module %s: %w", spec.Name, err)
	}
	if !exists(k.fs.livepatchDir()) {
		return fmt.Errorf("load module %s: %w", spec.Name, ErrNoLivepatch)
	}
	if exists(k.fs.livepatchDir(spec.Name)) {
		return fmt.Errorf("load module %s: a livepatch of that name is present: %w", spec.Name, ErrAlreadyLoaded)
	}
	k.log.Info("loading module", "module", spec.Name, "replace", spec.Replace)
	// EBUSY: the livepatch core refuses a new patch while another one is
	// in a transition; it clears by itself, so retry a bounded number of
	// times with a growing pause, as Unload does. finit_module reads the
	// file from its start whatever the descriptor's offset.
	pause := k.busyBackoff
	for try := 1; ; try++ {
		err := k.sys.finitModule(int(module.Fd()), "", 0)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrBusy) || try >= k.busyTries {
			return fmt.Errorf("load module %s: %w", spec.Name, err)
		}
		k.log.Info("kernel busy, retrying the load", "module", spec.Name, "try", try)
		if !sleep(ctx, pause) {
			return fmt.Errorf("load module %s: %w (%w)", spec.Name, ctx.Err(), err)
		}
		pause = min(2*pause, 10*k.busyBackoff)
	}
	return k.checkLoaded(ctx, spec)
}

// checkLoaded compares a just-loaded module's livepatch with spec and
// backs the module out when they differ.
func (k *Linux) checkLoaded(ctx context.Context, spec LoadSpec) error {
	if !exists(k.fs.livepatchDir(spec.Name)) {
		err := fmt.Errorf("load module %s: module loaded but registered no livepatch named %s: %w", spec.Name, spec.Name, ErrSpecMismatch)
		return errors.Join(err, k.Unload(ctx, spec.Name))
	}
	replace, err := k.fs.replaceFlag(spec.Name)
	if err != nil {
		err = fmt.Errorf("load module %s: %w", spec.Name, err)
	} else if replace != nil && *replace != spec.Replace {
		err = fmt.Errorf("load module %s: the kernel reports replace=%t, the verified module has replace=%t: %w",
			spec.Name, *replace, spec.Replace, ErrSpecMismatch)
	}
	if err == nil {
		return nil
	}
	return errors.Join(err, k.backOut(ctx, spec.Name))
}

// backOut disables a patch, waits for the transition (signalling blockers
// but never reversing or forcing it) and unloads the module.
func (k *Linux) backOut(ctx context.Context, name string) error {
	k.log.Warn("backing out module", "module", name)
	if err := k.Disable(ctx, name); err != nil {
		return fmt.Errorf("back out %s: %w", name, err)
	}
	done, err := k.settle(ctx, name, k.cleanup)
	if err != nil {
		return fmt.Errorf("back out %s: %w", name, err)
	}
	if !done {
		return fmt.Errorf("back out %s: disabling did not complete; the module stays loaded: %w", name, ErrTransitionStuck)
	}
	return k.Unload(ctx, name)
}

// Disable implements [Kernel]: it writes 0 to the patch's enabled file.
// A patch already disabling is left alone.
func (k *Linux) Disable(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("disable: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("disable %s: %w", name, err)
	}
	enabled, err := k.fs.patchBool(name, "enabled")
	if err != nil {
		if k.gone(name, err) {
			return fmt.Errorf("disable %s: %w", name, ErrNoSuchPatch)
		}
		return fmt.Errorf("disable %s: %w", name, err)
	}
	if !enabled {
		return nil
	}
	k.log.Info("disabling livepatch", "patch", name)
	if err := k.write(k.fs.livepatchDir(name, "enabled"), "0"); err != nil {
		return fmt.Errorf("disable %s: %w", name, err)
	}
	return nil
}

// Unload implements [Kernel]: delete_module without waiting for users,
// retrying EBUSY and EAGAIN a bounded number of times with a growing
// pause. Both are expected for a moment after a patch was disabled: the
// kernel drops the patch's reference to its module from a work queue once
// the transition has finished, so the first delete_module can race it.
func (k *Linux) Unload(ctx context.Context, name string) error {
	pause := k.busyBackoff
	var err error
	for try := 1; ; try++ {
		err = k.sys.deleteModule(name, deleteNonBlock)
		if err == nil {
			k.log.Info("unloaded module", "module", name, "tries", try)
			return nil
		}
		retryable := errors.Is(err, ErrBusy) || errors.Is(err, ErrInUse)
		if !retryable || try >= k.busyTries {
			break
		}
		if !sleep(ctx, pause) {
			return fmt.Errorf("unload module %s: %w (%w)", name, ctx.Err(), err)
		}
		pause = min(2*pause, 10*k.busyBackoff)
	}
	return fmt.Errorf("unload module %s: %w", name, err)
}

// Log implements [Kernel]: it reads the kernel log buffer without blocking
// and returns the records with a sequence number above cursor, and the
// highest sequence number seen. Because cursors count records already
// returned, the very first record (sequence 0, the boot banner) is never
// returned.
func (k *Linux) Log(cursor uint64) ([]LogRecord, uint64, error) {
	raw, err := k.sys.readKmsg(k.fs.path("dev", "kmsg"))
	if err != nil {
		return nil, cursor, fmt.Errorf("kernel log: %w", err)
	}
	recs, next := kmsgAfter(raw, cursor)
	return recs, next, nil
}

// WaitTransition implements [Kernel]. It polls the patch's transition
// file every t.Poll. A patch that is not present is not in transition (a
// completed disable frees the patch). After t.Stall it writes 1 to the
// patch's signal file, which sends a fake signal to the blocking tasks,
// and waits up to t.AfterSignal more. If the transition is still running
// it names the blocking tasks, reverses the transition by writing the
// opposite value to enabled, waits for the reversal (up to t.Stall +
// t.AfterSignal), unloads the module when the stalled transition was
// enabling the patch, and returns a *TransitionError. It never writes the
// force file: forcing a transition can leave tasks on code that is gone.
func (k *Linux) WaitTransition(ctx context.Context, name string, t Timeouts) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("wait for transition: %w", err)
	}
	t = t.WithDefaults()
	start := time.Now()
	enabling, err := k.fs.patchBool(name, "enabled")
	if err != nil {
		if k.gone(name, err) {
			return nil
		}
		return fmt.Errorf("wait for %s: %w", name, err)
	}
	done, err := k.settle(ctx, name, t)
	if err != nil || done {
		return err
	}
	return k.reverse(ctx, name, enabling, time.Since(start), t)
}

// settle waits for a patch's transition to end: up to t.Stall, then,
// after writing to the patch's signal file, up to t.AfterSignal more. It
// reports whether the transition ended.
func (k *Linux) settle(ctx context.Context, name string, t Timeouts) (bool, error) {
	t = t.WithDefaults()
	done, err := k.poll(ctx, name, t.Stall, t.Poll)
	if err != nil || done {
		return done, err
	}
	signal := k.fs.livepatchDir(name, "signal")
	if exists(signal) {
		k.log.Warn("transition stalled; signalling blocking tasks", "patch", name, "after", t.Stall)
		if err := k.write(signal, "1"); err != nil {
			return false, fmt.Errorf("wait for %s: %w", name, err)
		}
	} else {
		// Linux 5.1 and later have no signal file: the kernel sends the
		// fake signals itself, every 15 s of a stalled transition.
		k.log.Warn("transition stalled; the kernel signals blocking tasks itself", "patch", name, "after", t.Stall)
	}
	return k.poll(ctx, name, t.AfterSignal, t.Poll)
}

// reverse reverses a stalled transition, unloads the module when the
// transition was enabling it, and describes what happened.
func (k *Linux) reverse(ctx context.Context, name string, enabling bool, waited time.Duration, t Timeouts) error {
	te := &TransitionError{Patch: name, Enabling: enabling, Waited: waited}
	te.Blockers, _ = k.fs.Blockers(boolInt(enabling)) // best effort: the names help, the reversal matters
	k.log.Warn("transition stuck; reversing it", "patch", name, "enabling", enabling, "blockers", len(te.Blockers))
	if err := k.write(k.fs.livepatchDir(name, "enabled"), strconv.Itoa(boolInt(!enabling))); err != nil {
		te.Err = fmt.Errorf("reverse: %w", err)
		return te
	}
	done, err := k.poll(ctx, name, t.Stall+t.AfterSignal, t.Poll)
	switch {
	case err != nil:
		te.Err = fmt.Errorf("reverse: %w", err)
		return te
	case !done:
		te.Err = fmt.Errorf("reverse: the reverse transition did not complete in %s either", t.Stall+t.AfterSignal)
		return te
	}
	if enabling {
		if err := k.Unload(ctx, name); err != nil {
			te.Err = err
			return te
		}
	}
	te.Reverted = true
	return te
}

// poll checks every interval, for up to limit, whether the patch's
// transition has ended (or the patch is gone). It stops early when ctx
// ends.
func (k *Linux) poll(ctx context.Context, name string, limit, interval time.Duration) (bool, error) {
	deadline := time.Now().Add(limit)
	for {
		in, err := k.fs.patchBool(name, "transition")
		if err != nil {
			if k.gone(name, err) {
				return true, nil
			}
			return false, fmt.Errorf("wait for %s: %w", name, err)
		}
		if !in {
			return true, nil
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
		if !sleep(ctx, min(interval, time.Until(deadline))) {
			return false, fmt.Errorf("wait for %s: %w", name, ctx.Err())
		}
	}
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// checkName refuses names that are not one path element, so a name can
// never lead a sysfs path out of /sys/kernel/livepatch.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("bad module name %q", name)
	}
	return nil
}

// boolInt is 1 for true and 0 for false, as sysfs writes them.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// gone reports whether a failed read of one of a patch's files means
// the patch is gone: its folder is, or the file is while the folder is
// still there. The kernel frees a disabled patch from a work queue once
// its transition has finished, and sysfs takes the files away before
// the folder: a reader may find the folder and not its files for a
// moment. The kernel creates a patch's files with its folder, so a
// missing file is never a patch on its way in.
func (k *Linux) gone(name string, err error) bool {
	return errors.Is(err, fs.ErrNotExist) || !exists(k.fs.livepatchDir(name))
}

// patchBool reads one flag file of a patch ("enabled", "transition").
func (k FS) patchBool(name, file string) (bool, error) {
	return readBool(k.livepatchDir(name, file))
}
