package sim

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/splicefleet/splicefleet/kmod"
)

// The identity of a kernel made without a Config saying otherwise: the
// Debian 12 cloud kernel of the kernel lab.
const (
	DefaultRelease = "6.1.0-56-cloud-amd64"
	DefaultArch    = "x86_64"
)

// UnloadAttempts is how many times Unload tries delete_module while the
// kernel answers EBUSY for a reason that may pass (a disable transition
// still running, an injected Fault.UnloadBusy), unloadRetryDelay apart.
const UnloadAttempts = 5

const unloadRetryDelay = 10 * time.Millisecond

// stuckTasks are the tasks a stalled transition reports as blocking it.
var stuckTasks = []kmod.Task{{PID: 4242, Comm: "stuck-task"}}

// Config is the identity of a simulated kernel. The zero value is the
// default kernel: DefaultRelease on DefaultArch with livepatch support.
type Config struct {
	Release string // uname -r; default DefaultRelease
	Arch    string // uname -m; default DefaultArch
	// BuildID is the kernel's GNU build id in hex; default a fixed id
	// derived from Release and Arch, so one release is one build unless
	// said otherwise.
	BuildID string
	// NoLivepatch simulates a kernel built without CONFIG_LIVEPATCH: Load,
	// Livepatches, Disable and WaitTransition fail with kmod.ErrNoLivepatch.
	NoLivepatch bool
}

func (c Config) identity() (kmod.Identity, error) {
	id := kmod.Identity{
		Release:   c.Release,
		Arch:      c.Arch,
		BuildID:   c.BuildID,
		Livepatch: !c.NoLivepatch,
		Simulated: true,
	}
	if id.Release == "" {
		id.Release = DefaultRelease
	}
	if id.Arch == "" {
		id.Arch = DefaultArch
	}
	if id.BuildID == "" {
		sum := sha1.Sum([]byte("splicefleet simulated kernel " + id.Release + " " + id.Arch))
		id.BuildID = hex.EncodeToString(sum[:])
	}
	if err := checkBuildID(id.BuildID); err != nil {
		return kmod.Identity{}, err
	}
	return id, nil
}

func checkBuildID(id string) error {
	if _, err := hex.DecodeString(id); err != nil {
		return fmt.Errorf("build id %q is not hex: %w", id, err)
	}
	return nil
}

// Kernel is a simulated kernel whose state lives in a folder. It holds no
// state of its own beyond a cache of the last state it decoded, used only
// while the file is the very one it decoded: any number of Kernel values,
// in any number of processes, opened on one folder are one kernel. Its
// methods are safe for concurrent use.
type Kernel struct {
	dir   string
	mu    sync.Mutex
	cache struct {
		fi os.FileInfo
		s  *state // never changed once cached
	}
}

var _ kmod.Kernel = (*Kernel)(nil)

// Init makes dir a freshly booted simulated kernel with identity c,
// creating dir if needed. Whatever kernel was in dir before is gone (its
// faults stay: see SetFaults).
func Init(dir string, c Config) error {
	id, err := c.identity()
	if err != nil {
		return fmt.Errorf("sim: init %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sim: init: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("sim: init %s: %w", dir, err)
	}
	defer unlock()
	if err := writeState(dir, newState(id, time.Now())); err != nil {
		return fmt.Errorf("sim: init %s: %w", dir, err)
	}
	return nil
}

// Open opens the simulated kernel in dir; when dir holds none yet, it
// makes one as Init(dir, Config{}) would.
func Open(dir string) (*Kernel, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sim: open: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sim: open %s: %w", dir, err)
	}
	defer unlock()
	_, err = readState(dir)
	if errors.Is(err, fs.ErrNotExist) {
		id, _ := Config{}.identity() // the defaults are valid
		err = writeState(dir, newState(id, time.Now()))
	}
	if err != nil {
		return nil, fmt.Errorf("sim: open %s: %w", dir, err)
	}
	return &Kernel{dir: dir}, nil
}

// Reboot simulates a reboot of the kernel in dir: every module and patch
// is gone, taint is cleared and the log starts again, its sequence
// numbers continuing from before (so a cursor from before the reboot
// reads everything after it). A newBuildID other than "" boots another
// build of the kernel (same release); faults stay.
func Reboot(dir string, newBuildID string) error {
	if newBuildID != "" {
		if err := checkBuildID(newBuildID); err != nil {
			return fmt.Errorf("sim: reboot %s: %w", dir, err)
		}
	}
	k := &Kernel{dir: dir}
	return k.do("reboot", func(s *state, now time.Time) error {
		if newBuildID != "" {
			s.Identity.BuildID = newBuildID
		}
		s.boot(now)
		return nil
	})
}

