package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/splice"
)

func newVerifyCmd(e *env) *cobra.Command {
	var tf trustFlags
	cmd := &cobra.Command{
		Use:   "verify [--config FILE | --keyring KEYS.asc [--threshold K]] BUNDLE",
		Short: "Check a bundle's signatures, manifest and module",
		Long: `Check a bundle as an agent would before acting on it: at least K distinct
trusted keys of KEYS.asc signed its manifest (none revoked or expired, no
weak hash, no signature from the future), the manifest is valid and not
expired, the module matches the digest the manifest pins, and the module is
a livepatch module for the manifest's kernel. Exits 0 and names the signers
when all of that holds; otherwise exits 1 with one line that says why.

The trust policy is this host's: the keyring and threshold of the agent's
configuration (` + defaultConfigPath + `, or --config); --keyring and
--threshold override it.`,
		Example: `  splicefleet verify fix.splice
  splicefleet verify --keyring trusted.asc --threshold 2 fix.splice`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hp, err := loadHostPolicy(cmd, e, &tf, policyRequired)
			if err != nil {
				return err
			}
			p := hp.policy
			v, err := verifyBundle(e, args[0], p)
			if err != nil {
				return err
			}
			if _, err := checkModuleInfo(v); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			m := v.Manifest
			fmt.Fprintf(e.stdout, "OK %s: %s version %d for %s/%s, signed by %d of %d required keys:\n",
				args[0], safetext.String(m.ID), m.Version, safetext.String(m.Target.Release), safetext.String(m.Target.Arch), len(v.Signers), p.Threshold())
			for _, fpr := range v.Signers {
				k, _ := p.Keyring().Lookup(fpr)
				fmt.Fprintf(e.stdout, "  %s\n", safetext.String(fmt.Sprint(k)))
			}
			return nil
		},
	}
	tf.register(cmd, policyRequired, false)
	return cmd
}

// checkModuleInfo parses a verified bundle's module (only now: its digest
// has matched) and checks that it is the livepatch module the manifest
// describes.
func checkModuleInfo(v *splice.Verified) (*kmod.ModInfo, error) {
	info, err := kmod.ReadModInfo(v.Module)
	if err != nil {
		return nil, &splice.RejectError{Reason: splice.ErrNotLivepatch, Err: err}
	}
	if err := info.RequireLivepatch(); err != nil {
		return nil, &splice.RejectError{Reason: splice.ErrNotLivepatch, Err: err}
	}
	m := v.Manifest
	var problems []string
	if info.Name != m.Module.Name {
		problems = append(problems, fmt.Sprintf("module is named %q, manifest says %q", info.Name, m.Module.Name))
	}
	if info.Release != "" && info.Release != m.Target.Release {
		problems = append(problems, fmt.Sprintf("module was built for %s, manifest targets %s", info.Release, m.Target.Release))
	}
	if info.Arch != "" && info.Arch != m.Target.Arch {
		problems = append(problems, fmt.Sprintf("module is for %s, manifest targets %s", info.Arch, m.Target.Arch))
	}
	if len(problems) > 0 {
		return nil, &splice.RejectError{Reason: splice.ErrManifest, Err: fmt.Errorf("%s", strings.Join(problems, "; "))}
	}
	return info, nil
}
