package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/kmod"
)

// sandboxCaps are the capabilities the agent keeps under systemd
// (dist/systemd/splicefleet.service, CapabilityBoundingSet=).
const sandboxCaps = "CAP_SYS_MODULE,CAP_SYSLOG,CAP_DAC_READ_SEARCH"

// newExecLimitedCmd is the lab's stand-in for the systemd unit's
// CapabilityBoundingSet= and NoNewPrivileges=, where a guest has no
// systemd: it executes a program with the bounding set cut to the
// capabilities named and no_new_privs set.
func newExecLimitedCmd(e *env) *cobra.Command {
	var keep string
	cmd := &cobra.Command{
		Use:    "exec-limited [--keep-caps CAP,...] -- PROGRAM [ARGS...]",
		Short:  "Execute a program with only the given capabilities and no_new_privs, as the systemd unit runs the agent",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var caps []uint
			for _, name := range strings.Split(keep, ",") {
				c, err := kmod.CapabilityByName(strings.TrimSpace(name))
				if err != nil {
					return err
				}
				caps = append(caps, c)
			}
			path, err := exec.LookPath(args[0])
			if err != nil {
				return err
			}
			return fmt.Errorf("exec-limited: %w", kmod.ExecLimited(path, args, os.Environ(), caps...))
		},
	}
	cmd.Flags().StringVar(&keep, "keep-caps", sandboxCaps, "capabilities to keep, comma-separated")
	return cmd
}
