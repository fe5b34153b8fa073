package splice

import (
	"context"
	"os"
)

// Kernel is what the host lifecycle needs of the running kernel. The agent
// adapts package kmod's backends (the real one and the simulated one) to
// it; tests may implement it directly.
type Kernel interface {
	// Info says which kernel is running.
	Info() (KernelInfo, error)
	// Patches lists the livepatches the kernel has, oldest first.
	Patches() ([]KernelPatch, error)
	// Modules lists the names of loaded modules.
	Modules() ([]string, error)
	// Load loads the livepatch module from the open file (what was
	// verified is what is loaded) and returns once the kernel accepted it.
	Load(ctx context.Context, module *os.File, name string, replace bool) error
	// WaitTransition waits for the patch's transition to finish; a
	// transition that stalls is reversed by the kernel layer and reported
	// as an error.
	WaitTransition(ctx context.Context, name string) error
	// Disable starts disabling a patch.
	Disable(ctx context.Context, name string) error
	// Unload removes a disabled patch's module.
	Unload(ctx context.Context, name string) error
}

// KernelInfo identifies the running kernel.
type KernelInfo struct {
	Release   string `json:"release"`
	Arch      string `json:"arch"`
	BuildID   string `json:"build_id,omitempty"`
	BootID    string `json:"boot_id,omitempty"` // changes at every boot
	Livepatch bool   `json:"livepatch"`
	Simulated bool   `json:"simulated,omitempty"` // a test double, not a real kernel
}

// KernelPatch is a livepatch as the kernel shows it.
type KernelPatch struct {
	Name       string `json:"name"`
	Enabled    bool   `json:"enabled"`
	Transition bool   `json:"transition"`
	// What the kernel shows beyond, where it does: the atomic-replace
	// flag, the position in its stack (Linux 6.7 and later; 1 is the
	// oldest), and each patched object with whether it is patched now.
	Replace    *bool          `json:"replace,omitempty"`
	StackOrder int            `json:"stack_order,omitempty"`
	Objects    []KernelObject `json:"objects,omitempty"`
}

// KernelObject is one object a livepatch patches: "vmlinux" or a module.
type KernelObject struct {
	Name    string `json:"name"`
	Patched bool   `json:"patched"`
}

// ModuleFacts is what the lifecycle checks in a module's own metadata. The
// agent fills it from kmod.ReadModInfo.
type ModuleFacts struct {
	Name      string
	Release   string // from vermagic
	Arch      string
	Livepatch bool
	Depends   []string
}

// Inspector reads a verified module's metadata.
type Inspector func(module []byte) (ModuleFacts, error)
