package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/fileperm"
	"github.com/splicefleet/splicefleet/signing"
)

// defaultConfigPath is the agent's configuration, where the host verbs
// read this host's trust policy, state directory and kernel.
const defaultConfigPath = "/etc/splicefleet/agent.yaml"

// policyNeed says what a verb needs of the host's trust policy.
type policyNeed int

const (
	policyNone     policyNeed = iota // view: the state directory and kernel only
	policyOptional                   // undo, boot: loaded when configured; the host refuses a re-load without it
	policyRequired                   // apply, verify
)

// trustFlags are the flags of the verbs that read the host's policy. The
// agent's configuration gives every value; a flag overrides it, for a lab.
type trustFlags struct {
	config    string
	keyring   string
	threshold int
}

// register adds --config, and --keyring and --threshold unless the verb
// needs no policy; host says whether the verb acts on the host (its
// state_dir and kernel), so that --config says what it is read for.
func (f *trustFlags) register(cmd *cobra.Command, need policyNeed, host bool) {
	uses := "keyring and threshold"
	switch {
	case host && need == policyNone:
		uses = "state_dir and kernel"
	case host:
		uses = "keyring, threshold, state_dir and kernel"
	}
	cmd.Flags().StringVar(&f.config, "config", "", "the agent's configuration, whose "+uses+" this command uses (default $"+configEnv+", else "+defaultConfigPath+")")
	if need == policyNone {
		return
	}
	cmd.Flags().StringVar(&f.keyring, "keyring", "", "trusted public keys, instead of the configuration's keyring")
	cmd.Flags().IntVar(&f.threshold, "threshold", 1, "distinct trusted keys that must have signed, instead of the configuration's threshold")
}

// hostPolicy is this host's trust policy and where its state lives: the
// agent's configuration, with the flags given over it.
type hostPolicy struct {
	cfg agent.Config
	// policy is nil when the verb does not need one and none is
	// configured.
	policy *signing.Policy
	// from says where the policy came from, for messages.
	from string
}

// loadHostPolicy reads the agent's configuration (--config, or the
// default path when it exists), applies the flags given over it, and
// builds the trust policy the verb needs. The configuration and the
// keyring must belong to root or this user and not be writable by group
// or others. Without a configuration, a verb that needs a policy must be
// given --keyring: nothing falls back silently to a policy of its own.
func loadHostPolicy(cmd *cobra.Command, e *env, f *trustFlags, need policyNeed) (*hostPolicy, error) {
	path, explicit := f.config, cmd.Flags().Changed("config")
	if !explicit {
		if env := e.getenv(configEnv); env != "" {
			path, explicit = env, true
		} else if path = e.defaultConfig; path == "" {
			path = defaultConfigPath
		}
	}
	hp := &hostPolicy{cfg: agent.DefaultConfig(), from: path}
	raw, err := fileperm.ReadFile(path, 1<<20)
	switch {
	case err == nil:
		if hp.cfg, err = agent.DecodeConfig(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := hp.cfg.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		hp.cfg.Keyring = "" // no policy but the one the flags give
		hp.from = "flags (there is no " + path + ")"
	default:
		return nil, fmt.Errorf("the agent's configuration: %w", err)
	}
	if cmd.Flags().Changed("keyring") {
		hp.cfg.Keyring = f.keyring
		hp.from = "--keyring"
	}
	if cmd.Flags().Changed("threshold") {
		hp.cfg.Threshold = f.threshold
	}
	if need == policyNone {
		return hp, nil
	}
	if hp.cfg.Keyring == "" {
		if need == policyOptional {
			return hp, nil
		}
		return nil, fmt.Errorf("no trust policy: there is no %s, where this host's keyring and threshold are configured; give --config FILE, or --keyring KEYS.asc (and --threshold K) to use keys of your own", path)
	}
	if hp.policy, err = readPolicy(e, hp.cfg.Keyring, hp.cfg.Threshold); err != nil {
		return nil, err
	}
	return hp, nil
}

// readPolicy reads a keyring that no other user can write and builds a
// trust policy on this command's clock.
func readPolicy(e *env, keyringPath string, threshold int) (*signing.Policy, error) {
	raw, err := fileperm.ReadFile(keyringPath, signing.MaxKeyringSize)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	kr, err := signing.ReadKeyring(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyringPath, err)
	}
	now := e.now
	if now == nil {
		now = time.Now
	}
	return signing.NewPolicy(kr, threshold, signing.WithClock(now))
}
