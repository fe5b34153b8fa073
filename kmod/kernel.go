package kmod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Kernel is what splicefleet needs of a kernel: its identity, its
// livepatch state, loading and unloading livepatch modules, and the
// signals that say whether it is healthy. The Linux backend ([Linux])
// implements it on the running kernel; package kmod/sim implements it as a
// test double.
type Kernel interface {
	// Identity says which kernel this is.
	Identity() (Identity, error)
	// Livepatches lists /sys/kernel/livepatch, ordered by stack order
	// (oldest first).
	Livepatches() ([]Livepatch, error)
	// Modules lists loaded modules (/proc/modules).
	Modules() ([]Module, error)
	// Taint reads the kernel's taint flags.
	Taint() (Taint, error)
	// Load loads a livepatch module from an open file (finit_module: the
	// bytes loaded are those of that file descriptor). The module's init
	// enables the patch, which starts a transition; Load returns once the
	// kernel accepted the module, and WaitTransition waits for the rest.
	// spec says what the caller verified the module to be; a kernel that
	// reports otherwise after loading is an error.
	Load(ctx context.Context, module *os.File, spec LoadSpec) error
	// WaitTransition waits until the patch named name is not in a
	// transition. When the transition stalls past the timeouts, it asks
	// the kernel to signal the blocking tasks, waits again, then reverses
	// the transition (and unloads the module when it was being enabled),
	// and returns a *TransitionError naming the tasks that blocked it. It
	// never forces a transition.
	WaitTransition(ctx context.Context, name string, t Timeouts) error
	// Disable starts disabling the patch (writes 0 to its enabled file).
	Disable(ctx context.Context, name string) error
	// Unload removes the module (delete_module), retrying EBUSY and EAGAIN a bounded
	// number of times.
	Unload(ctx context.Context, name string) error
	// Log returns kernel log records after cursor (0: from the start of
	// the buffer) without blocking, and the cursor to pass next time.
	Log(cursor uint64) ([]LogRecord, uint64, error)
}

// Identity is which kernel is running.
type Identity struct {
	Release   string `json:"release"`  // uname -r
	Arch      string `json:"arch"`     // uname -m
	BuildID   string `json:"build_id"` // GNU build id of vmlinux, hex; "" when unknown
	BootID    string `json:"boot_id"`  // /proc/sys/kernel/random/boot_id: changes at every boot
	Livepatch bool   `json:"livepatch"`
	// Simulated is true for the test double. Anything that prints kernel
	// state says so when it is set.
	Simulated bool `json:"simulated,omitempty"`
}

// Livepatch is one entry of /sys/kernel/livepatch.
type Livepatch struct {
	Name       string `json:"name"`
	Enabled    bool   `json:"enabled"`
	Transition bool   `json:"transition"`
	// Replace is the patch's atomic-replace flag, when the kernel shows it.
	Replace *bool `json:"replace,omitempty"`
	// StackOrder is the patch's position in the stack (1 is the oldest),
	// when the kernel shows it (Linux 6.7 and later); else 0.
	StackOrder int `json:"stack_order,omitempty"`
	// Objects are the patched objects: "vmlinux" or a module name.
	Objects []LivepatchObject `json:"objects,omitempty"`
}

// LivepatchObject is one object a livepatch patches.
type LivepatchObject struct {
	Name    string `json:"name"`
	Patched bool   `json:"patched"`
}

// Module is one line of /proc/modules.
type Module struct {
	Name    string   `json:"name"`
	Size    int64    `json:"size"`
	Refs    int      `json:"refs"`
	Deps    []string `json:"deps,omitempty"`
	State   string   `json:"state"` // Live, Loading, Unloading
	Taints  string   `json:"taints,omitempty"`
	Address string   `json:"-"`
}

// LoadSpec is what the caller verified a module to be.
type LoadSpec struct {
	Name    string // the module's name, as the kernel will know it
	Replace bool   // the patch is an atomic replace
}

// Timeouts bound a livepatch transition.
type Timeouts struct {
	// Stall is how long a transition may run before the kernel is asked
	// to signal the tasks blocking it (default 15 s).
	Stall time.Duration
	// AfterSignal is how long to wait after signalling before the
	// transition is reversed (default 60 s).
	AfterSignal time.Duration
	// Poll is the interval between checks (default 10 ms).
	Poll time.Duration
}

// DefaultTimeouts are the timeouts used where none are given.
var DefaultTimeouts = Timeouts{Stall: 15 * time.Second, AfterSignal: 60 * time.Second, Poll: 10 * time.Millisecond}

// WithDefaults fills zero fields from DefaultTimeouts.
func (t Timeouts) WithDefaults() Timeouts {
	if t.Stall <= 0 {
		t.Stall = DefaultTimeouts.Stall
	}
	if t.AfterSignal <= 0 {
		t.AfterSignal = DefaultTimeouts.AfterSignal
	}
	if t.Poll <= 0 {
		t.Poll = DefaultTimeouts.Poll
	}
	return t
}

