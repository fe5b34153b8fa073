package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// agentFlags are the flags that override the configuration file.
type agentFlags struct {
	config      string
	checkConfig bool
	nodeName    string
	bind        string
	advertise   string
	join        []string
	keyFile     string
	keyring     string
	threshold   int
	stateDir    string
	kernel      string
	http        string
	socket      string
	tags        []string
	logLevel    string
	protocol    int
}

// load reads the configuration file (if any), applies the flags given
// and validates the result.
func (f *agentFlags) load(cmd *cobra.Command) (agent.Config, error) {
	cfg, err := f.decode(cmd)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// decode reads the configuration file (if any) and applies the flags
// given, without validating.
func (f *agentFlags) decode(cmd *cobra.Command) (agent.Config, error) {
	cfg := agent.DefaultConfig()
	if f.config != "" {
		file, err := os.Open(f.config)
		if err != nil {
			return cfg, err
		}
		defer file.Close()
		if cfg, err = agent.DecodeConfig(file); err != nil {
			return cfg, fmt.Errorf("%s: %w", f.config, err)
		}
	}
	set := func(name string, apply func()) {
		if cmd.Flags().Changed(name) {
			apply()
		}
	}
	set("node-name", func() { cfg.NodeName = f.nodeName })
	set("bind", func() { cfg.Bind = f.bind })
	set("advertise", func() { cfg.Advertise = f.advertise })
	set("join", func() { cfg.Join = f.join })
	set("gossip-key-file", func() { cfg.GossipKeyFile = f.keyFile })
	set("keyring", func() { cfg.Keyring = f.keyring })
	set("threshold", func() { cfg.Threshold = f.threshold })
	set("state-dir", func() { cfg.StateDir = f.stateDir })
	set("kernel", func() { cfg.Kernel = f.kernel })
	set("http", func() { cfg.HTTP = f.http })
	set("control-socket", func() { cfg.ControlSocket = f.socket })
	set("log-level", func() { cfg.LogLevel = f.logLevel })
	// -v, the same for every command: debug, whatever the file says; a
	// reload (SIGHUP) keeps it.
	if verbose, _ := cmd.Flags().GetBool("verbose"); verbose {
		if cmd.Flags().Changed("log-level") {
			return cfg, errors.New("give -v (--verbose) or --log-level, not both")
		}
		cfg.LogLevel = "debug"
	}
	set("protocol", func() { cfg.Protocol = f.protocol })
	if cmd.Flags().Changed("tag") {
		if cfg.Tags == nil {
			cfg.Tags = map[string]string{}
		}
		for _, t := range f.tags {
			k, v, ok := strings.Cut(t, "=")
			if !ok || k == "" {
				return cfg, fmt.Errorf("--tag %q: want KEY=VALUE", t)
			}
			cfg.Tags[k] = v
		}
	}
	return cfg, nil
}

// runCheck is agent --check-config: it checks the configuration and
// the files it names, prints what passed and every problem, and refuses
// (exit 1) when there is one.
func (f *agentFlags) runCheck(e *env, cmd *cobra.Command) error {
	name := f.config
	if name == "" {
		name = "the defaults"
	}
	cfg, err := f.decode(cmd)
	if err != nil {
		return &refusal{fmt.Errorf("check %s: %w", name, err)}
	}
	passed, problems := agent.CheckConfig(cfg)
	if len(cfg.HealthCommand) > 0 && cfg.HealthCommand[0] != "" {
		if path, err := exec.LookPath(cfg.HealthCommand[0]); err != nil {
			problems = append(problems, fmt.Errorf("health_command: %w", err))
		} else {
			passed = append(passed, "health_command "+path)
		}
	}
	for _, p := range passed {
		fmt.Fprintf(e.stdout, "ok: %s\n", p)
	}
	for _, p := range problems {
		fmt.Fprintf(e.stderr, "error: %v\n", p)
	}
	if len(problems) > 0 {
		return &refusal{fmt.Errorf("check %s: %d problem(s); the agent would not start", name, len(problems))}
	}
	fmt.Fprintf(e.stdout, "configuration %s: ok\n", name)
	return nil
}

func newAgentCmd(e *env) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent [--config FILE] [flags]",
		Short: "Run the fleet agent: gossip, peer-to-peer bundle distribution, control API",
		Long: `Run splicefleet's agent on this host. Agents form an encrypted serf cluster
with no central server; a bundle published at any agent is announced by
gossip, fetched from peers (manifest and signatures first, verified against
the trust policy, then the module), and stored verified everywhere.

The configuration file is YAML (unknown keys are errors); flags override it.
SIGTERM or SIGINT leave the cluster gracefully; SIGHUP reloads the log
level, the tags and the trust policy from the file. A reload that is
refused (an invalid file, a keyring another user may write) is logged at
WARN and counted, and the agent keeps what it runs with.

With --check-config the agent checks the configuration and the files it
names (the keyring: not writable by others, parsed, enough keys for the
threshold; the gossip keys; the state directory; the kernel: CAP_SYS_MODULE
for linux, unsafe_simulated_kernel for sim:DIR), prints what passed and
every problem, and exits 0 when there is none, 1 otherwise, without
starting. The systemd unit runs it before the agent.`,
		Example: `  splicefleet agent --config /etc/splicefleet/agent.yaml
  splicefleet agent --check-config --config /etc/splicefleet/agent.yaml
  splicefleet agent -v --config /etc/splicefleet/agent.yaml --tag ring=canary`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.checkConfig {
				return f.runCheck(e, cmd)
			}
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			level := new(slog.LevelVar)
			_ = level.UnmarshalText([]byte(cfg.LogLevel))
			logger := slog.New(cfg.LogHandler(e.stderr, level))
			opts := agent.Options{Config: cfg, Version: version, Revision: currentBuild().Commit, Logger: logger, RunHealth: runHealthCommand}
			if err := agentKernel(&opts, logger); err != nil {
				return err
			}
			a, err := agent.New(opts)
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					// A refusal is logged at WARN and counted by the
					// agent, which keeps what it runs with.
					next, err := f.load(cmd)
					if err != nil {
						a.ReloadRefused(err)
					} else if a.Reload(next) == nil {
						_ = level.UnmarshalText([]byte(next.LogLevel))
					}
				}
			}()
			return a.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "configuration file (YAML); without it, the defaults and the flags")
	fl.BoolVar(&f.checkConfig, "check-config", false, "check the configuration and the files it names, print every problem, and exit (0: none, 1: some)")
	fl.StringVar(&f.nodeName, "node-name", "", "this host's name in the cluster (default: hostname)")
	fl.StringVar(&f.bind, "bind", "", "gossip address (default 0.0.0.0:7946)")
	fl.StringVar(&f.advertise, "advertise", "", "address peers reach this node at")
	fl.StringArrayVar(&f.join, "join", nil, "peer to join (repeatable; retried with backoff)")
	fl.StringVar(&f.keyFile, "gossip-key-file", "", "gossip encryption keys, base64, one per line, first is primary (default "+agent.DefaultGossipKeyFile+")")
	fl.StringVar(&f.keyring, "keyring", "", "trusted publishers' public keys (default "+agent.DefaultKeyring+")")
	fl.IntVar(&f.threshold, "threshold", 1, "distinct trusted keys that must have signed")
	fl.StringVar(&f.stateDir, "state-dir", "", "state directory (default "+agent.DefaultStateDir+")")
	fl.StringVar(&f.kernel, "kernel", "", `"linux" or "sim:DIR" (sim needs unsafe_simulated_kernel: true in the configuration) (default linux)`)
	fl.StringVar(&f.http, "http", "", "address of /healthz and the blob service (default 0.0.0.0:7947)")
	fl.StringVar(&f.socket, "control-socket", "", "control API unix socket (default /run/splicefleet/control.sock)")
	fl.StringArrayVar(&f.tags, "tag", nil, "user tag KEY=VALUE (repeatable)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info; -v is debug)")
	fl.IntVar(&f.protocol, "protocol", 0, fmt.Sprintf("newest protocol version to speak, %d to %d (default %d); set the oldest while a fleet upgrades", gossip.ProtocolMin, gossip.ProtocolMax, gossip.ProtocolMax))
	return cmd
}

