// Command splicefleet is the one binary of splicefleet: the publisher's
// verbs (signing-key, create, sign, manifest, verify, inspect, diff), the host
// verbs (apply, undo, view, boot), the fleet agent and its clients
// (agent, publish, forget, rollout, members, fleet, gossip-key), the local
// demo fleet, and version. The names signing-key and gossip-key replaced
// key and keys, kept hidden for a release (deprecatedAlias).
//
// Only this package parses flags and reads the files a command names (a
// bundle, a patch, a key): the library packages it wires take bytes and
// documented options. The one exception is the agent daemon, which owns
// the files of its own configuration (its keyring of trusted publishers,
// gossip keys and state directory) and reads the trust policy again on
// SIGHUP.
//
// Exit codes are a contract for scripts: 0 success, 1 the input was refused (a bundle failed
// verification or is not acceptable; rollout status of a rollout that
// ended without finishing), 2 usage, configuration or I/O errors (an
// unknown subcommand of a command group too), 3 rollout status --watch
// timed out.
//
// Everything the commands print goes through package safetext's writer:
// names, reasons and descriptions come from other hosts and from files,
// and no escape sequence in them reaches the operator's terminal.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// Exit codes.
const (
	exitOK      = 0
	exitRefused = 1
	exitError   = 2
)

// Build information, set with -ldflags "-X main.version=...".
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// env is what commands read from the outside world besides files, so tests
// can run the CLI in-process.
type env struct {
	stdin io.Reader
	// stdout and stderr escape what a terminal would act on (see
	// runEnv); rawStdout is stdout as given, for the demo's live view and
	// for bytes that must come out exactly (see exactStdout).
	stdout    io.Writer
	stderr    io.Writer
	rawStdout io.Writer
	getenv    func(string) string
	now       func() time.Time
	// stepHook, when set (by tests only), runs after each journaled step
	// of apply and undo.
	stepHook func(step string)
	// defaultConfig is where the host verbs look for the agent's
	// configuration without --config (default defaultConfigPath; tests
	// point it into their own folder).
	defaultConfig string
	// verbose is the root's persistent -v/--verbose (see logLevel).
	verbose bool
}

// logLevel is the level a command logs at: its own default, or debug
// with -v. -v means this for every command: the host verbs log each step
// on stderr, the agent logs as with log_level: debug, the demo's agents
// write debug lines to the demo's log, and the commands that talk to the
// agent say which control socket they use and why. A command with
// nothing to log takes -v and prints what it prints without it.
func (e *env) logLevel(def slog.Level) slog.Level {
	if e.verbose {
		return slog.LevelDebug
	}
	return def
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return runEnv(&env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now}, args)
}

func runEnv(e *env, args []string) int {
	// Much of what the commands print came from other hosts (names,
	// reasons, tags) or from files (manifests): every byte printed goes
	// through safetext.Writer, so no escape sequence in them reaches the
	// terminal whichever command prints it; the commands escape single
	// values besides (safetext.String), so that a tab or a newline in a
	// name cannot add a column or a row to a table.
	if e.rawStdout == nil {
		e.rawStdout = e.stdout
	}
	e.stdout, e.stderr = safetext.Writer(e.stdout), safetext.Writer(e.stderr)
	stdin, stdout, stderr := e.stdin, e.stdout, e.stderr
	root := newRootCmd(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "splicefleet: %v\n", err)
	var x *exitStatus
	if errors.As(err, &x) {
		return x.code
	}
	if refused(err) {
		return exitRefused
	}
	return exitError
}

// exitCode is an exit status of a command and what it means.
type exitCode struct {
	code    int
	meaning string
}