// Dir returns the folder the kernel lives in.
func (k *Kernel) Dir() string { return k.dir }

// do runs one operation: under the lock, on the state as time has left
// it, writing the state back when it changed (also when fn fails: a
// refused operation may still have logged or tainted).
func (k *Kernel) do(op string, fn func(s *state, now time.Time) error) error {
	unlock, err := lockDir(k.dir)
	if err != nil {
		return fmt.Errorf("sim: %s: %w", op, err)
	}
	defer unlock()
	s, err := readState(k.dir)
	if err != nil {
		return fmt.Errorf("sim: %s: %w", op, err)
	}
	now := time.Now()
	s.settle(now)
	opErr := fn(s, now)
	if s.dirty {
		if err := writeState(k.dir, s); err != nil {
			return fmt.Errorf("sim: %s: %w", op, errors.Join(opErr, err))
		}
	}
	if opErr != nil {
		return fmt.Errorf("sim: %s: %w", op, opErr)
	}
	return nil
}

// read runs a read-only operation. Reads are most of what the agent and
// its metrics do, and decoding the state is most of their cost, so a read
// reuses the state decoded last time when kernel.json is the same file
// (every write replaces it with a new one) and no transition is running
// (time may complete one: that is a write). fn must not change s.
func (k *Kernel) read(op string, fn func(s *state) error) error {
	s, err := k.cached()
	if err != nil {
		return fmt.Errorf("sim: %s: %w", op, err)
	}
	if s == nil {
		// A transition is running; time may have completed it, which is
		// a write: judge it as writes do.
		return k.do(op, func(s *state, _ time.Time) error { return fn(s) })
	}
	if err := fn(s); err != nil {
		return fmt.Errorf("sim: %s: %w", op, err)
	}
	return nil
}