func newPublishCmd(e *env) *cobra.Command {
	var socket, plan string
	var dryRun bool
	var sign docSigning
	cmd := &cobra.Command{
		Use:   "publish BUNDLE [--plan PLAN.yaml (--key SECRET.asc | --signature SIG.asc)] [--dry-run]",
		Short: "Hand a bundle to the local agent, which verifies, stores and announces it; with --plan, roll it out",
		Long: `Hand a bundle to the local agent, which verifies it, stores it and
announces it to the fleet; every agent fetches it from its peers and
verifies it again.

With --plan, the bundle is also rolled out: the plan (YAML, see
docs/rollouts.md) is signed with --key (repeat for a threshold) or carries
detached signatures made elsewhere (--signature, e.g. gpg --armor
--detach-sign PLAN.yaml), and every agent takes its host in when its
stage opens. A plan signed with --key may leave bundle: out: publish
fills in the digest of BUNDLE before it signs.

Everything is checked before anything is sent: the plan here (its syntax,
stages and gates, the bundle it names, a signature), then, by the agent
without storing anything, the bundle and the plan under its trust policy
(trusted signers, threshold, expiry) and the rollout id. When any check
fails, the fleet gets nothing: not the plan, and not the bundle either.

--dry-run makes the same checks and says what would be published and to
whom: the rollout's stages and their cohorts as the local agent sees the
cluster now. It sends nothing.`,
		Example: `  splicefleet publish fix.splice
  splicefleet publish fix.splice --plan fix.yaml --key release.sec.asc --dry-run
  splicefleet publish fix.splice --plan fix.yaml --key release.sec.asc`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readFile(args[0], splice.MaxBundleSize)
			if err != nil {
				return err
			}
			// The plan is read, validated and signed, then the agent
			// checks bundle and plan, before anything is sent: a refused
			// plan leaves the fleet without the bundle too, not with a
			// bundle nobody rolls out.
			req := agent.CheckRequest{Bundle: raw}
			var planDoc *rollout.Document
			if plan != "" {
				if planDoc, err = preparePlan(e, raw, args[0], plan, sign); err != nil {
					return err
				}
				if req.Plan, err = planDoc.Encode(); err != nil {
					return &refusal{fmt.Errorf("%s: %w", plan, err)}
				}
			} else if sign.given() {
				return errors.New("--key and --signature sign a plan: give --plan too")
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			client := agent.NewControlClient(socket)
			var check agent.CheckResult
			if err := client.Do("POST", "/v1/check", bytes.NewReader(body), &check); err != nil {
				var r *agent.RefusedError
				if errors.As(err, &r) {
					// The agent says which: "bundle: ..." or "plan: ...".
					file := args[0]
					if strings.HasPrefix(r.Message, "plan: ") {
						file = plan
					}
					return &refusal{fmt.Errorf("%s: the agent refused the %w; nothing was sent", file, err)}
				}
				return err
			}
			if dryRun {
				printCheck(e, args[0], plan, check)
				return nil
			}
			var res agent.PublishResult
			if err := client.Do("POST", "/v1/publish", bytes.NewReader(raw), &res); err != nil {
				var r *agent.RefusedError
				if errors.As(err, &r) {
					return &refusal{fmt.Errorf("%s: %w", args[0], err)}
				}
				return err
			}
			fmt.Fprintf(e.stdout, "published %s version %d (manifest %s)\n", safetext.String(res.ID), res.Version, safetext.String(res.ManifestDigest))
			if plan == "" {
				return nil
			}
			return publishPlan(e, socket, plan, planDoc)
		},
	}
	socketFlag(e, cmd, &socket)
	cmd.Flags().StringVar(&plan, "plan", "", "roll the bundle out with this plan (YAML)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check everything and say what would be published and to whom; send nothing")
	sign.flags(cmd, "the plan")
	return cmd
}

