package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// TestGuidesRunOnALocalFleet runs the shell blocks of the publisher's
// guide and then of the operator's guide, in the order a reader meets
// them, in one working folder, against a fleet of three agents on
// simulated kernels: keys are generated, a bundle created, signed,
// checked with GnuPG, published with its rollout plan, watched, steered,
// forgotten, the gossip key rotated, a host re-keyed. A block that fails
// fails the test with its file, line and output, so the guides cannot
// drift from the binary.
//
// The harness supplies only what a guide's prose assumes but no command
// of it makes, each announced by an HTML comment before the block, which
// readers do not see:
//
//	<!-- guide-test: module NAME -->   a livepatch module file for the simulated kernel
//	<!-- guide-test: file NAME -->     the yaml block below is that file (a rollout plan:
//	                                   its health window cut to a second, its expiry
//	                                   moved to a day from now, and simulated hosts
//	                                   allowed)
//	<!-- guide-test: agents -->        the yaml block below configures the test's agents
//	<!-- guide-test: fleet -->         start those agents before the block
//	<!-- guide-test: gpg-import F -->  import F into the test's GnuPG home first
//	<!-- guide-test: stop NODE -->     stop that agent first, and wait until the
//	                                   others take it as failed
//	<!-- guide-test: wait-applied ID --> wait until the CLI's host runs patch ID
//	                                   (a reader waits for the canary too)
//	<!-- guide-test: exit N -->       the block ends with exit status N (rollout status
//	                                   of the guide's revoked rollout exits 1)
//	<!-- guide-test: skip REASON -->   not run here, for the reason given (the
//	                                   commands are still checked by
//	                                   TestGuidesMatchTheCommands)
//
// Commands run as written: `sudo` is the identity, the passphrase of
// the guides' protected key is "..." (the value the guides write for
// SPLICEFLEET_PASSPHRASE, kept in $XDG_RUNTIME_DIR/sf-pass), and the CLI
// finds the agent of web-0001, the canary, and its state through
// SPLICEFLEET_CONFIG once the fleet runs, as the operator's guide says
// for several agents on one machine.
func TestGuidesRunOnALocalFleet(t *testing.T) {
	if _, err := exec.LookPath("gpg"); err != nil {
		t.Fatal("gpg is missing (Debian package gnupg): run make test-deps")
	}
	g := newGuideRun(t)
	ran, skipped := 0, 0
	for _, name := range []string{"publishers-guide.md", "operators-guide.md"} {
		for _, b := range g.blocks[name] {
			r, s := g.do(name, b)
			ran, skipped = ran+r, skipped+s
		}
	}
	t.Logf("ran %d shell blocks of the guides; %d not run, each for its stated reason", ran, skipped)
	if ran < 20 {
		t.Fatalf("ran only %d shell blocks", ran)
	}
	if skipped*4 > ran {
		t.Fatalf("%d blocks skipped of %d: the guides are mostly not run", skipped, ran+skipped)
	}
}

// guideBlock is one fenced block of a guide with the directives before it.
type guideBlock struct {
	line       int
	lang, body string
	directives []string
}

// parseGuideBlocks returns the fenced blocks of a Markdown text.
func parseGuideBlocks(md string) []guideBlock {
	var out []guideBlock
	var pending []string
	var cur *guideBlock
	var body strings.Builder
	for i, l := range strings.Split(md, "\n") {
		trimmed := strings.TrimSpace(l)
		if cur != nil {
			if strings.HasPrefix(trimmed, "```") {
				cur.body = body.String()
				out = append(out, *cur)
				cur = nil
				continue
			}
			body.WriteString(l + "\n")
			continue
		}
		if d, ok := strings.CutPrefix(trimmed, "<!-- guide-test: "); ok {
			pending = append(pending, strings.TrimSpace(strings.TrimSuffix(d, "-->")))
			continue
		}
		if lang, ok := strings.CutPrefix(trimmed, "```"); ok {
			cur = &guideBlock{line: i + 1, lang: lang, directives: pending}
			body.Reset()
			pending = nil
			continue
		}
		if trimmed != "" {
			pending = nil
		}
	}
	return out
}

// guideRun is the working folder, the tools and the fleet the guides run
// against.
type guideRun struct {
	t       *testing.T
	dir     string
	env     []string
	blocks  map[string][]guideBlock
	agents  []*guideAgent
	agentsY string // the guide's agent configuration
}

type guideAgent struct {
	name, config, log string
	cmd               *exec.Cmd
}

