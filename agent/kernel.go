package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/splice"
)

// DefaultStateDir is where a host keeps its journal and stored bundles.
const DefaultStateDir = "/var/lib/splicefleet"

// HostKernel adapts a kmod.Kernel to splice.Kernel.
type HostKernel struct {
	k         kmod.Kernel
	simulated bool
	// Timeouts bound livepatch transitions.
	Timeouts kmod.Timeouts
	// OnTransition, when set, hears of every transition waited for: how
	// long it took, and its error (a *kmod.TransitionError when it stalled).
	OnTransition func(d time.Duration, err error)
}

var _ splice.Kernel = (*HostKernel)(nil)

// kernelFor is the kernel an agent patches: the one its caller opened
// (Options.Kernel), or this machine's when the configuration says
// "linux" and the caller opened none. Only the caller (cmd/splicefleet)
// opens the simulated kernel: the agent does not link it. A
// configuration naming "sim:DIR" marks the kernel simulated, which its
// tags then say (see rollout's allow_simulated).
func kernelFor(cfg Config, given kmod.Kernel, logger *slog.Logger) (*HostKernel, error) {
	simulated := strings.HasPrefix(cfg.Kernel, "sim:")
	if given != nil {
		return NewHostKernel(given, simulated), nil
	}
	if cfg.Kernel != "linux" {
		return nil, fmt.Errorf("kernel %q: the caller opens the simulated kernel and passes it in Options.Kernel (splicefleet agent does)", cfg.Kernel)
	}
	k, err := kmod.NewLinux("/", kmod.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	return NewHostKernel(k, false), nil
}

// ErrNoCapSysModule refuses kernel: linux to an agent that cannot load
// modules.
var ErrNoCapSysModule = kmod.ErrNoCapSysModule

// checkKernelPrivileges refuses kernel: linux without CAP_SYS_MODULE in
// the effective set, or without access to the kernel log and the
// livepatch interface (a sandbox set too tight), read through root (""
// is "/"): the agent's first apply would fail, and that failure, signed
// and gossiped, would halt the rollout on every host.
func checkKernelPrivileges(cfg Config, root string) error {
	if cfg.Kernel != "linux" {
		return nil
	}
	fs, err := kmod.NewFS(root)
	if err == nil {
		err = fs.CheckCapSysModule()
	}
	if err != nil {
		return fmt.Errorf("kernel: linux: %w; the agent loads and unloads livepatch modules and needs CAP_SYS_MODULE: run it as root (the systemd unit does). Without it its first apply would fail, and the failure would halt the rollout across the fleet", err)
	}
	if err := fs.CheckKernelAccess(); err != nil {
		return fmt.Errorf("kernel: linux: %w; every apply reads the kernel log and an undo writes the livepatch interface: a sandbox must leave /dev/kmsg readable (CAP_SYSLOG, no ProtectKernelLogs= or PrivateDevices=) and /sys/kernel/livepatch writable. Without them the first apply would fail, and the failure would halt the rollout across the fleet", err)
	}
	return nil
}

// NewHostKernel wraps a kmod.Kernel; simulated says it is the simulated
// kernel, which everything that prints its state then says.
func NewHostKernel(k kmod.Kernel, simulated bool) *HostKernel {
	return &HostKernel{k: k, simulated: simulated, Timeouts: kmod.DefaultTimeouts}
}

// Backend returns the kmod kernel behind the adapter.
func (a *HostKernel) Backend() kmod.Kernel { return a.k }

// Note is appended to messages about kernel actions: it says when the
// kernel is the simulated one.
func (a *HostKernel) Note() string {
	if a.simulated {
		return " [SIMULATED kernel]"
	}
	return ""
}

// Info implements splice.Kernel.
func (a *HostKernel) Info() (splice.KernelInfo, error) {
	id, err := a.k.Identity()
	if err != nil {
		return splice.KernelInfo{}, err
	}
	return splice.KernelInfo{Release: id.Release, Arch: id.Arch, BuildID: id.BuildID, BootID: id.BootID,
		Livepatch: id.Livepatch, Simulated: id.Simulated}, nil
}

// Patches implements splice.Kernel.
func (a *HostKernel) Patches() ([]splice.KernelPatch, error) {
	lps, err := a.k.Livepatches()
	if errors.Is(err, kmod.ErrNoLivepatch) || errors.Is(err, os.ErrNotExist) {
		// No livepatch support: no patches. Apply says why it refuses.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]splice.KernelPatch, 0, len(lps))
	for _, lp := range lps {
		kp := splice.KernelPatch{Name: lp.Name, Enabled: lp.Enabled, Transition: lp.Transition, Replace: lp.Replace, StackOrder: lp.StackOrder}
		for _, o := range lp.Objects {
			kp.Objects = append(kp.Objects, splice.KernelObject{Name: o.Name, Patched: o.Patched})
		}
		out = append(out, kp)
	}
	return out, nil
}

// Modules implements splice.Kernel.
func (a *HostKernel) Modules() ([]string, error) {
	mods, err := a.k.Modules()
	if errors.Is(err, os.ErrNotExist) {
		// A kernel built without module support has no /proc/modules (and
		// no livepatch either; apply says so).
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(mods))
	for _, m := range mods {
		names = append(names, m.Name)
	}
	return names, nil
}

// Load implements splice.Kernel.
func (a *HostKernel) Load(ctx context.Context, f *os.File, name string, replace bool) error {
	return a.k.Load(ctx, f, kmod.LoadSpec{Name: name, Replace: replace})
}

// WaitTransition implements splice.Kernel.
func (a *HostKernel) WaitTransition(ctx context.Context, name string) error {
	start := time.Now()
	err := a.k.WaitTransition(ctx, name, a.Timeouts)
	if a.OnTransition != nil {
		a.OnTransition(time.Since(start), err)
	}
	return err
}

// Disable implements splice.Kernel.
func (a *HostKernel) Disable(ctx context.Context, name string) error { return a.k.Disable(ctx, name) }

// Unload implements splice.Kernel.
func (a *HostKernel) Unload(ctx context.Context, name string) error { return a.k.Unload(ctx, name) }

// InspectModule reads the facts splice checks from a verified module.
func InspectModule(module []byte) (splice.ModuleFacts, error) {
	info, err := kmod.ReadModInfo(module)
	if err != nil {
		return splice.ModuleFacts{}, err
	}
	return splice.ModuleFacts{Name: info.Name, Release: info.Release, Arch: info.Arch, Livepatch: info.Livepatch, Depends: info.Depends}, nil
}