func newMembersCmd(e *env) *cobra.Command {
	var socket string
	var asJSON bool
	var statuses, tags []string
	cmd := &cobra.Command{
		Use:   "members [--status S] [--tag KEY=VALUE] [--json]",
		Short: "List the cluster's members as the local agent sees them, with their tags",
		Long: `List the cluster's members as the local agent sees them: name, gossip
address, status (alive, leaving, left, failed) and the operators' tags
(the agent's own tags, named sf.*, are left out of the table; --json
has them all).

--status keeps the members in one of the statuses given (repeat it, or
separate them with commas); --tag KEY=VALUE keeps those whose tag KEY is
VALUE (repeat it: every one must match), like serf members.`,
		Example: `  splicefleet members
  splicefleet members --status alive --tag ring=canary
  splicefleet members --status failed,left`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keep, err := memberFilter(statuses, tags)
			if err != nil {
				return err
			}
			var ms []gossip.Member
			if err := agent.NewControlClient(socket).Do("GET", "/v1/members", nil, &ms); err != nil {
				return err
			}
			ms = slices.DeleteFunc(ms, func(m gossip.Member) bool { return !keep(m) })
			sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(ms)
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tADDRESS\tSTATUS\tTAGS")
			for _, m := range ms {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", safetext.String(m.Name), safetext.String(m.Addr), safetext.String(m.Status), orDash(userTags(m.Tags)))
			}
			return w.Flush()
		},
	}
	socketFlag(e, cmd, &socket)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringSliceVar(&statuses, "status", nil, "keep members in these statuses: alive, leaving, left, failed")
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "keep members whose tag KEY is VALUE (repeatable: all must match)")
	return cmd
}