// cached returns the current state for reading, decoded again only when
// kernel.json changed, or nil when a transition is running.
func (k *Kernel) cached() (*state, error) {
	unlock, err := lockDir(k.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	fi, err := os.Stat(filepath.Join(k.dir, stateFile))
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cache.s != nil && sameFile(k.cache.fi, fi) {
		return k.cache.s, nil
	}
	s, err := readState(k.dir)
	if err != nil {
		return nil, err
	}
	if s.inTransition() != nil {
		return nil, nil
	}
	k.cache.fi, k.cache.s = fi, s
	return s, nil
}

// sameFile says two stats are of one version of a file: the same inode,
// size and modification time.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// faults reads the current faults; the caller holds the lock.
func (k *Kernel) faults() (Faults, error) {
	return readFaults(k.dir)
}

// Identity says which kernel this is; Simulated is always true.
func (k *Kernel) Identity() (kmod.Identity, error) {
	var id kmod.Identity
	err := k.read("identity", func(s *state) error {
		id = s.Identity
		return nil
	})
	id.Simulated = true
	return id, err
}

// Livepatches lists the patches that are enabled or in a transition,
// oldest first.
func (k *Kernel) Livepatches() ([]kmod.Livepatch, error) {
	var out []kmod.Livepatch
	err := k.read("list livepatches", func(s *state) error {
		if !s.Identity.Livepatch {
			return kmod.ErrNoLivepatch
		}
		out = make([]kmod.Livepatch, 0, len(s.Patches))
		for i, p := range s.Patches {
			replace := p.Replace
			out = append(out, kmod.Livepatch{
				Name:       p.Name,
				Enabled:    p.Enabled,
				Transition: p.Transition != nil,
				Replace:    &replace,
				StackOrder: i + 1,
				Objects:    []kmod.LivepatchObject{{Name: "vmlinux", Patched: p.Patched}},
			})
		}
		return nil
	})
	return out, err
}

// Modules lists the loaded modules in load order. A livepatch module is
// held (Refs 1) while its patch is listed.
func (k *Kernel) Modules() ([]kmod.Module, error) {
	var out []kmod.Module
	err := k.read("list modules", func(s *state) error {
		out = make([]kmod.Module, 0, len(s.Modules))
		for _, m := range s.Modules {
			refs := 0
			if s.patch(m.Name) != nil {
				refs = 1
			}
			out = append(out, kmod.Module{
				Name:    m.Name,
				Size:    m.Size,
				Refs:    refs,
				State:   "Live",
				Taints:  m.Taints,
				Address: fmt.Sprintf("0x%016x", m.Addr),
			})
		}
		return nil
	})
	return out, err
}

// Taint returns the kernel's taint flags.
func (k *Kernel) Taint() (kmod.Taint, error) {
	var t kmod.Taint
	err := k.read("read taint", func(s *state) error {
		t = s.Taint
		return nil
	})
	return t, err
}

// Log returns the records after cursor and the cursor to pass next time.
func (k *Kernel) Log(cursor uint64) ([]kmod.LogRecord, uint64, error) {
	var out []kmod.LogRecord
	next := cursor
	err := k.read("read log", func(s *state) error {
		for _, r := range s.Log {
			if r.Seq > cursor {
				out = append(out, r)
				next = r.Seq
			}
		}
		return nil
	})
	return out, next, err
}

// Load loads the livepatch module in f, as finit_module would: it reads
// the whole file from its start (whatever f's offset), checks it as the
// kernel does, and runs its init, which enables the patch and starts the
// enable transition. See the package documentation for the refusals.
//
// The module is registered under the name in its .modinfo. When that is
// not spec.Name, Load takes the module out again (reversing or disabling
// its patch at once, then unloading it) and returns an error wrapping
// kmod.ErrSpecMismatch; the taint and log it caused remain, and an
// atomic-replace patch that had already completed has replaced the older
// patches, as on a real kernel. The sim cannot read a module's replace
// flag, so it takes spec.Replace as the module's.
func (k *Kernel) Load(ctx context.Context, f *os.File, spec kmod.LoadSpec) error {
	op := "load " + spec.Name
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sim: %s: %w", op, err)
	}
	data, err := readModule(f)
	if err != nil {
		return fmt.Errorf("sim: %s: %w", op, err)
	}
	info, infoErr := kmod.ReadModInfo(data)
	faultKey := AnyModule
	if infoErr == nil {
		faultKey = info.Name
	}
	return k.do(op, func(s *state, now time.Time) error {
		faults, err := k.faults()
		if err != nil {
			return err
		}
		fault := faults.For(faultKey)
		if fault.LoadErrno != "" {
			return fmt.Errorf("%w (injected fault %s)", LoadErrnos[fault.LoadErrno], fault.LoadErrno)
		}
		if !s.Identity.Livepatch {
			return kmod.ErrNoLivepatch
		}
		if infoErr != nil {
			return fmt.Errorf("%w: %w", kmod.ErrWrongKernel, infoErr)
		}
		name := info.Name
		if err := info.RequireLivepatch(); err != nil {
			return fmt.Errorf("%w: %w", kmod.ErrWrongKernel, err)
		}
		if info.Release != s.Identity.Release {
			s.logf(now, prioErr, "%s: version magic '%s' should be '%s'", name, info.Vermagic, s.Identity.Release)
			return fmt.Errorf("%w: module %s is for %q, kernel is %q", kmod.ErrWrongKernel, name, info.Release, s.Identity.Release)
		}
		if info.Arch != s.Identity.Arch {
			return fmt.Errorf("%w: module %s is for %s, kernel is %s", kmod.ErrWrongKernel, name, info.Arch, s.Identity.Arch)
		}
		if s.module(name) != nil {
			return fmt.Errorf("%w: %s", kmod.ErrAlreadyLoaded, name)
		}
		if p := s.inTransition(); p != nil {
			return fmt.Errorf("%w: livepatch %s is in transition", kmod.ErrBusy, p.Name)
		}

		s.insert(name, info, int64(len(data)), spec.Replace, fault, now)
		if fault.OopsAfterLoad {
			s.oops(name, info, fault.Oops, now)
		}
		if name != spec.Name {
			s.takeOut(name, now)
			return fmt.Errorf("%w: the module loaded as %q, not %q; unloaded it", kmod.ErrSpecMismatch, name, spec.Name)
		}
		return nil
	})
}

// readModule reads a module file from its start, as finit_module does,
// bounded by kmod.MaxModuleSize.
func readModule(f *os.File) ([]byte, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, kmod.MaxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	if len(data) > kmod.MaxModuleSize {
		return nil, fmt.Errorf("read module: %w: %w: larger than %d bytes", kmod.ErrWrongKernel, kmod.ErrTooLarge, kmod.MaxModuleSize)
	}
	return data, nil
}

