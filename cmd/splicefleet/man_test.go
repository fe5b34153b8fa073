package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/cmd/splicefleet/internal/configdoc"
)

// renderMan renders a page as man(1) shows it, as plain text, failing
// the test on any warning groff gives (lintian's check of man pages).
func renderMan(t *testing.T, page string) string {
	t.Helper()
	var out, errs bytes.Buffer
	// 120 columns: at 80, the header of the longest names overlaps the
	// manual's name in its middle.
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-rLL=120n", "-P-cbou", page)
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil || errs.Len() > 0 {
		t.Errorf("groff %s: %v\n%s", filepath.Base(page), err, errs.String())
	}
	// As lintian runs man on a page.
	lint := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page)
	lint.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "MANROFFSEQ=", "MANWIDTH=80")
	var lintErrs bytes.Buffer
	lint.Stderr = &lintErrs
	if err := lint.Run(); err != nil || lintErrs.Len() > 0 {
		t.Errorf("man --warnings -l %s: %v\n%s", filepath.Base(page), err, firstLines(lintErrs.String(), 5))
	}
	return out.String()
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// manSections are the sections of a rendered page, by title.
func manSections(text string) map[string]string {
	out := map[string]string{}
	title := ""
	for _, l := range strings.Split(text, "\n") {
		if regexp.MustCompile(`^[A-Z][A-Z ]+$`).MatchString(l) {
			title = l
			out[title] = ""
			continue
		}
		if title != "" {
			out[title] += l + "\n"
		}
	}
	return out
}

// unwrap joins a section's lines and squeezes blanks, so that a phrase
// can be found across man's line breaks (man hyphenates no word with a
// hyphen in it, but may break a line after one).
func unwrap(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "‐ ", "")
}