func newForceLeaveCmd(e *env) *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "force-leave NODE",
		Short: "Tell the cluster that a failed member left for good",
		Long: `Tell the cluster that NODE, a failed member, left for good (serf's
force-leave): members stop trying to reach it and drop it from the member
list after the tombstone time, as for a member that left. Use it for a
host that is gone (decommissioned, reinstalled under another name);
rollouts do not target a member that left. A member that
is alive or leaving is refused (exit 1): stop its agent, which leaves by
itself. A member that left already is left as it is.`,
		Example: `  # web-0131 is listed by: splicefleet members --status failed
  splicefleet force-leave web-0131`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res struct {
				Was string `json:"was"`
			}
			if err := agent.NewControlClient(socket).Do("POST", "/v1/members/"+url.PathEscape(args[0])+"/force-leave", nil, &res); err != nil {
				var r *agent.RefusedError
				if errors.As(err, &r) {
					return &refusal{err}
				}
				return err
			}
			if res.Was == "left" {
				fmt.Fprintf(e.stdout, "%s left already\n", safetext.String(args[0]))
				return nil
			}
			fmt.Fprintf(e.stdout, "%s (failed) is now left across the cluster\n", safetext.String(args[0]))
			return nil
		},
	}
	socketFlag(e, cmd, &socket)
	return cmd
}

// memberStatuses are the statuses serf reports.
var memberStatuses = []string{"alive", "leaving", "left", "failed"}