// exitCodeLines lists codes as a command's help does, one a line
// ("  1  meaning"), wrapped at 72 columns.
func exitCodeLines(codes []exitCode) string {
	var b strings.Builder
	for _, c := range codes {
		line := fmt.Sprintf("  %d ", c.code)
		for _, w := range strings.Fields(c.meaning) {
			if len(line)+1+len(w) > 72 {
				b.WriteString(line + "\n")
				line = "    "
			}
			line += " " + w
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// refused reports whether err means the input was judged and refused, as
// opposed to the command failing to run.
func refused(err error) bool {
	var r *refusal
	return splice.IsReject(err) || signing.IsVerificationError(err) || errors.As(err, &r)
}

// refusal marks an error as a refusal of the input (exit 1).
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func newRootCmd(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "splicefleet",
		Short: "Rebootless kernel updates for whole fleets",
		Long: `splicefleet moves signed livepatch bundles through a fleet of Linux hosts.

Publishers check that a fix can be livepatched by comparing the object files
built before and after it (diff), build a bundle from a livepatch module
(create), sign it with one or more OpenPGP keys (sign), and anyone can check
(verify) and show (inspect) it. On a host, apply verifies a bundle and loads it through the kernel's
livepatch interface; undo, view and boot manage what is applied.

Exit codes: 0 success, 1 input refused (and, for rollout status, a rollout
that halted, rolled back, was revoked or expired), 2 usage error (an
unknown command, a missing argument, a bad flag), configuration or I/O
error, 3 rollout status --watch timed out.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Example: `  splicefleet view
  splicefleet publish fix.splice --plan fix.yaml --key release.sec.asc
  splicefleet rollout status cve-2026-1234-web --watch --timeout 4h
  splicefleet members --status alive --tag ring=canary`,
		Version: version,
	}
	root.SetVersionTemplate(versionLine() + "\n")
	// -v is --verbose for every command, as with kubectl and serf; taken
	// here, it keeps cobra from making it --version's shorthand on the
	// root alone (--version and the version command remain).
	root.PersistentFlags().BoolVarP(&e.verbose, "verbose", "v", false, "log every step at debug level on stderr (the agent: as --log-level debug; the demo: into its agents' log)")
	root.AddCommand(
		newSigningKeyCmd(e),
		newCreateCmd(e),
		newSignCmd(e),
		newManifestCmd(e),
		newVerifyCmd(e),
		newInspectCmd(e),
		newDiffCmd(e),
		newApplyCmd(e),
		newUndoCmd(e),
		newViewCmd(e),
		newBootCmd(e),
		newAgentCmd(e),
		newPublishCmd(e),
		newForgetCmd(e),
		newRolloutCmd(e),
		newMembersCmd(e),
		newForceLeaveCmd(e),
		newFleetCmd(e),
		newGossipKeyCmd(e),
		newHostsCmd(e),
		newDemoCmd(e),
		newVersionCmd(e),
		newGenDocsCmd(e),
		newExecLimitedCmd(e),
		// The names before signing-key and gossip-key, one letter
		// apart for two kinds of secret: hidden, for a release.
		deprecatedAlias(e, "key", newSigningKeyCmd(e)),
		deprecatedAlias(e, "keys", newGossipKeyCmd(e)),
	)
	// cobra adds its completion command at Execute; added now, it is a
	// group like the others.
	root.InitDefaultCompletionCmd()
	completionExamples(root)
	groupsRefuseUnknown(root)
	addCompletions(e, root)
	return root
}

// groupsRefuseUnknown makes every command group below root (rollout,
// keys, fleet, hosts, ...) print its help when given no subcommand, and
// refuse an unknown one as a usage error (exit 2) with suggestions, as
// kubectl does; cobra alone would print the help and exit 0 for both.
// (cobra refuses unknown commands of the root itself.)
func groupsRefuseUnknown(root *cobra.Command) {
	for _, c := range root.Commands() {
		groupsRefuseUnknown(c)
		if !c.HasSubCommands() || c.Runnable() {
			continue
		}
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if cmd.SuggestionsMinimumDistance <= 0 {
				cmd.SuggestionsMinimumDistance = 2
			}
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return fmt.Errorf("%s (run '%s --help' for its commands)", msg, cmd.CommandPath())
		}
	}
}

// completionExamples gives cobra's completion commands examples, like
// every other command. (The package installs the scripts; these are for
// a binary installed by hand.)
func completionExamples(root *cobra.Command) {
	examples := map[string]string{
		"completion": `  splicefleet completion bash > ~/.local/share/bash-completion/completions/splicefleet`,
		"bash":       `  splicefleet completion bash > ~/.local/share/bash-completion/completions/splicefleet`,
		"zsh":        `  splicefleet completion zsh > "${fpath[1]}/_splicefleet"`,
		"fish":       `  splicefleet completion fish > ~/.config/fish/completions/splicefleet.fish`,
		"powershell": `  splicefleet completion powershell | Out-String | Invoke-Expression`,
	}
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Example = examples[c.Name()]
		for _, sub := range c.Commands() {
			sub.Example = examples[sub.Name()]
		}
	}
}

func versionLine() string {
	b := currentBuild()
	return fmt.Sprintf("splicefleet %s (commit %s, built %s) %s", b.Version, b.Commit, b.Date, b.GoVersion)
}

// buildInfo is what `splicefleet version` reports.
type buildInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Date    string `json:"date"`
	// ProtocolMin and ProtocolMax bound the gossip protocol versions this
	// build speaks (the agent's protocol setting), SerfMin and SerfMax
	// the serf protocol versions under them.
	ProtocolMin int `json:"protocol_min"`
	ProtocolMax int `json:"protocol_max"`
	SerfMin     int `json:"serf_protocol_min"`
	SerfMax     int `json:"serf_protocol_max"`
	// BundleFormat is the bundle format version it writes; it reads any
	// minor version of the same major.
	BundleFormat string `json:"bundle_format"`
	GoVersion    string `json:"go"`
}

func currentBuild() buildInfo {
	commit, date := commit, date
	// Built without make's -ldflags (go build, go install): the Go
	// toolchain's own record of the commit, when it made one.
	if bi, ok := debug.ReadBuildInfo(); ok && commit == "unknown" {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value[:min(12, len(s.Value))]
			case "vcs.time":
				date = s.Value
			}
		}
	}
	return buildInfo{Version: version, Commit: commit, Date: date,
		ProtocolMin: gossip.ProtocolMin, ProtocolMax: gossip.ProtocolMax,
		SerfMin: int(gossip.SerfProtocol(gossip.ProtocolMin)), SerfMax: int(gossip.SerfProtocol(gossip.ProtocolMax)),
		BundleFormat: fmt.Sprintf("%d.%d", splice.FormatMajor, splice.FormatMinor), GoVersion: runtime.Version()}
}

func newVersionCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print the version, commit, build date, Go version and the protocol versions spoken",
		Example: `  splicefleet version
  splicefleet version --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := currentBuild()
			if asJSON {
				return printJSON(e.stdout, b)
			}
			_, err := fmt.Fprintf(e.stdout, "%s\nprotocol %d to %d (serf %d to %d), newest by default; an agent speaks an older one with --protocol\nbundle format %s (reads %d.x)\n",
				versionLine(), b.ProtocolMin, b.ProtocolMax, b.SerfMin, b.SerfMax, b.BundleFormat, splice.FormatMajor)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
