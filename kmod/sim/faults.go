package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/splicefleet/splicefleet/kmod"
)

// Faults are injected faults, by module name; the entry "*" applies to a
// module without an entry of its own (an entry replaces "*" as a whole,
// it is not merged with it). They live in faults.json in the kernel's
// folder, so a test or another process can change them while a kernel is
// in use; each operation reads them afresh. No faults is a healthy kernel
// whose transitions complete at once.
type Faults map[string]Fault

// AnyModule is the key of the Faults entry that applies to every module
// without one of its own.
const AnyModule = "*"

// Fault is what goes wrong for one module.
type Fault struct {
	// LoadErrno makes Load fail as finit_module would with this errno:
	// "EEXIST", "ENOEXEC", "EKEYREJECTED", "EPERM", "EBUSY" or "ENOSYS"
	// (see LoadErrnos). Nothing is loaded.
	LoadErrno string `json:"load_errno,omitempty"`
	// TransitionMillis is how long the module's enable and disable
	// transitions take, in milliseconds; 0 completes them at once.
	TransitionMillis int `json:"transition_millis,omitempty"`
	// Never makes the transitions never complete on their own.
	Never bool `json:"never,omitempty"`
	// CompleteOnSignal completes a transition as soon as its blocking
	// tasks are signalled (WaitTransition does that after Timeouts.Stall).
	CompleteOnSignal bool `json:"complete_on_signal,omitempty"`
	// OopsAfterLoad makes loading the module crash something: a log
	// record of kind Oops follows the load, with its taint.
	OopsAfterLoad bool `json:"oops_after_load,omitempty"`
	// Oops is the kind of record OopsAfterLoad writes: "oops" (the
	// default: "Oops: general protection fault", taints D), "bug" ("BUG:",
	// taints D) or "warn" ("WARNING:", taints W).
	Oops string `json:"oops,omitempty"`
	// UnloadBusy is how many times unloading the module fails with EBUSY
	// before it succeeds. Each attempt counts, including the ones Unload
	// retries by itself (see UnloadAttempts).
	UnloadBusy int `json:"unload_busy,omitempty"`
	// HealthFail makes HealthFault report a fault while the module is
	// loaded (under "*": always).
	HealthFail bool `json:"health_fail,omitempty"`
}

// LoadErrnos maps the names Fault.LoadErrno accepts to the errors Load
// then returns.
var LoadErrnos = map[string]error{
	"EEXIST":       kmod.ErrAlreadyLoaded,
	"ENOEXEC":      kmod.ErrWrongKernel,
	"EKEYREJECTED": kmod.ErrKeyRejected,
	"EPERM":        kmod.ErrNotPermitted,
	"EBUSY":        kmod.ErrBusy,
	"ENOSYS":       kmod.ErrNoSyscall,
}

// oopsKinds are the kinds Fault.Oops accepts ("" is "oops").
var oopsKinds = []string{"", "oops", "bug", "warn"}

// For returns the fault of module name: its own entry, else "*".
func (faults Faults) For(name string) Fault {
	if f, ok := faults[name]; ok {
		return f
	}
	return faults[AnyModule]
}

// Validate checks every entry, so a typo fails where it is written
// instead of silently injecting nothing.
func (faults Faults) Validate() error {
	for name, f := range faults {
		if name == "" {
			return errors.New("faults: empty module name (use \"*\" for every module)")
		}
		if _, ok := LoadErrnos[f.LoadErrno]; f.LoadErrno != "" && !ok {
			return fmt.Errorf("faults: %s: unknown load_errno %q", name, f.LoadErrno)
		}
		if !slices.Contains(oopsKinds, f.Oops) {
			return fmt.Errorf("faults: %s: unknown oops kind %q (want oops, bug or warn)", name, f.Oops)
		}
		if f.TransitionMillis < 0 || f.UnloadBusy < 0 {
			return fmt.Errorf("faults: %s: negative transition_millis or unload_busy", name)
		}
	}
	return nil
}

// SetFaults replaces the faults of the simulated kernel in dir. It takes
// the kernel's lock, so it never interleaves with an operation.
func SetFaults(dir string, faults Faults) error {
	if err := faults.Validate(); err != nil {
		return fmt.Errorf("sim: set faults: %w", err)
	}
	data, err := json.MarshalIndent(faults, "", "\t")
	if err != nil {
		return fmt.Errorf("sim: set faults: encode: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("sim: set faults: %w", err)
	}
	defer unlock()
	if err := writeAtomic(dir, faultsFile, append(data, '\n')); err != nil {
		return fmt.Errorf("sim: set faults: %w", err)
	}
	return nil
}

// ReadFaults returns the faults of the simulated kernel in dir; none when
// faults.json does not exist.
func ReadFaults(dir string) (Faults, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sim: read faults: %w", err)
	}
	defer unlock()
	faults, err := readFaults(dir)
	if err != nil {
		return nil, fmt.Errorf("sim: read faults: %w", err)
	}
	return faults, nil
}

// readFaults reads faults.json strictly; the caller holds the lock.
func readFaults(dir string) (Faults, error) {
	data, err := readBounded(filepath.Join(dir, faultsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Faults{}, nil
	}
	if err != nil {
		return nil, err
	}
	var f Faults
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode %s: %w", faultsFile, err)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", faultsFile, err)
	}
	if f == nil {
		f = Faults{}
	}
	return f, nil
}