// memberFilter is what members --status and --tag keep.
func memberFilter(statuses, tags []string) (func(gossip.Member) bool, error) {
	for _, s := range statuses {
		if !slices.Contains(memberStatuses, s) {
			return nil, fmt.Errorf("--status %q: want one of %s", s, strings.Join(memberStatuses, ", "))
		}
	}
	want := map[string]string{}
	for _, t := range tags {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--tag %q: want KEY=VALUE", t)
		}
		want[k] = v
	}
	return func(m gossip.Member) bool {
		if len(statuses) > 0 && !slices.Contains(statuses, m.Status) {
			return false
		}
		for k, v := range want {
			if got, ok := m.Tags[k]; !ok || got != v {
				return false
			}
		}
		return true
	}, nil
}

// userTags are a member's tags but the agent's own (sf.*), sorted, as
// k=v,k=v, escaped.
func userTags(tags map[string]string) string {
	var out []string
	for k, v := range tags {
		if !strings.HasPrefix(k, "sf.") {
			out = append(out, safetext.String(k)+"="+safetext.String(v))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func newFleetCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "fleet", Short: "Fleet-wide views",
		Example: `  splicefleet fleet status`}
	var socket string
	var asJSON bool
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status [--json] [--timeout D]",
		Short: "Every host: its kernel, what it holds, its state",
		Long: `Ask every host, over gossip, what it holds, and show it beside what its
gossip tags say (kernel, arch, agent version), with the commit and Go
version each agent was built from and with. The query waits exactly
--timeout for answers; a host that did not answer in time is marked so.`,
		Example: `  splicefleet fleet status
  splicefleet fleet status --json --timeout 5s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st []agent.MemberStatus
			if err := agent.NewControlClient(socket).Do("GET", "/v1/fleet?timeout="+timeout.String(), nil, &st); err != nil {
				return err
			}
			sort.Slice(st, func(i, j int) bool { return st[i].Name < st[j].Name })
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "HOST\tSTATUS\tKERNEL\tARCH\tAGENT\tAPPLIED\tHELD\tBUNDLES")
			for _, s := range st {
				q := safetext.String
				bundles := strings.Join(safetext.Strings(s.Bundles), ",")
				if !s.Answered {
					bundles = "(no answer within " + timeout.String() + ")"
				}
				kernel := orDash(q(s.Kernel))
				if s.Simulated {
					kernel += " (SIMULATED)"
				}
				agentBuild := orDash(q(s.Version))
				if s.Revision != "" || s.GoVersion != "" {
					agentBuild += " (" + orDash(q(s.Revision)) + ", " + orDash(q(s.GoVersion)) + ")"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", q(s.Name), q(s.Status), kernel, orDash(q(s.Arch)), agentBuild, orDash(q(s.Applied)), orDash(q(s.Held)), orDash(bundles))
			}
			return w.Flush()
		},
	}
	socketFlag(e, status, &socket)
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	status.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "how long to wait for every host's answer")
	cmd.AddCommand(status)
	return cmd
}

// newGossipKeyCmd is `gossip-key`: the cluster's shared gossip
// encryption keys (serf's keyring). (The publishers' OpenPGP keys are
// signing-key.)
func newGossipKeyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gossip-key",
		Short: "The cluster's gossip encryption keys: generate, and rotate across the cluster",
		Long: `The gossip key is the secret every agent of a cluster shares to encrypt
serf's gossip (gossip_key_file: base64 keys, one a line, the first the
primary). It signs nothing: the publishers' OpenPGP keys are
splicefleet signing-key. Rotate it without downtime: install a new key
everywhere, use it, then remove the old one.`,
		Example: `  splicefleet gossip-key generate > gossip.keys && chmod 600 gossip.keys
  splicefleet gossip-key list`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "generate",
		Short:   "Print a new gossip encryption key (base64)",
		Example: `  splicefleet gossip-key generate > gossip.keys && chmod 600 gossip.keys`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := gossip.GenerateKey()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, k)
			return err
		},
	})
	var socket string
	var primaryOnly bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys installed across the cluster, how many members hold each, and which is primary",
		Example: `  splicefleet gossip-key list
  splicefleet gossip-key list --primary`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var keys gossip.Keyring
			if err := agent.NewControlClient(socket).Do("GET", "/v1/keys", nil, &keys); err != nil {
				return err
			}
			if primaryOnly {
				k := keys.PrimaryKey()
				if k == "" {
					return errors.New("no member named a primary key")
				}
				_, err := fmt.Fprintln(e.stdout, safetext.String(k))
				return err
			}
			primary := keys.PrimaryKey()
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tMEMBERS\tPRIMARY ON")
			for _, k := range slices.Sorted(maps.Keys(keys.Installed)) {
				mark := ""
				if k == primary {
					mark = " (primary)"
				}
				fmt.Fprintf(w, "%s%s\t%d\t%d\n", safetext.String(k), mark, keys.Installed[k], keys.Primary[k])
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&primaryOnly, "primary", false, "print only the key most members encrypt with, for scripts")
	socketFlag(e, list, &socket)
	cmd.AddCommand(list)
	for _, op := range []struct{ name, short, example string }{
		{"install", "Install a key on every member (it decrypts; it does not encrypt yet)",
			`  # new.key made by: splicefleet gossip-key generate > new.key
  splicefleet gossip-key install "$(cat new.key)"`},
		{"use", "Make an installed key the primary (encrypting) key everywhere",
			`  splicefleet gossip-key use "$(cat new.key)"`},
		{"remove", "Remove a key that is no longer primary from every member",
			`  splicefleet gossip-key remove "$(cat old.key)"`},
	} {
		var socket string
		c := &cobra.Command{
			Use:     op.name + " KEY",
			Short:   op.short,
			Example: op.example,
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := agent.NewControlClient(socket).Do("POST", "/v1/keys/"+op.name, strings.NewReader(args[0]), nil); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%s: done across the cluster\n", op.name)
				return nil
			},
		}
		socketFlag(e, c, &socket)
		cmd.AddCommand(c)
	}
	return cmd
}

// printCheck says what publish would do, from the agent's check.
func printCheck(e *env, bundlePath, planPath string, c agent.CheckResult) {
	q := safetext.String
	held := "new to this agent"
	if c.Held {
		held = "this agent holds it already"
	}
	fmt.Fprintf(e.stdout, "would publish %s version %d (manifest %s) from %s: verified, %d trusted signer%s; %s\n",
		q(c.ID), c.Version, c.ManifestDigest, q(bundlePath), len(c.Signers), plural(len(c.Signers)), held)
	st := c.Rollout
	if st == nil {
		fmt.Fprintf(e.stdout, "to every member this agent sees (%d), which fetch and verify it; nothing applies it without a plan\n", c.Members)
		fmt.Fprintln(e.stdout, "nothing was sent (--dry-run)")
		return
	}
	if c.Following {
		fmt.Fprintf(e.stdout, "the agent follows plan %s already: rollout %s is %s: %s\n", q(planPath), q(st.ID), st.State, q(st.Why))
		fmt.Fprintln(e.stdout, "nothing was sent (--dry-run)")
		return
	}
	fmt.Fprintf(e.stdout, "would start rollout %s (plan %s from %s, %d trusted signer%s) in %d stage%s, with the cohorts as this agent sees %d member%s now:\n",
		q(st.ID), st.Digest[:12], q(planPath), len(c.PlanSigners), plural(len(c.PlanSigners)), len(st.Stages), plural(len(st.Stages)), c.Members, plural(c.Members))
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "STAGE\tCOHORT")
	for i, s := range st.Stages {
		fmt.Fprintf(w, "%d %s\t%d\n", i+1, q(s.Name), s.Cohort)
	}
	_ = w.Flush()
	if st.Self.Targeted {
		fmt.Fprintf(e.stdout, "this host: stage %d, bucket %d\n", st.Self.Stage+1, st.Self.Bucket)
	} else {
		fmt.Fprintln(e.stdout, "this host: not targeted")
	}
	fmt.Fprintln(e.stdout, "nothing was sent (--dry-run)")
}
