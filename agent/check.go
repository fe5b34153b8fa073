package agent

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/splicefleet/splicefleet/internal/fileperm"
)

// CheckConfig checks a configuration and the files it names the way the
// agent reads them at start, without starting anything or changing a
// file: the keys' values, the keyring (not writable by others, readable,
// parsed, holding at least threshold keys), the gossip keys (private,
// parsed), the state directory (a folder only root or the agent's user
// may change, when it exists), and the kernel (CAP_SYS_MODULE for linux,
// the unsafe opt-in for the simulated kernel). It returns a line for each
// part that passed and every problem found; `splicefleet agent
// --check-config` prints them, and the systemd unit runs it before the
// agent, so a host whose keys are missing or misplaced fails to start
// with the reason in the journal.
func CheckConfig(cfg Config) (passed []string, problems []error) {
	return checkConfig(cfg, "")
}

// checkConfig is CheckConfig reading the process's capabilities through
// kernelRoot ("" is "/").
func checkConfig(cfg Config, kernelRoot string) (passed []string, problems []error) {
	ok := func(format string, args ...any) { passed = append(passed, fmt.Sprintf(format, args...)) }
	bad := func(err error) { problems = append(problems, err) }
	if err := cfg.Validate(); err != nil {
		bad(err)
	}
	if cfg.Keyring != "" && cfg.Threshold >= 1 {
		if p, err := loadPolicy(cfg, time.Now); err != nil {
			bad(err)
		} else {
			ok("keyring %s: %d trusted key(s), threshold %d", cfg.Keyring, p.Keyring().Len(), p.Threshold())
		}
	}
	switch {
	case cfg.UnsafeNoGossipEncryption:
		ok("gossip: UNENCRYPTED (unsafe_no_gossip_encryption)")
	case cfg.GossipKeyFile != "":
		if keys, err := ReadGossipKeys(cfg.GossipKeyFile); err != nil {
			bad(fmt.Errorf("gossip_key_file: %w (make one with `splicefleet gossip-key generate > %s`, mode 0600, the same on every host)", err, cfg.GossipKeyFile))
		} else {
			ok("gossip keys %s: %d key(s)", cfg.GossipKeyFile, len(keys))
		}
	}
	if cfg.StateDir != "" {
		switch st, err := os.Stat(cfg.StateDir); {
		case errors.Is(err, os.ErrNotExist):
			ok("state_dir %s: does not exist yet; the agent makes it, mode 0700", cfg.StateDir)
		case err != nil:
			bad(fmt.Errorf("state_dir: %w", err))
		case !st.IsDir():
			bad(fmt.Errorf("state_dir %s: not a folder", cfg.StateDir))
		default:
			if err := fileperm.CheckOwnedAndPrivate(cfg.StateDir, os.Geteuid()); err != nil {
				bad(fmt.Errorf("state_dir: %w: whoever can write it chooses what is re-applied at boot", err))
			} else {
				ok("state_dir %s", cfg.StateDir)
			}
		}
	}
	switch {
	case cfg.Kernel == "linux":
		if err := checkKernelPrivileges(cfg, kernelRoot); err != nil {
			bad(err)
		} else {
			ok("kernel: linux, with CAP_SYS_MODULE, the kernel log readable and the livepatch interface writable")
		}
	case cfg.UnsafeSimulatedKernel:
		ok("kernel: %s, the SIMULATED kernel (unsafe_simulated_kernel): it patches nothing real, and takes part only in plans with allow_simulated", cfg.Kernel)
	}
	return passed, problems
}
