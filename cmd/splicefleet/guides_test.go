package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestGuidesMatchTheCommands: every `splicefleet ...` command line in
// the shell blocks of the README and the guides names a command the
// binary has, and only flags that command takes, so the guides cannot
// drift from the binary when a command or flag is renamed.
func TestGuidesMatchTheCommands(t *testing.T) {
	root := newRootCmd(&env{})
	// What the check refuses, so that it can fail.
	for _, bad := range [][]string{{"rollout", "promte", "x"}, {"publish", "--plan-file", "p.yaml", "b.splice"}, {"frobnicate"}, {"keys", "generate"}} {
		if checkCall(root, bad) == "" {
			t.Fatalf("checkCall took %v", bad)
		}
	}
	if got := splicefleetCalls(`new=$(splicefleet gossip-key generate) && sudo splicefleet view --json | jq . > out`); len(got) != 2 || strings.Join(got[1], " ") != "view --json" {
		t.Fatalf("splicefleetCalls: %q", got)
	}
	guides, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	guides = append(guides, "../../README.md")
	checked := 0
	for _, g := range guides {
		raw, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range shellLines(string(raw)) {
			for _, args := range splicefleetCalls(line) {
				checked++
				if err := checkCall(root, args); err != "" {
					t.Errorf("%s: %q: %s", filepath.Base(g), line, err)
				}
			}
		}
	}
	t.Logf("checked %d splicefleet command lines", checked)
	if checked < 40 {
		t.Fatalf("checked only %d command lines in the guides", checked)
	}
}

// shellLines returns the lines of the sh, bash and console blocks of a
// Markdown text, continuation lines joined and comments dropped.
func shellLines(md string) []string {
	var out []string
	in := false
	var cont string
	for _, l := range strings.Split(md, "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "```") {
			lang := strings.TrimPrefix(trimmed, "```")
			in = !in && (lang == "sh" || lang == "bash" || lang == "console" || lang == "shell")
			cont = ""
			continue
		}
		if !in {
			continue
		}
		trimmed = strings.TrimPrefix(trimmed, "$ ")
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if i := strings.Index(trimmed, " #"); i >= 0 {
			trimmed = strings.TrimSpace(trimmed[:i])
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cont += s + " "
			continue
		}
		out = append(out, cont+trimmed)
		cont = ""
	}
	return out
}

// splicefleetCalls splits a shell line into the argument lists of its
// splicefleet calls.
func splicefleetCalls(line string) [][]string {
	var out [][]string
	for _, part := range regexp.MustCompile(`&&|\|\||[;|]|\$\(|\)`).Split(line, -1) {
		part = strings.TrimSpace(part)
		if m := regexp.MustCompile(`^(\S+=\S*\s+)*sudo\s+`).FindString(part); m != "" {
			part = strings.TrimPrefix(part, m)
		}
		part = regexp.MustCompile(`^(\S+=\S*\s+)+`).ReplaceAllString(part, "")
		fields := shellFields(part)
		if len(fields) < 2 || fields[0] != "splicefleet" {
			continue
		}
		out = append(out, fields[1:])
	}
	return out
}

// shellFields splits on blanks outside quotes, dropping redirections.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	quote := rune(0)
	has := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, has = r, true
		case r == ' ' || r == '\t':
			if has || cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
			has = false
		default:
			cur.WriteRune(r)
		}
	}
	if has || cur.Len() > 0 {
		out = append(out, cur.String())
	}
	for i, f := range out {
		if f == ">" || f == "<" || f == "2>" || f == ">>" || strings.HasPrefix(f, ">") || strings.HasPrefix(f, "2>") {
			return out[:i]
		}
	}
	return out
}

// checkCall finds the command args name and checks its flags; it says
// what is wrong, or "".
func checkCall(root *cobra.Command, args []string) string {
	cmd := root
	i := 0
	for ; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			break
		}
		next := findSub(cmd, args[i])
		if next == nil {
			break
		}
		if next.Hidden {
			return next.CommandPath() + " is a hidden, deprecated name"
		}
		cmd = next
	}
	if cmd == root {
		return "no such command: " + strings.Join(args[:min(1, len(args))], " ")
	}
	if cmd.HasSubCommands() && i < len(args) && !strings.HasPrefix(args[i], "-") {
		return "no subcommand " + args[i] + " of " + cmd.CommandPath()
	}
	for _, a := range args[i:] {
		if a == "--" {
			break
		}
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil && name != "help" {
			return cmd.CommandPath() + " has no flag --" + name
		}
	}
	return ""
}

func findSub(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}
