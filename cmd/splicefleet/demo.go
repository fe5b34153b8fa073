package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/cmd/splicefleet/internal/demofleet"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/rollout"
)

// The demo's patches: one that is fine, and one whose canary's health
// check fails.
var (
	goodPatch = demofleet.Patch{ID: "demo-good", Version: 1, Module: "lp_demo_good", Functions: []string{"cmdline_proc_show"},
		Description: "demo: a patch that is fine"}
	badPatch = demofleet.Patch{ID: "demo-bad", Version: 1, Module: "lp_demo_bad", Functions: []string{"tcp_retransmit_timer"},
		Description: "demo: a patch that breaks its canary"}
)

// Bounds of the demo.
const (
	demoMinAgents = 3 // the seed and two canaries
	demoMaxAgents = 100
	demoCanaries  = 2
	formTimeout   = time.Minute
	actTimeout    = 2 * time.Minute
)

type demoFlags struct {
	agents int
	dir    string
	hold   bool
}

func newDemoCmd(e *env) *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo [--agents N] [--dir DIR] [--hold]",
		Short: "Run a local fleet on SIMULATED kernels: a staged rollout, then a bad patch halted on its canary and rolled back",
		Long: `Start a fleet of agents in this process on 127.0.0.1, each with its own
SIMULATED kernel (a test double: nothing touches this machine's kernel),
over real encrypted serf gossip. Then:

  1. publish a signed bundle with a signed plan (ring canary, 25%, 100%)
     and show the rollout live, stage by stage, as one agent judges it,
     beside the count of kernels running the patch;
  2. publish a second bundle whose canary fails its health check (an
     injected fault of that host's simulated kernel, which is what a
     failing health command looks like) and show the canary failing, the
     rollout halting fleet-wide and the rollback, and check that no host
     outside the canary ring applied it.

It prints where each agent's /healthz and /metrics are, the control socket
of one agent and commands to try against it from another terminal. The
demo ends on its own (with --hold, the fleet keeps running until Ctrl-C);
Ctrl-C at any point stops every agent, each leaving the cluster. Its files
(keys, the agents' state and kernels, their log) go to a temporary folder
that is removed at the end, or to --dir, which is kept.`,
		Example: `  splicefleet demo
  splicefleet demo --agents 5 --dir demo --hold`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.agents < demoMinAgents || f.agents > demoMaxAgents {
				return fmt.Errorf("--agents %d: between %d and %d", f.agents, demoMinAgents, demoMaxAgents)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// After the first Ctrl-C the demo stops cleanly; a second one
			// ends the process at once.
			go func() {
				<-ctx.Done()
				stop()
			}()
			return runDemo(ctx, e, f)
		},
	}
	cmd.Flags().IntVar(&f.agents, "agents", 20, "how many agents to run")
	cmd.Flags().StringVar(&f.dir, "dir", "", "keep the demo's files in this folder (new or empty) instead of a temporary one")
	cmd.Flags().BoolVar(&f.hold, "hold", false, "keep the fleet running after the story, until Ctrl-C")
	return cmd
}

// demo is one run of the demo command.
type demo struct {
	out   io.Writer
	live  bool // stdout is a terminal: redraw in place
	color bool
	start time.Time
	fleet *demofleet.Fleet
	judge *demofleet.Host // whose judgement of the rollouts is shown
}

func runDemo(ctx context.Context, e *env, f demoFlags) error {
	// The live view draws with escape sequences of its own: it writes to
	// stdout as given. What it shows comes from the demo's own agents.
	d := &demo{out: e.rawStdout, start: time.Now()}
	d.live = isTerminal(e.rawStdout) && e.getenv("TERM") != "dumb"
	d.color = d.live && e.getenv("NO_COLOR") == ""
	dir, temporary, err := demoDir(f.dir)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "agents.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		if temporary {
			_ = os.RemoveAll(dir)
		}
		return err
	}
	logger := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: e.logLevel(slog.LevelInfo)}))

	err = d.run(ctx, dir, f, logger)
	interrupted := ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled))
	if interrupted {
		d.say("")
		d.say("interrupted")
		err = nil
	}
	if d.fleet != nil {
		d.say("stopping %d agents (each leaves the cluster) ...", len(d.fleet.Hosts))
		t := time.Now()
		if serr := d.fleet.Stop(); serr != nil {
			err = errors.Join(err, serr)
		} else {
			d.say("stopped in %s", since(t))
		}
	}
	logFile.Close()
	switch {
	case temporary && err == nil:
		if rerr := os.RemoveAll(dir); rerr != nil {
			return rerr
		}
		d.say("removed %s", dir)
	default:
		d.say("the demo's files are in %s (agents' log: %s)", dir, filepath.Join(dir, "agents.log"))
	}
	return err
}

