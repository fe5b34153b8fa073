package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/splice"
)

// hostFlags are the flags every host verb shares. The host's trust
// policy, state directory and kernel are the agent's configuration's
// (hostpolicy.go); the flags override it.
type hostFlags struct {
	stateDir     string
	kernel       string
	healthWindow time.Duration
	stall        time.Duration
	afterSignal  time.Duration
	// need is what the verb needs of the trust policy (zero: none).
	need policyNeed
	// transitions is set by the verbs that load or unload livepatches
	// (apply, undo, boot), which take the transition timeouts; view
	// only reads.
	transitions bool
	trust       trustFlags
	cmd         *cobra.Command
	// host is the policy open resolved.
	host *hostPolicy
}

func (f *hostFlags) register(cmd *cobra.Command) {
	f.cmd = cmd
	f.trust.register(cmd, f.need, true)
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "the host's state directory (journal, lock, stored bundles) (default: the configuration's state_dir, "+agent.DefaultStateDir+")")
	cmd.Flags().StringVar(&f.kernel, "kernel", "", `kernel to act on: "linux" (this machine's kernel) or "sim:DIR" (a simulated kernel kept in DIR, for tests and demos) (default: the configuration's kernel, linux)`)
	if f.transitions {
		cmd.Flags().DurationVar(&f.stall, "transition-timeout", kmod.DefaultTimeouts.Stall, "how long a livepatch transition may run before the tasks blocking it are signalled")
		cmd.Flags().DurationVar(&f.afterSignal, "signal-timeout", kmod.DefaultTimeouts.AfterSignal, "how long to wait after signalling before the transition is reversed")
	}
}

// open opens the host, holding its state directory until close.
func (f *hostFlags) open(ctx context.Context, e *env) (*splice.Host, *agent.HostKernel, error) {
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: e.logLevel(slog.LevelWarn)}))
	hp, err := loadHostPolicy(f.cmd, e, &f.trust, f.need)
	if err != nil {
		return nil, nil, err
	}
	f.host = hp
	if f.cmd.Flags().Changed("state-dir") {
		hp.cfg.StateDir = f.stateDir
	}
	if f.cmd.Flags().Changed("kernel") {
		hp.cfg.Kernel = f.kernel
	}
	k, err := openHostKernel(hp.cfg.Kernel, logger)
	if err != nil {
		return nil, nil, err
	}
	if f.transitions {
		if f.stall <= 0 || f.afterSignal <= 0 {
			return nil, nil, errors.New("--transition-timeout and --signal-timeout must be positive")
		}
		k.Timeouts.Stall, k.Timeouts.AfterSignal = f.stall, f.afterSignal
	}
	var policy splice.StoredVerifier
	if hp.policy != nil {
		policy = hp.policy
	}
	h, err := splice.OpenHost(ctx, splice.HostConfig{
		Policy:       policy,
		StateDir:     hp.cfg.StateDir,
		Kernel:       k,
		Inspect:      agent.InspectModule,
		Now:          e.now,
		Logger:       logger,
		HealthWindow: f.healthWindow,
		StepHook:     e.stepHook,
	})
	if err != nil {
		return nil, nil, err
	}
	return h, k, nil
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// withHost runs fn with the host open and its state directory locked.
// SIGINT and SIGTERM cancel fn's context, so an interrupted command stops
// between steps with its journal consistent.
func (f *hostFlags) withHost(e *env, fn func(ctx context.Context, h *splice.Host, k *agent.HostKernel) error) error {
	ctx, cancel := signalContext()
	defer cancel()
	h, k, err := f.open(ctx, e)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(ctx, h, k)
}

