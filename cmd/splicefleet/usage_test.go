package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnknownCommandsAreUsageErrors: a mistyped subcommand of any command
// group exits 2 with "unknown command" and a suggestion when one is
// close, as kubectl does; a group without a subcommand prints its help
// and exits 0; other usage errors exit 2 too.
func TestUnknownCommandsAreUsageErrors(t *testing.T) {
	c := newCLI(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "promte", "fix"}, `unknown command "promte" for "splicefleet rollout"; did you mean promote?`},
		{[]string{"rollout", "statsu"}, `did you mean status?`},
		{[]string{"gossip-key", "frob"}, `unknown command "frob" for "splicefleet gossip-key" (run 'splicefleet gossip-key --help' for its commands)`},
		{[]string{"frob"}, `unknown command "frob" for "splicefleet"`},
		{[]string{"rollout", "status"}, "accepts 1 arg(s), received 0"},
		{[]string{"rollout", "list", "--frob"}, "unknown flag: --frob"},
	} {
		code, out, errs := c.run(tt.args...)
		if code != 2 || !strings.Contains(errs, tt.want) || strings.Contains(out, "Available Commands") {
			t.Errorf("splicefleet %s: exit %d, want 2 and %q\n%s%s", strings.Join(tt.args, " "), code, tt.want, out, errs)
		}
	}
	// Every group, whatever its name.
	e := &env{stdout: &strings.Builder{}, stderr: &strings.Builder{}, getenv: func(string) string { return "" }, now: time.Now}
	for _, g := range newRootCmd(e).Commands() {
		if !g.HasSubCommands() {
			continue
		}
		code, out, errs := c.run(g.Name(), "no-such-command")
		if code != 2 || !strings.Contains(errs, `unknown command "no-such-command" for "splicefleet `+g.Name()+`"`) {
			t.Errorf("splicefleet %s no-such-command: exit %d\n%s%s", g.Name(), code, out, errs)
		}
		code, out, errs = c.run(g.Name())
		if code != 0 || !strings.Contains(out, "Available Commands") || errs != "" {
			t.Errorf("splicefleet %s: exit %d, want its help and 0\n%s%s", g.Name(), code, out, errs)
		}
	}
}

// TestManPagesDocumentExitStatus: the man pages the package ships,
// generated from the commands' help, give rollout status's exit codes
// and where client commands find the agent.
func TestManPagesDocumentExitStatus(t *testing.T) {
	c := newCLI(t)
	dir := c.path("man")
	c.ok("gendocs", "--man", dir)
	for page, wants := range map[string][]string{
		"splicefleet-rollout-status.1": {"--watch", "1  the rollout halted, rolled back, was revoked or expired", "3  with --watch: --timeout passed before the rollout ended", "$SPLICEFLEET_CONTROL_SOCKET"},
		"splicefleet.1":                {"3 rollout status --watch timed out"},
		"splicefleet-publish.1":        {"--dry-run"},
		"splicefleet-force-leave.1":    {"force-leave"},
	} {
		text := string(c.read(filepath.Join("man", page)))
		for _, want := range wants {
			if !strings.Contains(strings.ReplaceAll(text, "\\-", "-"), want) {
				t.Errorf("%s lacks %q", page, want)
			}
		}
	}
}
