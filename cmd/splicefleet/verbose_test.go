package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestVerboseMeansOneThing: -v is --verbose, the root's, for every
// command; no command gives -v or --verbose a meaning of its own, and
// the root's -v is not --version.
func TestVerboseMeansOneThing(t *testing.T) {
	root := newRootCmd(&env{})
	n := 0
	walkCommands(root, func(c *cobra.Command) {
		n++
		if f := c.LocalNonPersistentFlags().ShorthandLookup("v"); f != nil {
			t.Errorf("%s defines -v as --%s of its own", c.CommandPath(), f.Name)
		}
		if f := c.LocalNonPersistentFlags().Lookup("verbose"); f != nil {
			t.Errorf("%s defines --verbose of its own", c.CommandPath())
		}
		if f := c.Flags().ShorthandLookup("v"); c != root && c.InheritedFlags().ShorthandLookup("v") == nil && f == nil {
			t.Errorf("%s does not take -v", c.CommandPath())
		}
	})
	if n < 40 {
		t.Fatalf("walked %d commands", n)
	}

	c := newCLI(t)
	if out := c.ok("--version"); !strings.HasPrefix(out, "splicefleet ") {
		t.Errorf("--version: %q", out)
	}
	if code, out, _ := c.run("-v"); code != 0 || strings.HasPrefix(out, "splicefleet "+version) || !strings.Contains(out, "Available Commands") {
		t.Errorf("splicefleet -v: exit %d, want the help, not the version:\n%s", code, out)
	}
}

// TestVerboseLogsEveryStep: with -v the host verbs log their steps (and
// without it, nothing but warnings), a client command says
// which control socket it uses and why, and the agent takes -v as
// --log-level debug.
func TestVerboseLogsEveryStep(t *testing.T) {
	h := newHostCLI(t)
	bundle := h.publish(1, 1)
	code, _, quiet := h.run(h.host("apply", "--keyring", h.path("trusted.asc"), bundle)...)
	if code != 0 || quiet != "" {
		t.Fatalf("apply without -v: exit %d, stderr %q", code, quiet)
	}
	code, _, errs := h.run(h.host("undo", "-v", "cve-2026-0001")...)
	if code != 0 || !strings.Contains(errs, `msg="patch state" patch=cve-2026-0001 version=2 from=applied to=reverting`) || !strings.Contains(errs, "to=reverted") {
		t.Fatalf("undo -v: exit %d, its steps not logged on stderr:\n%s", code, errs)
	}

	sock := h.path("no-agent.sock")
	code, _, errs = h.run("rollout", "list", "-v", "--control-socket", sock)
	if code != exitError || !strings.Contains(errs, `level=DEBUG msg="control socket" path=`+sock+` from=--control-socket`) {
		t.Errorf("rollout list -v: exit %d:\n%s", code, errs)
	}
	code, _, errs = h.run("rollout", "list", "--control-socket", sock)
	if code != exitError || strings.Contains(errs, "level=DEBUG") {
		t.Errorf("rollout list without -v logs at DEBUG: exit %d:\n%s", code, errs)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "info"},
		{[]string{"-v"}, "debug"},
		{[]string{"--verbose"}, "debug"},
		{[]string{"--log-level", "warn"}, "warn"},
	} {
		root := newRootCmd(&env{})
		cmd, rest, err := root.Find(append([]string{"agent"}, tt.args...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		var f agentFlags
		f.logLevel, _ = cmd.Flags().GetString("log-level")
		cfg, err := f.decode(cmd)
		if err != nil || cfg.LogLevel != tt.want {
			t.Errorf("agent %v: log level %q, %v; want %q", tt.args, cfg.LogLevel, err, tt.want)
		}
	}
	if code, _, errs := h.run("agent", "-v", "--log-level", "info", "--check-config"); code != exitRefused || !strings.Contains(errs, "give -v (--verbose) or --log-level, not both") {
		t.Errorf("agent -v --log-level info: exit %d:\n%s", code, errs)
	}
}

// walkCommands calls fn for root and every command below it that a user
// sees: not the hidden ones (gendocs, exec-limited, the deprecated
// names), nor cobra's help command.
func walkCommands(root *cobra.Command, fn func(*cobra.Command)) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		fn(c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