func newGuideRun(t *testing.T) *guideRun {
	g := &guideRun{t: t, dir: t.TempDir(), blocks: map[string][]guideBlock{}}
	bin := filepath.Join(g.dir, ".bin")
	gnupg := filepath.Join(g.dir, ".gnupg")
	run := filepath.Join(g.dir, ".run")
	for _, d := range []string{bin, gnupg, run} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]string{
		"splicefleet": "#!/bin/sh\nSPLICEFLEET_TEST_AS_CLI=1 exec " + self + " \"$@\"\n",
		"sudo":        "#!/bin/sh\nexec \"$@\"\n",
	}
	for name, script := range tools {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pass := filepath.Join(run, "sf-pass")
	if err := os.WriteFile(pass, []byte("...\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := "batch\npinentry-mode loopback\npassphrase-file " + pass + "\n"
	if err := os.WriteFile(filepath.Join(gnupg, "gpg.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	g.env = append(os.Environ(),
		"PATH="+bin+":"+os.Getenv("PATH"),
		"GNUPGHOME="+gnupg,
		"HOME="+g.dir,
		"XDG_RUNTIME_DIR="+run,
		"SPLICEFLEET_PASSPHRASE=...",
	)
	for _, name := range []string{"publishers-guide.md", "operators-guide.md"} {
		raw, err := os.ReadFile(filepath.Join("../../docs", name))
		if err != nil {
			t.Fatal(err)
		}
		g.blocks[name] = parseGuideBlocks(string(raw))
		for _, b := range g.blocks[name] {
			for _, d := range b.directives {
				if d == "agents" {
					g.agentsY = b.body
				}
			}
		}
	}
	if g.agentsY == "" {
		t.Fatal("no guide has an agent configuration for the test (<!-- guide-test: agents -->)")
	}
	t.Cleanup(g.stopAll)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(g.agentLogs())
		}
	})
	return g
}

// do runs one block; it reports whether it ran or was skipped.
func (g *guideRun) do(guide string, b guideBlock) (ran, skipped int) {
	t := g.t
	where := fmt.Sprintf("%s:%d", guide, b.line)
	shell := b.lang == "sh" || b.lang == "bash" || b.lang == "shell"
	want := 0
	for _, d := range b.directives {
		verb, arg, _ := strings.Cut(d, " ")
		switch verb {
		case "skip":
			if strings.TrimSpace(arg) == "" {
				t.Fatalf("%s: a skip needs its reason", where)
			}
			t.Logf("%s: not run: %s", where, arg)
			return 0, 1
		case "module":
			g.write(arg, testModule(strings.TrimSuffix(arg, ".ko"), "nft_verdict_init"))
		case "file":
			g.write(arg, []byte(planForTest(b.body)))
		case "agents":
		case "fleet":
			g.startFleet()
		case "gpg-import":
			g.sh(where+" (import)", "gpg --import "+arg)
		case "stop":
			g.stop(arg)
		case "exit":
			n, err := strconv.Atoi(arg)
			if err != nil {
				t.Fatalf("%s: exit %q: %v", where, arg, err)
			}
			want = n
		case "wait-applied":
			g.waitApplied(arg)
		default:
			t.Fatalf("%s: unknown directive %q", where, d)
		}
	}
	if !shell {
		return 0, 0
	}
	g.shExit(where, b.body, want)
	return 1, 0
}

// sh runs a script in the working folder and fails the test when it
// fails.
func (g *guideRun) sh(where, script string) { g.shExit(where, script, 0) }

// shExit runs a script, stopping at its first failing command, and fails
// the test unless it exits with want.
func (g *guideRun) shExit(where, script string, want int) {
	g.t.Helper()
	cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = g.dir, g.env
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		g.t.Fatalf("%s: %v", where, err)
	}
	if code != want {
		g.t.Fatalf("%s: exit status %d, want %d\n%s\noutput:\n%s", where, code, want, script, out)
	}
	g.t.Logf("%s: ok (exit %d)", where, code)
}

func (g *guideRun) write(name string, data []byte) {
	g.t.Helper()
	if err := os.WriteFile(filepath.Join(g.dir, name), data, 0o644); err != nil {
		g.t.Fatal(err)
	}
}