func newApplyCmd(e *env) *cobra.Command {
	hf := hostFlags{need: policyRequired, transitions: true}
	cmd := &cobra.Command{
		Use:   "apply [--config FILE | --keyring KEYS.asc [--threshold K]] BUNDLE",
		Short: "Verify a bundle and apply its livepatch to this host's kernel",
		Long: `Verify a bundle (signatures under the trust policy, manifest, module digest),
check that it targets this kernel (release, build id, arch, vermagic), that
it is newer than the version of its id this host runs, and that its module's
dependencies are loaded; then store it, load the module from the stored,
verified file, and wait for the livepatch transition. Every check happens
before the kernel is touched; a refusal changes nothing.

The trust policy is the agent's: the keyring and threshold of
` + defaultConfigPath + ` (or --config), so that a bundle applied by hand
meets the same k-of-n as the fleet's. --keyring and --threshold override
it, for a lab.`,
		Example: `  splicefleet apply fix.splice
  splicefleet apply -v --transition-timeout 30s fix.splice
  splicefleet apply --keyring trusted.asc --threshold 2 --kernel sim:kernel --state-dir state fix.splice`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readBundle(args[0])
			if err != nil {
				return err
			}
			return hf.withHost(e, func(ctx context.Context, h *splice.Host, k *agent.HostKernel) error {
				patch, err := h.Apply(ctx, b, hf.host.policy)
				if errors.Is(err, splice.ErrAlreadyApplied) {
					fmt.Fprintf(e.stdout, "%v: nothing to do%s\n", err, k.Note())
					return nil
				}
				if splice.IsReject(err) {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "applied %s version %d (module %s) to %s%s\n", safetext.String(patch.ID), patch.Version, safetext.String(patch.Module), patch.Kernel.Release, k.Note())
				return nil
			})
		},
	}
	hf.register(cmd)
	cmd.Flags().DurationVar(&hf.healthWindow, "health-window", 0, "keep the crash-loop guard armed this long after the apply")
	return cmd
}

func newUndoCmd(e *env) *cobra.Command {
	hf := hostFlags{need: policyOptional, transitions: true}
	var all bool
	cmd := &cobra.Command{
		Use:   "undo (ID | --all)",
		Short: "Take a patch off this host's kernel (the top of the stack, or all)",
		Long: `Disable a livepatch, wait for the kernel's transition, and unload its module.
Like Ksplice, only the patch on top of the stack can be undone; --all
unwinds the whole stack, newest first. Undoing an upgrade puts back what it
had replaced (the older version, or the patches an atomic-replace patch
superseded), so the host returns to where it was before the upgrade. What
is put back is verified first against the host's trust policy (the
agent's configuration, or --keyring), like boot's re-apply.`,
		Example: `  splicefleet undo cve-2026-1234
  splicefleet undo --all`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) || len(args) > 1 {
				return errors.New("give one patch id, or --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return hf.withHost(e, func(ctx context.Context, h *splice.Host, k *agent.HostKernel) error {
				if all {
					done, err := h.UndoAll(ctx)
					for _, p := range done {
						fmt.Fprintf(e.stdout, "undone %s version %d (module %s)%s\n", safetext.String(p.ID), p.Version, safetext.String(p.Module), k.Note())
					}
					if err == nil && len(done) == 0 {
						fmt.Fprintln(e.stdout, "nothing to undo")
					}
					return err
				}
				p, restored, err := h.Undo(ctx, args[0])
				if p != nil && (err == nil || len(restored) > 0) {
					fmt.Fprintf(e.stdout, "undone %s version %d (module %s)%s\n", safetext.String(p.ID), p.Version, safetext.String(p.Module), k.Note())
				}
				for _, q := range restored {
					fmt.Fprintf(e.stdout, "put back %s version %d (module %s), which it had replaced\n", safetext.String(q.ID), q.Version, safetext.String(q.Module))
				}
				return err
			})
		},
	}
	hf.register(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "undo every patch, newest first")
	return cmd
}

