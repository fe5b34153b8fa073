package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/kmod/sim"
)

// openKernel opens the kernel a configuration or --kernel names: "linux"
// for this machine's, or "sim:DIR" for a simulated kernel whose state
// lives in DIR (a test double for tests and demos; everything that prints
// its state says so). This is the one place the binary chooses between
// them; the agent and the host verbs get the kernel opened here. The
// backend logs to logger.
func openKernel(spec string, logger *slog.Logger) (k kmod.Kernel, simulated bool, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case spec == "linux":
		k, err := kmod.NewLinux("/", kmod.WithLogger(logger))
		return k, false, err
	case strings.HasPrefix(spec, "sim:") && len(spec) > len("sim:"):
		k, err := sim.Open(strings.TrimPrefix(spec, "sim:"))
		if err != nil {
			return nil, false, fmt.Errorf("open simulated kernel: %w", err)
		}
		return k, true, nil
	}
	return nil, false, fmt.Errorf("--kernel %q: want \"linux\" or \"sim:DIR\"", spec)
}

// openHostKernel is openKernel wrapped for the host verbs.
func openHostKernel(spec string, logger *slog.Logger) (*agent.HostKernel, error) {
	k, simulated, err := openKernel(spec, logger)
	if err != nil {
		return nil, err
	}
	return agent.NewHostKernel(k, simulated), nil
}

// agentKernel sets an agent's kernel from its configuration: this
// machine's is left to the agent; a simulated one is opened here, and its
// injected health faults fail the agent's health check.
func agentKernel(o *agent.Options, logger *slog.Logger) error {
	if o.Config.Kernel == "linux" {
		return nil
	}
	k, _, err := openKernel(o.Config.Kernel, logger)
	if err != nil {
		return err
	}
	o.Kernel = k
	if s, ok := k.(*sim.Kernel); ok {
		o.KernelHealth = s.HealthCheck
	}
	return nil
}