// LogRecord is one kernel log record (/dev/kmsg).
type LogRecord struct {
	Seq      uint64        `json:"seq"`
	Priority int           `json:"priority"` // syslog level, 0 (emerg) .. 7 (debug)
	Time     time.Duration `json:"time"`     // since boot
	Message  string        `json:"message"`
}

// Problem classifies a log record as a health problem: "oops", "bug",
// "warn", "livepatch" (a livepatch error), or "" when it is none.
func (r LogRecord) Problem() string {
	m := r.Message
	switch {
	case strings.Contains(m, "Oops:") || strings.HasPrefix(m, "Oops") || strings.Contains(m, "Kernel panic"):
		return "oops"
	case strings.HasPrefix(m, "BUG:") || strings.HasPrefix(m, "kernel BUG at"):
		return "bug"
	case strings.HasPrefix(m, "WARNING:") || strings.HasPrefix(m, "------------[ cut here ]------------"):
		return "warn"
	case strings.HasPrefix(m, "livepatch:") && r.Priority <= 3:
		return "livepatch"
	}
	return ""
}

// Errors a Kernel returns, for callers to test with errors.Is. Messages
// say what a user can do about them.
var (
	ErrNotSupported    = errors.New("not supported on this system")
	ErrNoLivepatch     = errors.New("this kernel has no livepatch support (no /sys/kernel/livepatch; needs CONFIG_LIVEPATCH)")
	ErrAlreadyLoaded   = errors.New("module is already loaded (EEXIST)")
	ErrWrongKernel     = errors.New("the kernel refused the module as built for another kernel (ENOEXEC: vermagic or symbol versions differ)")
	ErrKeyRejected     = errors.New("the kernel requires signed modules and refused this one (EKEYREJECTED: module.sig_enforce or lockdown)")
	ErrNotPermitted    = errors.New("not permitted (EPERM: needs root with CAP_SYS_MODULE, or the kernel is locked down)")
	ErrBusy            = errors.New("module is busy (EBUSY)")
	ErrInUse           = errors.New("module is in use (EAGAIN: a reference is still held, as a disabled livepatch holds one until the kernel frees it)")
	ErrNoSyscall       = errors.New("the kernel does not provide module loading (ENOSYS)")
	ErrNotLoaded       = errors.New("module is not loaded")
	ErrNoSuchPatch     = errors.New("no such livepatch")
	ErrSpecMismatch    = errors.New("the loaded patch is not what was verified")
	ErrTransitionStuck = errors.New("livepatch transition did not complete")
)

// TransitionError reports a transition that stalled and was reversed.
type TransitionError struct {
	Patch    string
	Enabling bool          // the stalled transition was enabling the patch
	Waited   time.Duration // how long it ran before it was reversed
	Blockers []Task        // tasks still on the old code
	Reverted bool          // the transition was reversed (and, when enabling, the module unloaded)
	Err      error         // what went wrong reversing, if anything
}

// Task is a task blocking a transition.
type Task struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

func (e *TransitionError) Error() string {
	dir := "disabling"
	if e.Enabling {
		dir = "enabling"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: transition did not complete in %s", dir, e.Patch, e.Waited.Round(time.Millisecond))
	if len(e.Blockers) > 0 {
		names := make([]string, 0, len(e.Blockers))
		for _, t := range e.Blockers {
			names = append(names, fmt.Sprintf("%s[%d]", t.Comm, t.PID))
		}
		fmt.Fprintf(&b, "; blocked by %s", strings.Join(names, ", "))
	}
	if e.Reverted {
		b.WriteString("; reversed")
	}
	if e.Err != nil {
		fmt.Fprintf(&b, "; reversing failed: %v", e.Err)
	}
	return b.String()
}

func (e *TransitionError) Unwrap() error { return ErrTransitionStuck }

// Taint is the kernel's taint bit mask (/proc/sys/kernel/tainted).
type Taint uint64

// taintNames are the kernel's names for taint bits (Documentation/
// admin-guide/tainted-kernels.rst), indexed by bit.
var taintNames = []string{
	0: "proprietary_module", 1: "forced_module", 2: "unsafe_smp", 3: "forced_rmmod",
	4: "machine_check", 5: "bad_page", 6: "user", 7: "die",
	8: "overridden_acpi_table", 9: "warn", 10: "crap", 11: "firmware_workaround",
	12: "oot_module", 13: "unsigned_module", 14: "soft_lockup", 15: "livepatch",
	16: "aux", 17: "randstruct", 18: "test",
}

// TaintLivepatch is the bit a loaded livepatch module sets (K).
const TaintLivepatch Taint = 1 << 15

// Names lists the set bits by name, lowest first; unknown bits as "bitN".
func (t Taint) Names() []string {
	var out []string
	for bit := 0; bit < 64; bit++ {
		if t&(1<<bit) == 0 {
			continue
		}
		if bit < len(taintNames) && taintNames[bit] != "" {
			out = append(out, taintNames[bit])
		} else {
			out = append(out, fmt.Sprintf("bit%d", bit))
		}
	}
	return out
}
