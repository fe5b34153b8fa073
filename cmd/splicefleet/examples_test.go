package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasExamples: every command a user sees (the hidden
// deprecated names and cobra's help aside) has an Examples section.
func TestEveryCommandHasExamples(t *testing.T) {
	n := 0
	walkCommands(newRootCmd(&env{}), func(c *cobra.Command) {
		n++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s has no examples", c.CommandPath())
		}
	})
	if n < 40 {
		t.Fatalf("walked only %d commands", n)
	}
}

// TestExamplesParse: every line of every command's examples is a
// comment or a call of that very command (after VAR=value assignments),
// and every splicefleet call in it, pipes and $(...) included, parses
// against the flags and the arguments of the command it names.
func TestExamplesParse(t *testing.T) {
	// What the check refuses, so that it can fail.
	for _, bad := range []struct{ path, line string }{
		{"splicefleet rollout status", "splicefleet rollout list"},
		{"splicefleet rollout status", "splicefleet rollout status"},
		{"splicefleet rollout status", "splicefleet rollout status x --wait"},
		{"splicefleet undo", "splicefleet undo x --all"},
		{"splicefleet view", "splicefleet view --transition-timeout 1s"},
		{"splicefleet gossip-key install", `splicefleet gossip-key install "$(cat new.key)" | splicefleet keys list`},
		{"splicefleet apply", "sudo splicefleet apply fix.splice"},
		{"splicefleet apply", "  "},
	} {
		if checkExampleLine(bad.path, bad.line) == "" {
			t.Errorf("checkExampleLine took %q for %s", bad.line, bad.path)
		}
	}
	if err := checkExampleLine("splicefleet rollout status", `SPLICEFLEET_CONTROL_SOCKET=/run/a.sock splicefleet rollout status x -w --timeout 4h || echo "$?"`); err != "" {
		t.Errorf("checkExampleLine: %s", err)
	}
	lines := 0
	walkCommands(newRootCmd(&env{}), func(c *cobra.Command) {
		for _, line := range strings.Split(strings.TrimRight(c.Example, "\n"), "\n") {
			if !strings.HasPrefix(line, "  ") {
				t.Errorf("%s: example line %q is not indented by two spaces, as cobra's help shows them", c.CommandPath(), line)
			}
			lines++
			if err := checkExampleLine(c.CommandPath(), line); err != "" {
				t.Errorf("%s: example %q: %s", c.CommandPath(), strings.TrimSpace(line), err)
			}
		}
	})
	t.Logf("checked %d example lines", lines)
}

// checkExampleLine checks one line of the examples of the command at
// path; it says what is wrong, or "".
func checkExampleLine(path, line string) string {
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "#") {
		return ""
	}
	calls := splicefleetCalls(line)
	if len(calls) == 0 {
		return "not a splicefleet command"
	}
	first := strings.Join(shellFields(leadingAssignments.ReplaceAllString(line, "")), " ")
	if first != path && !strings.HasPrefix(first, path+" ") {
		return "does not start with " + path
	}
	for _, args := range calls {
		if err := parseCall(args); err != "" {
			return err
		}
	}
	return ""
}

// parseCall parses args as splicefleet would, with a command tree of its
// own (flags keep what they parse): the command must exist and not be
// hidden, and its flags, required flags and arguments must be accepted.
func parseCall(args []string) string {
	root := newRootCmd(&env{})
	if err := checkCall(root, args); err != "" {
		return err
	}
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err.Error()
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return err.Error()
	}
	if cmd.HasSubCommands() && !cmd.Runnable() {
		return cmd.CommandPath() + " is a group: name one of its commands"
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return err.Error()
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return err.Error()
	}
	return ""
}

// leadingAssignments are the VAR=value words before a command.
var leadingAssignments = regexp.MustCompile(`^(\S+=\S*\s+)+`)