// insert adds a checked livepatch module and runs its init.
func (s *state) insert(name string, info *kmod.ModInfo, size int64, replace bool, fault Fault, now time.Time) {
	s.taint(now, taintOOT, prioWarn, name+": loading out-of-tree module taints kernel.")
	s.taint(now, taintUnsigned, prioNotice, name+": module verification failed: signature and/or required key missing - tainting kernel")
	s.taint(now, kmod.TaintLivepatch, prioNotice, name+": tainting kernel with TAINT_LIVEPATCH")
	size = max((size+0xfff)&^0xfff, 0x1000)
	s.Modules = append(s.Modules, module{
		Name:      name,
		Size:      size,
		Addr:      s.NextAddr,
		Taints:    "(OEK)",
		Functions: info.Functions,
	})
	s.NextAddr += uint64(size)
	s.logf(now, prioNotice, "livepatch: enabling patch '%s'", name)
	s.Patches = append(s.Patches, patch{Name: name, Enabled: true, Replace: replace, Patched: true})
	s.startTransition(&s.Patches[len(s.Patches)-1], fault, now)
}

// takeOut removes a module that was just loaded: its patch is reversed
// or disabled at once, then the module is unloaded.
func (s *state) takeOut(name string, now time.Time) {
	if p := s.patch(name); p != nil {
		if p.Transition != nil {
			s.reverse(p, now)
		} else {
			p.Enabled = false
			s.logf(now, prioNotice, "livepatch: '%s': starting unpatching transition", name)
			s.complete(name, now)
		}
	}
	s.removeModule(name)
}

// oops writes the log records and taint of a crash in module name.
func (s *state) oops(name string, info *kmod.ModInfo, kind string, now time.Time) {
	fn := "cmdline_proc_show"
	if len(info.Functions) > 0 {
		fn = info.Functions[0]
	}
	switch kind {
	case "bug":
		s.logf(now, prioAlert, "BUG: kernel NULL pointer dereference, address: 0000000000000008")
		s.Taint |= taintDie
	case "warn":
		s.logf(now, prioWarn, "WARNING: CPU: 0 PID: %d at %s.c:42 livepatch_%s+0x11/0x20 [%s]", stuckTasks[0].PID, name, fn, name)
		s.Taint |= taintWarn
	default:
		s.logf(now, prioEmerg, "Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] PREEMPT SMP NOPTI")
		s.Taint |= taintDie
	}
	s.logf(now, prioWarn, "RIP: 0010:livepatch_%s+0x11/0x20 [%s]", fn, name)
	s.logf(now, prioWarn, "Modules linked in: %s(OEK)", name)
}

// WaitTransition waits until the patch named name is not in a transition,
// polling every t.Poll. After t.Stall it signals the blocking tasks
// (which completes a transition whose fault says CompleteOnSignal); after
// t.AfterSignal more it reverses the transition, unloads the module when
// the patch was being enabled, and returns a *kmod.TransitionError. A
// patch that is not listed but whose module is loaded is disabled, so not
// in a transition.
func (k *Kernel) WaitTransition(ctx context.Context, name string, t kmod.Timeouts) error {
	t = t.WithDefaults()
	start := time.Now()
	signalled := false
	for {
		var (
			done    bool
			stuck   *kmod.TransitionError
			elapsed time.Duration
		)
		err := k.do("wait for "+name, func(s *state, now time.Time) error {
			if !s.Identity.Livepatch {
				return kmod.ErrNoLivepatch
			}
			p := s.patch(name)
			if p == nil {
				if s.module(name) == nil {
					return fmt.Errorf("%w: %s", kmod.ErrNoSuchPatch, name)
				}
				done = true
				return nil
			}
			if p.Transition == nil {
				done = true
				return nil
			}
			elapsed = now.Sub(start)
			if !signalled && elapsed >= t.Stall {
				signalled = true
				s.logf(now, prioNotice, "livepatch: signaling remaining tasks")
				p.Transition.Signalled = now
				if _, ok := p.Transition.done(now); ok {
					s.complete(name, now)
					done = true
					return nil
				}
			}
			if signalled && elapsed >= t.Stall+t.AfterSignal {
				stuck = &kmod.TransitionError{
					Patch:    name,
					Enabling: p.Enabled,
					Waited:   elapsed,
					Blockers: append([]kmod.Task(nil), stuckTasks...),
				}
				s.reverse(p, now)
			}
			return nil
		})
		switch {
		case err != nil:
			return err
		case done:
			return nil
		case stuck != nil:
			if stuck.Enabling {
				stuck.Err = k.Unload(ctx, name)
			}
			stuck.Reverted = stuck.Err == nil
			return stuck
		}
		timer := time.NewTimer(t.Poll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("sim: wait for %s: %w", name, ctx.Err())
		case <-timer.C:
		}
	}
}