func newViewCmd(e *env) *cobra.Command {
	var hf hostFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "view [ID[@VERSION]] [--json]",
		Short: "Show this host's patches and what the kernel says of each; with ID, one patch in full",
		Long: `Show this host's patches, newest on top of the stack last, with their state,
what the kernel says of each, and why a patch failed, was reverted or
replaced.

With ID (or ID@VERSION), show that patch in full: every version of it
this host knows, newest first, with its state and the reason (the health
check that failed, the rollout halt or revoke that took it off), its
module, digests, functions, CVEs, signers and when it was applied. An ID
this host does not know exits 1.`,
		Example: `  splicefleet view
  splicefleet view cve-2026-1234
  splicefleet view cve-2026-1234@2 --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return hf.withHost(e, func(ctx context.Context, h *splice.Host, _ *agent.HostKernel) error {
				v, err := h.View()
				if err != nil {
					return err
				}
				if len(args) == 1 {
					return viewPatch(e, v, args[0], asJSON)
				}
				if asJSON {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(v)
				}
				printView(e, v)
				return nil
			})
		},
	}
	hf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printView renders the host's view. Patch ids, modules, functions and
// reasons come from bundles (files) and are escaped.
func printView(e *env, v *splice.HostView) {
	q := safetext.String
	k := v.Kernel
	kind := "kernel"
	if k.Simulated {
		kind = "SIMULATED kernel (a test double, not a real kernel)"
	}
	lp := "livepatch supported"
	if !k.Livepatch {
		lp = "NO livepatch support"
	}
	fmt.Fprintf(e.stdout, "%s %s %s build %s, %s\n", kind, k.Release, k.Arch, orDash(k.BuildID), lp)
	if len(v.Patches) == 0 {
		fmt.Fprintln(e.stdout, "no patches")
	} else {
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "STACK\tID\tVERSION\tSTATE\tMODULE\tKERNEL\tAPPLIED\tFUNCTIONS")
		for _, p := range v.Patches {
			stack := "-"
			if p.Live() {
				stack = fmt.Sprint(p.Stack)
			}
			applied := "-"
			if !p.AppliedAt.IsZero() {
				applied = p.AppliedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", stack, q(p.ID), p.Version, p.State, q(p.Module), kernelState(p), applied, q(strings.Join(p.Functions, ",")))
		}
		_ = w.Flush()
		for _, p := range v.Patches {
			if p.Reason != "" {
				fmt.Fprintf(e.stdout, "  %s version %d: %s\n", q(p.ID), p.Version, q(p.Reason))
			}
			if p.TrustNote != "" {
				fmt.Fprintf(e.stdout, "  %s version %d: WARNING: %s\n", q(p.ID), p.Version, q(p.TrustNote))
			}
		}
		for _, p := range v.Patches {
			if d := kernelDetail(p.Kernel); d != "" {
				fmt.Fprintf(e.stdout, "  kernel: %s %s\n", q(p.Module), q(d))
			}
		}
	}
	for _, f := range v.Foreign {
		fmt.Fprintf(e.stdout, "livepatch %s is loaded but not managed by splicefleet (enabled %v, in transition %v)\n", q(f.Name), f.Enabled, f.Transition)
	}
}

// kernelDetail is what the kernel shows of a patch beyond enabled and in
// transition: its stack order, its replace flag and its patched objects.
func kernelDetail(k *splice.KernelPatch) string {
	if k == nil {
		return ""
	}
	var parts []string
	if k.StackOrder > 0 {
		parts = append(parts, fmt.Sprintf("stack order %d", k.StackOrder))
	}
	if k.Replace != nil {
		parts = append(parts, fmt.Sprintf("replace %t", *k.Replace))
	}
	for _, o := range k.Objects {
		state := "not patched"
		if o.Patched {
			state = "patched"
		}
		parts = append(parts, o.Name+" "+state)
	}
	return strings.Join(parts, ", ")
}

func kernelState(p splice.PatchView) string {
	switch {
	case !p.InKernel:
		return "not loaded"
	case p.KernelTransition:
		return "in transition"
	case p.KernelEnabled:
		return "enabled"
	}
	return "disabled"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newBootCmd(e *env) *cobra.Command {
	hf := hostFlags{need: policyOptional, transitions: true}
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "Re-apply this host's patches after a reboot (run early at boot by systemd)",
		Long: `Reconcile the journal with the freshly booted kernel and re-apply, in stack
order, the patches that were applied before the reboot, when the kernel is
the same build. Patches for another build are marked not applicable; a patch
that was being applied when the host went down is not retried (the
crash-loop guard) and is reported as failed.

Every stored bundle is verified again first, against the host's trust
policy (the agent's configuration, or --keyring): a patch whose signer's
key was revoked, or that no longer meets the threshold, is not loaded and
is marked failed; one whose bundle or signatures expired after it was
applied is loaded, with a warning (docs/host.md, "Trust at boot").`,
		Example: `  splicefleet boot
  splicefleet boot -v --health-window 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return hf.withHost(e, func(ctx context.Context, h *splice.Host, k *agent.HostKernel) error {
				done, err := h.Boot(ctx)
				for _, p := range done {
					fmt.Fprintf(e.stdout, "re-applied %s version %d (module %s)%s\n", safetext.String(p.ID), p.Version, safetext.String(p.Module), k.Note())
				}
				if err == nil && len(done) == 0 {
					fmt.Fprintln(e.stdout, "nothing to re-apply")
				}
				return err
			})
		},
	}
	hf.register(cmd)
	cmd.Flags().DurationVar(&hf.healthWindow, "health-window", 0, "keep the crash-loop guard armed this long after each re-apply")
	return cmd
}