// TestManPages: gendocs writes a page for every command a user sees and
// the configuration's page; each renders without a warning, has its own
// name and section in its header and the sections an operator looks
// for, shows every option with its real default (and no empty one), its
// examples, its exit codes, the environment variables and the files it
// uses.
func TestManPages(t *testing.T) {
	c := newCLI(t)
	dir := c.path("man")
	c.ok("gendocs", "--man", dir)
	root := newRootCmd(&env{})
	root.InitDefaultVersionFlag()

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pages := map[string]bool{}
	for _, e := range entries {
		pages[e.Name()] = true
	}
	n := 0
	walkCommands(root, func(cmd *cobra.Command) {
		n++
		name := strings.ReplaceAll(cmd.CommandPath(), " ", "-")
		file := name + ".1"
		if !pages[file] {
			t.Errorf("no page %s", file)
			return
		}
		delete(pages, file)
		raw := string(c.read(filepath.Join("man", file)))
		if strings.Contains(raw, `=""`) {
			t.Errorf("%s shows an empty default", file)
		}
		text := renderMan(t, filepath.Join(dir, file))
		header := strings.ToUpper(name) + "(1)"
		if first := strings.TrimSpace(strings.SplitN(text, "\n", 2)[0]); !strings.HasPrefix(first, header) || !strings.HasSuffix(first, header) {
			t.Errorf("%s: header %q, want %s on both sides", file, first, header)
		}
		secs := manSections(text)
		for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"} {
			if strings.TrimSpace(secs[s]) == "" {
				t.Errorf("%s has no %s section", file, s)
			}
		}
		if got := unwrap(secs["NAME"]); !strings.HasPrefix(got, name+" - ") {
			t.Errorf("%s: NAME is %q", file, got)
		}
		if !strings.Contains(unwrap(secs["SYNOPSIS"]), cmd.CommandPath()) {
			t.Errorf("%s: SYNOPSIS %q", file, unwrap(secs["SYNOPSIS"]))
		}
		opts := unwrap(secs["OPTIONS"])
		for _, f := range options(cmd) {
			want := "--" + f.Name
			if f.Shorthand != "" {
				want = "-" + f.Shorthand + ", " + want
			}
			i := strings.Index(opts, want)
			if i < 0 {
				t.Errorf("%s: OPTIONS lacks %s", file, want)
				continue
			}
			if def, ok := shownDefault(f); ok && !strings.Contains(opts[i:], "(default "+def+")") {
				t.Errorf("%s: %s without its default %s", file, want, def)
			}
		}
		if cmd.Flags().Lookup("help") != nil && strings.Contains(opts, "--help") {
			t.Errorf("%s lists --help", file)
		}
		for _, line := range strings.Split(strings.TrimSpace(cmd.Example), "\n") {
			if !strings.Contains(secs["EXAMPLES"], strings.TrimSpace(line)) {
				t.Errorf("%s: EXAMPLES lacks %q", file, strings.TrimSpace(line))
			}
		}
		exits := unwrap(secs["EXIT STATUS"])
		for _, code := range exitsOf(cmd) {
			if !strings.Contains(exits, unwrap(strings.TrimSuffix(code.meaning, "."))) {
				t.Errorf("%s: EXIT STATUS lacks %d %q:\n%s", file, code.code, code.meaning, exits)
			}
		}
		envs := unwrap(secs["ENVIRONMENT"])
		if (talksToAgent(cmd) || cmd == root) != strings.Contains(envs, "SPLICEFLEET_CONTROL_SOCKET") {
			t.Errorf("%s: ENVIRONMENT and SPLICEFLEET_CONTROL_SOCKET: %s", file, envs)
		}
		if (cmd.Flags().Lookup("passphrase-file") != nil) && !strings.Contains(envs, "SPLICEFLEET_PASSPHRASE") {
			t.Errorf("%s: ENVIRONMENT lacks SPLICEFLEET_PASSPHRASE", file)
		}
		files := unwrap(secs["FILES"])
		if talksToAgent(cmd) && !strings.Contains(files, agent.DefaultConfig().ControlSocket) {
			t.Errorf("%s: FILES lacks the control socket: %s", file, files)
		}
		if actsOnHost(cmd) && (!strings.Contains(files, agent.DefaultStateDir) || !strings.Contains(files, defaultAgentConfig)) {
			t.Errorf("%s: FILES lacks the state directory or the configuration: %s", file, files)
		}
	})
	if n < 40 {
		t.Fatalf("only %d commands", n)
	}

	// What the pages of the commands operators script say.
	status := renderMan(t, filepath.Join(dir, "splicefleet-rollout-status.1"))
	for _, want := range []string{
		"0 the rollout is running, paused or done (with --watch: done)",
		"1 the rollout halted, rolled back, was revoked or expired",
		"2 usage error, or the agent could not be asked",
		"3 with --watch: --timeout passed before the rollout ended",
	} {
		if !strings.Contains(unwrap(manSections(status)["EXIT STATUS"]), want) {
			t.Errorf("rollout status: EXIT STATUS lacks %q", want)
		}
	}
	agentPage := unwrap(manSections(renderMan(t, filepath.Join(dir, "splicefleet-agent.1")))["OPTIONS"])
	for _, want := range []string{"--bind string gossip address (default 0.0.0.0:7946)", "--threshold n distinct trusted keys that must have signed (default 1)", "-v, --verbose"} {
		if !strings.Contains(agentPage, want) {
			t.Errorf("agent: OPTIONS lacks %q:\n%s", want, agentPage)
		}
	}
	rootPage := manSections(renderMan(t, filepath.Join(dir, "splicefleet.1")))
	for _, want := range []string{"SPLICEFLEET_CONTROL_SOCKET", "SPLICEFLEET_PASSPHRASE", "XDG_CACHE_HOME", "NO_COLOR"} {
		if !strings.Contains(rootPage["ENVIRONMENT"], want) {
			t.Errorf("splicefleet(1): ENVIRONMENT lacks %s", want)
		}
	}
	d := agent.DefaultConfig()
	for _, want := range []string{defaultAgentConfig, d.Keyring, d.GossipKeyFile, d.StateDir, d.ControlSocket} {
		if !strings.Contains(rootPage["FILES"], want) {
			t.Errorf("splicefleet(1): FILES lacks %s", want)
		}
	}
	if !strings.Contains(unwrap(rootPage["EXIT STATUS"]), "3 rollout status --watch: --timeout passed") {
		t.Errorf("splicefleet(1): EXIT STATUS lacks 3:\n%s", rootPage["EXIT STATUS"])
	}

	// The configuration's page: every key, with its default.
	const config = configPageName + ".5"
	if !pages[config] {
		t.Fatalf("no page %s", config)
	}
	delete(pages, config)
	text := renderMan(t, filepath.Join(dir, config))
	if first := strings.TrimSpace(strings.SplitN(text, "\n", 2)[0]); !strings.HasPrefix(first, "SPLICEFLEET-AGENT.YAML(5)") {
		t.Errorf("%s: header %q", config, first)
	}
	if !strings.Contains(text, "splicefleet "+version) {
		t.Errorf("%s does not name the version", config)
	}
	secs := manSections(text)
	for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "KEYS", "FILES", "EXAMPLES", "SEE ALSO"} {
		if strings.TrimSpace(secs[s]) == "" {
			t.Errorf("%s has no %s section", config, s)
		}
	}
	src, err := os.ReadFile("../../agent/config.go")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := configdoc.Agent(src)
	if err != nil {
		t.Fatal(err)
	}
	keysText := unwrap(secs["KEYS"])
	for _, k := range keys {
		def := k.Default
		if def == "" {
			def = "none"
		}
		if !strings.Contains(keysText, k.Name+" Type: "+k.Type+". Default: "+def+".") {
			t.Errorf("%s: KEYS lacks %s with its default %s", config, k.Name, def)
		}
	}
	// The page's example is a configuration the agent takes.
	example := secs["EXAMPLES"]
	start := strings.LastIndex(example[:strings.Index(example, "join:")], "\n") + 1
	example = example[start:]
	if _, err := agent.DecodeConfig(strings.NewReader(dedentText(example))); err != nil {
		t.Errorf("%s: the example does not decode: %v\n%s", config, err, example)
	}

	for p := range pages {
		t.Errorf("page %s of no command", p)
	}
}

// dedentText removes the indentation of the first line from every line.
func dedentText(s string) string {
	indent := s[:len(s)-len(strings.TrimLeft(s, " "))]
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, indent)
	}
	return strings.Join(lines, "\n")
}