// Disable starts disabling the patch named name. Disabling a patch during
// its own enable transition reverses that transition (at once);
// disabling one that is already being disabled does nothing (Linux
// answers EINVAL). Another patch's transition makes it fail with
// kmod.ErrBusy; a patch that is not listed, with kmod.ErrNoSuchPatch.
func (k *Kernel) Disable(ctx context.Context, name string) error {
	op := "disable " + name
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sim: %s: %w", op, err)
	}
	return k.do(op, func(s *state, now time.Time) error {
		if !s.Identity.Livepatch {
			return kmod.ErrNoLivepatch
		}
		p := s.patch(name)
		if p == nil {
			if s.module(name) != nil {
				return fmt.Errorf("%w: %s is disabled (its module is still loaded)", kmod.ErrNoSuchPatch, name)
			}
			return fmt.Errorf("%w: %s", kmod.ErrNoSuchPatch, name)
		}
		if p.Transition != nil {
			if p.Enabled {
				s.reverse(p, now)
			}
			return nil
		}
		if other := s.inTransition(); other != nil {
			return fmt.Errorf("%w: livepatch %s is in transition", kmod.ErrBusy, other.Name)
		}
		faults, err := k.faults()
		if err != nil {
			return err
		}
		p.Enabled = false
		s.startTransition(p, faults.For(name), now)
		return nil
	})
}

// Unload removes the module named name, as delete_module would. A module
// whose patch is enabled fails at once with kmod.ErrBusy; EBUSY that may
// pass (a disable transition running, an injected Fault.UnloadBusy) is
// retried up to UnloadAttempts times.
func (k *Kernel) Unload(ctx context.Context, name string) error {
	for attempt := 1; ; attempt++ {
		retry := false
		err := k.do("unload "+name, func(s *state, _ time.Time) error {
			m := s.module(name)
			if m == nil {
				return fmt.Errorf("%w: %s", kmod.ErrNotLoaded, name)
			}
			if p := s.patch(name); p != nil {
				if p.Transition == nil {
					return fmt.Errorf("%w: livepatch %s is enabled; disable it first", kmod.ErrBusy, name)
				}
				retry = true
				return fmt.Errorf("%w: livepatch %s is in transition", kmod.ErrBusy, name)
			}
			faults, err := k.faults()
			if err != nil {
				return err
			}
			if m.BusyFailures < faults.For(name).UnloadBusy {
				m.BusyFailures++
				s.dirty = true
				retry = true
				return fmt.Errorf("%w (injected fault %d of %d)", kmod.ErrBusy, m.BusyFailures, faults.For(name).UnloadBusy)
			}
			s.removeModule(name)
			return nil
		})
		if err == nil || !retry {
			return err
		}
		if attempt >= UnloadAttempts {
			return fmt.Errorf("%w; gave up after %d attempts", err, attempt)
		}
		timer := time.NewTimer(unloadRetryDelay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("sim: unload %s: %w (last attempt: %w)", name, ctx.Err(), err)
		case <-timer.C:
		}
	}
}

// ErrHealthFault is the failure an injected health fault stands for: a
// failing operator health command.
var ErrHealthFault = errors.New("health command failed: injected fault of the SIMULATED kernel")

// HealthCheck is a health check for the agent (its Options.KernelHealth):
// it fails with ErrHealthFault while HealthFault reports a fault.
func (k *Kernel) HealthCheck() error {
	if k.HealthFault() {
		return ErrHealthFault
	}
	return nil
}

// HealthFault reports whether an injected fault says the machine is
// unhealthy: Fault.HealthFail under "*", or for a loaded module. It fails
// closed: when the faults or the state cannot be read, it reports a
// fault.
func (k *Kernel) HealthFault() bool {
	fault := true
	err := k.do("check health fault", func(s *state, _ time.Time) error {
		faults, err := k.faults()
		if err != nil {
			return err
		}
		fault = faults[AnyModule].HealthFail
		for _, m := range s.Modules {
			fault = fault || faults.For(m.Name).HealthFail
		}
		return nil
	})
	return fault || err != nil
}