// planForTest makes a guide's rollout plan fit a test: the health window
// becomes one second, the expiry a day from now, and simulated hosts may
// take part. The soaks stay as written, so the rollout waits in its
// first stage for the guides' commands to steer it.
func planForTest(plan string) string {
	plan = regexp.MustCompile(`(?m)^(\s*health_window:\s*)\S+`).ReplaceAllString(plan, "${1}1s")
	plan = regexp.MustCompile(`(?m)^expires:.*$`).ReplaceAllString(plan, "expires: "+time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	return plan + "allow_simulated: true\n"
}

// startFleet starts three agents from the guide's configuration, each
// with its own name, state, ports and socket; web-0001 is the canary.
func (g *guideRun) startFleet() {
	t := g.t
	if g.agents != nil {
		return
	}
	if _, err := os.Stat(filepath.Join(g.dir, "gossip.keys")); err != nil {
		g.sh("the fleet's gossip key", "splicefleet gossip-key generate > gossip.keys && chmod 600 gossip.keys")
	}
	seed := ""
	for _, name := range []string{"web-0001", "web-0007", "web-0131"} {
		bind, http := freeAddr(t), freeAddr(t)
		conf := strings.NewReplacer(
			"/tmp/sf/sim-1", filepath.Join(g.dir, "sf", name),
			"/tmp/sf", g.dir,
			"sim-1", name,
			"127.0.0.1:7956", bind,
			"127.0.0.1:7957", http,
		).Replace(g.agentsY)
		if seed == "" {
			conf = regexp.MustCompile(`(?m)^join:.*\n`).ReplaceAllString(conf, "")
			seed = bind
		} else {
			conf = strings.ReplaceAll(conf, "127.0.0.1:7946", seed)
		}
		ring := "web"
		if name == "web-0001" {
			ring = "canary"
		}
		conf += "anti_entropy: 1s\ntags: {role: web, ring: " + ring + "}\n"
		a := &guideAgent{name: name, config: filepath.Join(g.dir, name+".yaml"), log: filepath.Join(g.dir, name+".log")}
		if err := os.MkdirAll(filepath.Join(g.dir, "sf", name), 0o700); err != nil {
			t.Fatal(err)
		}
		g.write(name+".yaml", []byte(conf))
		a.cmd = exec.Command(filepath.Join(g.dir, ".bin", "splicefleet"), "agent", "--config", a.config)
		a.cmd.Env = g.env
		log, err := os.Create(a.log)
		if err != nil {
			t.Fatal(err)
		}
		a.cmd.Stdout, a.cmd.Stderr = log, log
		err = a.cmd.Start()
		log.Close()
		if err != nil {
			t.Fatal(err)
		}
		g.agents = append(g.agents, a)
	}
	g.env = append(g.env, "SPLICEFLEET_CONFIG="+filepath.Join(g.dir, "web-0001.yaml"))
	testutil.Eventually(t, 60*time.Second, "the guide's fleet has three members", func() error {
		out, err := g.cli("members", "--status", "alive")
		if err != nil {
			return err
		}
		if n := strings.Count(out, "alive"); n != 3 {
			return fmt.Errorf("%d alive:\n%s", n, out)
		}
		return nil
	})
}

// cli runs splicefleet as the guides' commands do.
func (g *guideRun) cli(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(g.dir, ".bin", "splicefleet"), args...)
	cmd.Dir, cmd.Env = g.dir, g.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("splicefleet %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (g *guideRun) waitApplied(id string) {
	testutil.Eventually(g.t, 60*time.Second, "web-0001 runs "+id, func() error {
		out, err := g.cli("view", id, "--json")
		if err != nil {
			return err
		}
		if !strings.Contains(out, `"state": "applied"`) && !strings.Contains(out, `"state":"applied"`) {
			return fmt.Errorf("not applied yet: %s", out)
		}
		return nil
	})
}

func (g *guideRun) stop(name string) {
	for _, a := range g.agents {
		if a.name == name && a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Kill()
			_ = a.cmd.Wait()
			testutil.Eventually(g.t, 60*time.Second, "the fleet takes "+name+" as failed", func() error {
				out, err := g.cli("members", "--status", "failed")
				if err != nil {
					return err
				}
				if !strings.Contains(out, name) {
					return fmt.Errorf("not failed yet:\n%s", out)
				}
				return nil
			})
			return
		}
	}
	g.t.Fatalf("no running agent %s to stop", name)
}

func (g *guideRun) stopAll() {
	for _, a := range g.agents {
		if a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Kill()
			_ = a.cmd.Wait()
		}
	}
}

func (g *guideRun) agentLogs() string {
	var b strings.Builder
	for _, a := range g.agents {
		out, _ := os.ReadFile(a.log)
		fmt.Fprintf(&b, "--- agent %s:\n%s\n", a.name, lastLines(string(out), 40))
	}
	return b.String()
}