// demoDir makes the demo's folder: a new temporary one, or the one given,
// which must be new or empty so that no earlier state is taken up.
func demoDir(given string) (dir string, temporary bool, err error) {
	if given == "" {
		dir, err = os.MkdirTemp("", "splicefleet-demo-")
		return dir, true, err
	}
	if entries, err := os.ReadDir(given); err == nil && len(entries) > 0 {
		return "", false, fmt.Errorf("--dir %s is not empty; give a new or empty folder", given)
	}
	if err := os.MkdirAll(given, 0o700); err != nil {
		return "", false, err
	}
	abs, err := filepath.Abs(given)
	return abs, false, err
}

// run tells the story; the caller stops the fleet.
func (d *demo) run(ctx context.Context, dir string, f demoFlags, logger *slog.Logger) error {
	d.say(d.bold("splicefleet demo") + fmt.Sprintf(": %d agents in this process on 127.0.0.1, over encrypted serf gossip", f.agents))
	d.say("Every host runs a SIMULATED kernel, a test double kept in its folder: nothing here touches this machine's kernel.")

	d.section("Starting the fleet")
	t := time.Now()
	fl, err := demofleet.Start(demofleet.Options{Dir: dir, Hosts: f.agents, Canaries: demoCanaries, Logger: logger, Version: version})
	if err != nil {
		return err
	}
	d.fleet, d.judge = fl, fl.Seed()
	pub := fl.Publisher()
	d.say("publisher's signing key %s (%s), trusted by every agent: %s", pub.Fingerprint(), pub.Algorithm(), filepath.Join(dir, demofleet.SecretKeyFile))
	d.say("gossip encryption key: %s", filepath.Join(dir, demofleet.GossipKeyFile))
	fctx, cancel := context.WithTimeout(ctx, formTimeout)
	err = fl.WaitFormed(fctx)
	cancel()
	if err != nil {
		return err
	}
	d.say("cluster formed: every agent sees %d of %d alive, %s after the start", f.agents, f.agents, since(t))
	d.where(dir, f.hold)

	if err := d.goodRollout(ctx); err != nil {
		return err
	}
	if err := d.badRollout(ctx); err != nil {
		return err
	}
	d.section("The end")
	d.say("the story took %s", since(d.start))
	if f.hold {
		d.say("the fleet keeps running (--hold); try the commands above in another terminal, for example")
		d.say("  splicefleet rollout revoke %s --key %s --reason \"try it\" --control-socket %s", goodPatch.ID,
			filepath.Join(dir, demofleet.SecretKeyFile), d.judge.ControlSocket)
		d.say("which rolls the good patch back on every host. Ctrl-C stops the fleet.")
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// where prints where the agents listen and, when the fleet will still
// run after the story (--hold), what to try against them.
func (d *demo) where(dir string, hold bool) {
	d.section("Where things are")
	d.say("%-9s %-7s %-36s %s", "HOST", "RING", "HEALTH", "METRICS")
	for _, h := range d.fleet.Hosts {
		ring := h.Ring
		if ring == "" {
			ring = "-"
		}
		base := "http://" + h.Agent.HTTPAddr()
		d.say("%-9s %-7s %-36s %s", h.Name, ring, base+"/healthz", base+"/metrics")
	}
	sock := d.judge.ControlSocket
	d.say("%s is the seed (gossip at %s); its control socket: %s", d.judge.Name, d.judge.Agent.GossipAddr(), sock)
	d.say("agents' log: %s", filepath.Join(dir, "agents.log"))
	if !hold {
		d.say("The fleet stops when the story ends (about 20 s); to try commands against it, run the demo with --hold (make demo DEMO_FLAGS=--hold).")
		return
	}
	d.say("In another terminal while the fleet runs (splicefleet is bin/splicefleet after make build):")
	for _, c := range []string{
		"rollout list --control-socket " + sock,
		"rollout status " + goodPatch.ID + " --control-socket " + sock,
		"fleet status --control-socket " + sock,
		"members --control-socket " + sock,
	} {
		d.say("  splicefleet %s", c)
	}
}

// plan is the demo's rollout plan for a bundle: the canary ring, then a
// quarter of the fleet, then all of it, with short soaks. The demo's
// hosts run the simulated kernel, so the plan allows simulated hosts.
func demoPlan(id, bundle string) *rollout.Plan {
	return &rollout.Plan{ID: id, Bundle: bundle, Description: "demo: canary ring, then 25%, then everyone",
		Stages: []rollout.Stage{{Ring: "canary", Soak: 2 * time.Second}, {Percent: 25, Soak: 2 * time.Second}, {Percent: 100}},
		Gates:  rollout.Gates{HealthWindow: time.Second}, OnHalt: rollout.OnHaltRollback, AllowSimulated: true}
}

// publish builds a bundle, publishes it at the judge with its plan, and
// returns the plan's digest.
func (d *demo) publish(p demofleet.Patch) (string, *rollout.Plan, error) {
	raw, err := d.fleet.Build(p)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(d.fleet.Dir(), p.ID+".splice")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return "", nil, err
	}
	v, err := d.judge.Agent.Publish(raw)
	if err != nil {
		return "", nil, fmt.Errorf("publish %s: %w", p.ID, err)
	}
	d.say("built %s (livepatch module %s for %s, signed; %s) and published it at %s: manifest %s",
		p.ID, p.Module, sim.DefaultRelease, path, d.judge.Name, v.ManifestDigest[:12])
	plan := demoPlan(p.ID, v.ManifestDigest)
	doc, err := d.fleet.SignPlan(plan)
	if err != nil {
		return "", nil, err
	}
	st, err := d.judge.Agent.StartRollout(doc)
	if err != nil {
		return "", nil, fmt.Errorf("start rollout %s: %w", plan.ID, err)
	}
	d.say("started rollout %s with this signed plan (%s):", st.ID, st.Digest[:12])
	for line := range strings.SplitSeq(strings.TrimSpace(string(doc.Body)), "\n") {
		d.say("    %s", line)
	}
	return st.Digest, plan, nil
}

func (d *demo) goodRollout(ctx context.Context) error {
	d.section("1. A good patch, rolled out in stages")
	digest, plan, err := d.publish(goodPatch)
	if err != nil {
		return err
	}
	n := len(d.fleet.Hosts)
	st, err := d.watch(ctx, watchSpec{digest: digest, plan: plan, module: goodPatch.Module,
		over: func(st rollout.Status, running int) (bool, error) {
			if rollout.Ended(st.State) {
				return true, fmt.Errorf("the good rollout halted: %s", st.Why)
			}
			return st.State == rollout.Done && running == n, nil
		}})
	if err != nil {
		return err
	}
	last := st.Stages[len(st.Stages)-1]
	d.say("%s: %d of %d hosts healthy, and the SIMULATED kernels of %d of %d hosts run %s",
		d.green("rollout done"), last.Healthy, last.Cohort, n, n, goodPatch.Module)
	return nil
}

func (d *demo) badRollout(ctx context.Context) error {
	d.section("2. A bad patch: its canary fails the health check")
	canaries := d.fleet.Canaries()
	broken := canaries[0]
	if err := broken.SetFaults(sim.Faults{badPatch.Module: {HealthFail: true}}); err != nil {
		return err
	}
	d.say("injected into %s's SIMULATED kernel: the health check fails while %s is loaded", broken.Name, badPatch.Module)
	d.say("(on a real host, this is the operator's health command failing after the apply)")
	digest, plan, err := d.publish(badPatch)
	if err != nil {
		return err
	}
	st, err := d.watch(ctx, watchSpec{digest: digest, plan: plan, module: badPatch.Module, perHost: true,
		over: func(st rollout.Status, running int) (bool, error) {
			if st.State == rollout.Done {
				return true, errors.New("the bad rollout passed every stage; its canary should have failed")
			}
			if !rollout.Ended(st.State) || running > 0 {
				return false, nil
			}
			return d.settled(digest)
		}})
	if err != nil {
		return err
	}
	return d.verdict(st, digest)
}

// settled reports whether every host reached its last state in a halted
// rollout: failed, rolled back, or halted before applying.
func (d *demo) settled(digest string) (bool, error) {
	for _, h := range d.fleet.Hosts {
		st, err := h.Agent.Rollout(digest)
		if err != nil {
			return false, nil // the plan has not reached it yet
		}
		switch st.Self.State {
		case rollout.StateFailed, rollout.StateRolledBack, rollout.StateHalted:
		default:
			return false, nil
		}
	}
	return true, nil
}

// verdict says what each host did in the halted rollout, and checks what
// the canary is for: no host outside the canary ring applied the patch.
func (d *demo) verdict(st rollout.Status, digest string) error {
	reasons := map[string]string{}
	for _, f := range st.Failed {
		name, reason, _ := strings.Cut(f, ": ")
		reasons[name] = reason
	}
	d.say("%s, as %s judges it: %s", d.red("rollout halted fleet-wide"), d.judge.Name, strings.TrimPrefix(st.Why, "halted: "))
	var outside, bad []string
	for _, h := range d.fleet.Hosts {
		hs, err := h.Agent.Rollout(digest)
		if err != nil {
			return err
		}
		loaded, err := h.EverLoaded(badPatch.Module)
		if err != nil {
			return err
		}
		if h.Ring != "canary" {
			outside = append(outside, h.Name)
			if hs.Self.State != rollout.StateHalted || loaded {
				bad = append(bad, fmt.Sprintf("%s (state %s, kernel log shows the patch enabled: %t)", h.Name, hs.Self.State, loaded))
			}
			continue
		}
		var what string
		switch hs.Self.State {
		case rollout.StateFailed:
			what = "failed: " + reasons[h.Name] + "; it undid the patch itself"
		case rollout.StateRolledBack:
			what = "rolled back: it had applied " + badPatch.Module + " and undid it when the rollout halted"
		case rollout.StateHalted:
			what = "never applied it: the rollout halted first"
		default:
			what = hs.Self.State.String()
		}
		d.say("  %s (canary)  %s", h.Name, what)
	}
	if len(bad) > 0 {
		return fmt.Errorf("hosts outside the canary ring applied %s: %s", badPatch.ID, strings.Join(bad, "; "))
	}
	good, err := d.count(goodPatch.Module)
	if err != nil {
		return err
	}
	d.say("  the %d hosts outside the canary ring: halted before their stage opened", len(outside))
	d.say("%s no host outside the canary ring applied %s: their agents report %q and their kernels' logs never enabled %s",
		d.green("check passed:"), badPatch.ID, rollout.StateHalted.String(), badPatch.Module)
	d.say("the SIMULATED kernels of %d of %d hosts run %s, and none runs %s", good, len(d.fleet.Hosts), goodPatch.Module, badPatch.Module)
	if good != len(d.fleet.Hosts) {
		return fmt.Errorf("%s runs on %d of %d hosts after the rollback", goodPatch.Module, good, len(d.fleet.Hosts))
	}
	return nil
}

// running lists the hosts whose simulated kernel runs the module.
func (d *demo) running(module string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, h := range d.fleet.Hosts {
		ok, err := h.Running(module)
		if err != nil {
			return nil, err
		}
		if ok {
			out[h.Name] = true
		}
	}
	return out, nil
}

func (d *demo) count(module string) (int, error) {
	r, err := d.running(module)
	return len(r), err
}

// hostNames lists the hosts in order, for stable output.
func (d *demo) hostNames() []string {
	names := make([]string, 0, len(d.fleet.Hosts))
	for _, h := range d.fleet.Hosts {
		names = append(names, h.Name)
	}
	return names
}

func (d *demo) say(format string, args ...any) {
	if len(args) == 0 {
		fmt.Fprintln(d.out, format)
		return
	}
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demo) section(title string) {
	d.say("")
	d.say(d.bold("== " + title))
}

// Styles, in a terminal only.
func (d *demo) style(code, s string) string {
	if !d.color {
		return s
	}
	return "\033[" + code + "m" + s + "\033[0m"
}
func (d *demo) bold(s string) string  { return d.style("1", s) }
func (d *demo) green(s string) string { return d.style("32", s) }
func (d *demo) red(s string) string   { return d.style("31", s) }

// exactStdout is where a command prints bytes that must come out exactly
// (a manifest, whose bytes signatures cover): stdout as given when it is
// a file or a pipe, and escaped when it is a terminal, where nobody can
// take the bytes anyway.
func exactStdout(e *env) io.Writer {
	if isTerminal(e.rawStdout) {
		return e.stdout
	}
	return e.rawStdout
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// since is the time since t, rounded for people.
func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }
