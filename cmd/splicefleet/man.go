package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/roff"
)

// The man pages are written from the command tree, so that they say what
// the binary does: one page per command a user sees (section 1), named
// after its path (splicefleet-rollout-status.1), with its synopsis, its
// help, its options and their defaults, its examples, and the exit
// codes, environment variables and files that command uses; and the
// configuration's page (section 5), generated from agent/config.go with
// docs/config.md by package configdoc and embedded here.

// configPage is splicefleet-agent.yaml(5), written by
// go test ./cmd/splicefleet/internal/configdoc -update.
//
//go:embed splicefleet-agent.yaml.5
var configPage []byte

// configPageName is the configuration's page, as SEE ALSO names it.
const configPageName = "splicefleet-agent.yaml"

const manual = "splicefleet manual"

// defaultExits are the exit codes of most commands.
var defaultExits = []exitCode{
	{exitOK, "success"},
	{exitRefused, "the input was refused: a bundle, plan, command or argument failed a check (the message says which and why); nothing was changed"},
	{exitError, "usage error (an unknown command, a missing argument, a bad flag), configuration or I/O error, or the agent could not be asked"},
}

// noRefusalExits are the exit codes of the commands that judge no input.
var noRefusalExits = []exitCode{
	{exitOK, "success"},
	{exitError, "usage error (an unknown command, a missing argument, a bad flag), configuration or I/O error, or the agent could not be asked"},
}

// commandExits are the exit codes of the commands whose codes say more
// than defaultExits, by command path without the root's name.
var commandExits = map[string][]exitCode{
	"": {
		{exitOK, "success"},
		{exitRefused, "the input was refused (a bundle, plan, command or argument failed a check); for rollout status, a rollout that halted, rolled back, was revoked or expired"},
		{exitError, "usage error (an unknown command, a missing argument, a bad flag), configuration or I/O error"},
		{exitTimeout, "rollout status --watch: --timeout passed before the rollout ended"},
	},
	"rollout status": statusExits,
	"agent": {
		{exitOK, "the agent left the cluster and stopped on SIGTERM or SIGINT; with --check-config, the configuration has no problem"},
		{exitRefused, "with --check-config: the configuration or a file it names has a problem (each is printed)"},
		{exitError, "usage error, an invalid configuration, or the agent could not start"},
	},
	"apply": {
		{exitOK, "the patch was applied, or was applied already"},
		{exitRefused, "the bundle was refused (its signatures under the trust policy, its manifest, its module, this kernel, an older version than the one applied); the kernel was not touched"},
		{exitError, "usage or configuration error, or the kernel did not take the patch (the livepatch transition was reversed)"},
	},
	"verify": {
		{exitOK, "the bundle verified; its signers are printed"},
		{exitRefused, "the bundle was refused, with one line that says why"},
		{exitError, "usage or configuration error, or the bundle could not be read"},
	},
	"diff": {
		{exitOK, "the change can be livepatched"},
		{exitRefused, "it cannot (the reasons go to stderr as well)"},
		{exitError, "usage error, or an object could not be read"},
	},
	"view": {
		{exitOK, "success"},
		{exitRefused, "with ID: this host knows no such patch"},
		{exitError, "usage or configuration error, or the state directory could not be read"},
	},
	"force-leave": {
		{exitOK, "the member was marked as left (or had left already)"},
		{exitRefused, "the member is alive or leaving: stop its agent instead"},
		{exitError, "usage error, or the agent could not be asked"},
	},
}

// judgesNothing are the commands that refuse no input (exit 0 or 2), by
// path without the root's name; command groups are among them too.
var judgesNothing = map[string]bool{
	"version": true, "demo": true, "members": true, "fleet status": true,
	"rollout list": true, "hosts key": true, "signing-key generate": true,
	"gossip-key generate": true, "gossip-key list": true, "gossip-key install": true,
	"gossip-key use": true, "gossip-key remove": true,
}

// exitsOf are the exit codes of cmd.
func exitsOf(cmd *cobra.Command) []exitCode {
	path := commandPath(cmd)
	if codes, ok := commandExits[path]; ok {
		return codes
	}
	if judgesNothing[path] || cmd.HasSubCommands() || strings.HasPrefix(path, "completion") {
		return noRefusalExits
	}
	return defaultExits
}

// commandPath is cmd's path below the root ("rollout status"; "" for the
// root).
func commandPath(cmd *cobra.Command) string {
	return strings.TrimPrefix(strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()), " ")
}

// talksToAgent says whether cmd is a client of the local agent (it finds
// the agent's control socket).
func talksToAgent(cmd *cobra.Command) bool {
	return cmd.Flags().Lookup("control-socket") != nil && commandPath(cmd) != "agent"
}

// actsOnHost says whether cmd is a host verb (apply, undo, view, boot).
func actsOnHost(cmd *cobra.Command) bool {
	return cmd.Flags().Lookup("state-dir") != nil && commandPath(cmd) != "agent"
}

// envVar is an environment variable a command reads.
type envVar struct{ name, meaning string }

// environmentOf lists what cmd reads from the environment.
func environmentOf(cmd *cobra.Command) []envVar {
	var out []envVar
	all := cmd == cmd.Root()
	if all || talksToAgent(cmd) {
		out = append(out, envVar{socketEnv, "the agent's control socket, for the commands that talk to the agent, when --control-socket is not given; it comes before the control_socket of the agent's configuration"})
	}
	if all || talksToAgent(cmd) || actsOnHost(cmd) || cmd.Flags().Lookup("config") != nil && commandPath(cmd) != "agent" {
		out = append(out, envVar{configEnv, "the agent's configuration, when --config is not given, instead of /etc/splicefleet/agent.yaml: the host commands read its state_dir, kernel and trust policy, the commands that talk to the agent its control_socket"})
	}
	if all || cmd.Flags().Lookup("passphrase-file") != nil {
		out = append(out, envVar{"SPLICEFLEET_PASSPHRASE", "the passphrase of the secret signing key, when --passphrase-file is not given (a file is safer: other users may read a process's environment)"})
	}
	if all || commandPath(cmd) == "create" {
		out = append(out, envVar{"XDG_CACHE_HOME", "create --patch keeps prepared kernel source trees in $XDG_CACHE_HOME/splicefleet (else ~/.cache/splicefleet) unless --cache-dir is given"})
	}
	if all || commandPath(cmd) == "demo" {
		out = append(out,
			envVar{"TERM", `demo draws its live view only on a terminal whose TERM is not "dumb"`},
			envVar{"NO_COLOR", "when set and not empty, demo's live view has no colour"})
	}
	return out
}

// fileEntry is a file a command reads or writes.
type fileEntry struct{ path, meaning string }

// filesOf lists the files cmd uses besides those named on its command
// line, at their default paths.
func filesOf(cmd *cobra.Command) []fileEntry {
	d := agent.DefaultConfig()
	all := cmd == cmd.Root()
	path := commandPath(cmd)
	agentCmd := path == "agent"
	var out []fileEntry
	switch {
	case all || agentCmd:
		out = append(out, fileEntry{defaultAgentConfig, "the agent's configuration (see " + configPageName + "(5)); the host verbs read its trust policy, state directory and kernel, and the client commands its control_socket"})
	case actsOnHost(cmd) || path == "verify":
		out = append(out, fileEntry{defaultAgentConfig, "the agent's configuration (see " + configPageName + "(5)), read for the trust policy, the state directory and the kernel, unless --config names another"})
	case talksToAgent(cmd):
		out = append(out, fileEntry{defaultAgentConfig, "the agent's configuration, read for its control_socket when it exists, unless --config names another"})
	}
	if all || agentCmd || path == "verify" || (actsOnHost(cmd) && cmd.Flags().Lookup("keyring") != nil) {
		out = append(out, fileEntry{d.Keyring, "the trusted publishers' public keys: the configuration's keyring by default"})
	}
	if all || agentCmd {
		out = append(out, fileEntry{d.GossipKeyFile, "the cluster's gossip encryption keys: the configuration's gossip_key_file by default"})
	}
	if all || agentCmd || actsOnHost(cmd) {
		out = append(out, fileEntry{d.StateDir, "the host's state directory: the journal of the patches, the verified bundles, the lock, and the agent's host key (host.key)"})
	}
	if all || agentCmd || talksToAgent(cmd) {
		out = append(out, fileEntry{d.ControlSocket, "the agent's control socket, root's: the configuration's control_socket by default"})
	}
	if all || agentCmd || actsOnHost(cmd) {
		out = append(out, fileEntry{"/sys/kernel/livepatch", "the kernel's livepatch interface, where the patches are enabled, disabled and watched"})
	}
	if all || path == "create" {
		out = append(out, fileEntry{"~/.cache/splicefleet", "create --patch: the prepared kernel source trees (see XDG_CACHE_HOME, --cache-dir)"})
	}
	return out
}

// pageName is cmd's page name: its path with hyphens.
func pageName(cmd *cobra.Command) string {
	return strings.ReplaceAll(cmd.CommandPath(), " ", "-")
}

// manCommands are the commands that get a page: those a user sees.
func manCommands(root *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		out = append(out, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}

// writeManPages writes a page for every command and the configuration's
// page into dir.
func writeManPages(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root.InitDefaultVersionFlag()
	source := "splicefleet " + version
	for _, c := range manCommands(root) {
		if err := os.WriteFile(filepath.Join(dir, pageName(c)+".1"), manPage(c, source), 0o644); err != nil {
			return err
		}
	}
	// The configuration's page is generated in the source tree, without
	// the version.
	old := []byte(`"splicefleet" "` + manual + `"`)
	if !bytes.Contains(configPage, old) {
		return fmt.Errorf("%s.5 has no title line to name the version in", configPageName)
	}
	page := bytes.Replace(configPage, old, []byte(`"`+source+`" "`+manual+`"`), 1)
	return os.WriteFile(filepath.Join(dir, configPageName+".5"), page, 0o644)
}

// manPage is cmd's page.
func manPage(cmd *cobra.Command, source string) []byte {
	name := pageName(cmd)
	p := roff.NewPage(name, "1", source, manual)

	p.Section("name")
	p.Raw(roff.Escape(name) + ` \- ` + roff.Escape(strings.TrimSuffix(cmd.Short, ".")))

	p.Section("synopsis")
	use := strings.TrimSpace(strings.TrimPrefix(cmd.Use, cmd.Name()))
	switch {
	case cmd.HasAvailableSubCommands() && cmd != cmd.Root():
		use = "COMMAND [OPTIONS]"
	case cmd == cmd.Root():
		use = "[-v] COMMAND [OPTIONS] [ARGUMENTS]"
	}
	use = strings.TrimSpace(strings.TrimSuffix(use, "[flags]"))
	p.Raw(roff.Bold(cmd.CommandPath()) + " " + roff.Escape(use))

	p.Section("description")
	long := cmd.Long
	if long == "" {
		long = cmd.Short + "."
	}
	p.Text(long)

	if subs := availableSubcommands(cmd); len(subs) > 0 {
		p.Section("commands")
		for _, s := range subs {
			p.Item(roff.Bold(pageName(s))+"(1)", s.Short+".")
		}
	}

	if opts := options(cmd); len(opts) > 0 {
		p.Section("options")
		for _, f := range opts {
			tag, text := flagItem(f)
			p.Item(tag, text)
		}
	}

	p.Section("exit status")
	for _, c := range exitsOf(cmd) {
		p.Item(roff.Bold(fmt.Sprint(c.code)), c.meaning+".")
	}

	p.Section("environment")
	if env := environmentOf(cmd); len(env) > 0 {
		for _, v := range env {
			p.Item(roff.Bold(v.name), v.meaning+".")
		}
	} else {
		p.Text(cmd.CommandPath() + " reads no environment variables of its own.")
	}

	p.Section("files")
	if files := filesOf(cmd); len(files) > 0 {
		for _, f := range files {
			p.Item(roff.Italic(f.path), f.meaning+".")
		}
	} else {
		p.Text(cmd.CommandPath() + " reads and writes only the files named on its command line, and standard input and output.")
	}

	p.Section("examples")
	p.Example(cmd.Example)

	p.Section("see also")
	p.Raw(seeAlso(cmd))
	return p.Bytes()
}

func availableSubcommands(cmd *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, s := range cmd.Commands() {
		if !s.Hidden && s.Name() != "help" {
			out = append(out, s)
		}
	}
	return out
}

// options are cmd's flags, its own then those it inherits, but --help.
func options(cmd *cobra.Command) []*pflag.Flag {
	var out []*pflag.Flag
	add := func(fs *pflag.FlagSet) {
		fs.VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !f.Hidden {
				out = append(out, f)
			}
		})
	}
	add(cmd.NonInheritedFlags())
	add(cmd.InheritedFlags())
	return out
}

// flagItem is a flag's tag and text: the names, the value it takes, and
// its usage with its default.
func flagItem(f *pflag.Flag) (tag, text string) {
	if f.Shorthand != "" {
		tag = roff.Bold("-"+f.Shorthand) + ", "
	}
	tag += roff.Bold("--" + f.Name)
	name, usage := pflag.UnquoteUsage(f)
	if f.Value.Type() != "bool" {
		switch name {
		case "stringArray", "strings":
			name = "string"
		case "uint", "uint64", "int":
			name = "n"
		}
		tag += " " + roff.Italic(name)
	}
	text = usage
	if def, ok := shownDefault(f); ok {
		text += " (default " + def + ")"
	}
	return tag, text
}

// shownDefault is f's default, unless it is the zero value of its type
// (an empty string is no default to show) or its usage says it.
func shownDefault(f *pflag.Flag) (string, bool) {
	switch f.DefValue {
	case "", "false", "0", "[]", "0s":
		return "", false
	}
	if strings.Contains(f.Usage, "(default") {
		return "", false
	}
	return f.DefValue, true
}

// seeAlso names the pages near cmd's (its commands are listed under
// COMMANDS): its parent, and the configuration's page for the commands
// that read it.
func seeAlso(cmd *cobra.Command) string {
	var refs []string
	if cmd.HasParent() {
		refs = append(refs, pageName(cmd.Parent())+"(1)")
	}
	if cmd.Flags().Lookup("config") != nil || cmd == cmd.Root() {
		refs = append(refs, configPageName+"(5)")
	}
	lines := make([]string, len(refs))
	for i, r := range refs {
		page, section, _ := strings.Cut(strings.TrimSuffix(r, ")"), "(")
		sep := ","
		if i == len(refs)-1 {
			sep = ""
		}
		lines[i] = ".BR " + roff.Escape(page) + " (" + section + ")" + sep
	}
	return strings.Join(lines, "\n")
}
