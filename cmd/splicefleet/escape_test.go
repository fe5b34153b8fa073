package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/safetext"
	"github.com/splicefleet/splicefleet/rollout"
)

// hostileText is what an attacker puts in a name, a reason or a
// description: an OSC 52 clipboard write, a screen clear, an 8-bit CSI,
// a carriage return that would overwrite the line, a right-to-left
// override, DEL, and a newline and a tab that would add a row and a
// column to a table.
const hostileText = "evil\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\u009b31m\rOK\u202eexe.txt\x7f\nfake row\tcol"

// noTerminalControls fails when out holds anything a terminal acts on:
// a control character other than newline and tab, a format character
// (bidirectional overrides), a line separator or invalid UTF-8.
func noTerminalControls(t *testing.T, what, out string) {
	t.Helper()
	for i, r := range out {
		switch {
		case r == '\n' || r == '\t':
		case r == utf8.RuneError:
			t.Errorf("%s: invalid UTF-8 at byte %d:\n%q", what, i, out)
			return
		case unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp):
			t.Errorf("%s: %U at byte %d reaches the terminal:\n%q", what, r, i, out)
			return
		}
	}
}

// TestInspectEscapesAHostileManifest: a bundle handed to the operator
// whose description holds escape sequences is shown by inspect and
// verify without them, and inspect --json still gives the description
// as it is.
func TestInspectEscapesAHostileManifest(t *testing.T) {
	c := newCLI(t)
	c.publish(1, 0)
	mod := c.write("evil.ko", livepatchModule)
	bundle := c.path("evil.splice")
	c.ok("create", "--module", mod, "--id", "cve-2026-0002", "--version", "1", "--description", hostileText, "-o", bundle)
	c.ok("sign", "--key", c.path("keya.sec.asc"), bundle)

	text := c.ok("inspect", bundle)
	noTerminalControls(t, "inspect", text)
	if !strings.Contains(text, `evil\u001b]52;c;cm0gLXJmIH4=\u0007\u001b[2J\u009b31m\u000dOK\u202eexe.txt\u007f\u000afake row\u0009col`) {
		t.Errorf("inspect does not show the description escaped:\n%s", text)
	}
	raw := c.ok("inspect", "--json", bundle)
	noTerminalControls(t, "inspect --json", raw)
	var in inspection
	if err := json.Unmarshal([]byte(raw), &in); err != nil || in.Manifest == nil || in.Manifest.Description != hostileText {
		t.Errorf("inspect --json: %v; the description must decode as it is", err)
	}
	noTerminalControls(t, "verify", c.ok("verify", "--keyring", c.path("trusted.asc"), bundle))
}

// TestRolloutStatusEscapesWhatHostsReport: the failed hosts' names and
// reasons, the hosts a stage waits for and the rollout's id reach
// `rollout status` escaped, one line per failed host.
func TestRolloutStatusEscapesWhatHostsReport(t *testing.T) {
	st := rollout.Status{ID: "fix" + hostileText, Digest: strings.Repeat("a", 64), Bundle: strings.Repeat("b", 64),
		State: rollout.Halted, Why: "halted: 1 host failed (" + hostileText + ")",
		Stages: []rollout.StageStatus{{Name: "canary" + hostileText, Open: true, Cohort: 2, Failed: 1, WaitingFor: []string{hostileText}}},
		Failed: []string{hostileText + ": health check: " + hostileText}}
	var out bytes.Buffer
	printStatus(safetext.Writer(&out), st) // stdout as runEnv gives it to commands
	noTerminalControls(t, "rollout status", out.String())
	if n := strings.Count(out.String(), "failed: "); n != 1 || strings.Contains(out.String(), "\nfake row") {
		t.Errorf("a newline in a reported name added lines to rollout status:\n%s", out.String())
	}
}

// TestMembersEscapeAHostileNodeName: an agent whose node name holds
// escape sequences (names come from other hosts' configurations) shows
// in `members` and `fleet status` escaped, and its own log holds none.
func TestMembersEscapeAHostileNodeName(t *testing.T) {
	c := newCLI(t)
	c.publish(1, 1)
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	keyFile := c.write("gossip.keys", []byte(key+"\n"))
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := c.path("host")
	socket := filepath.Join(dir, "ctl.sock")
	// YAML's double-quoted escapes: \e is ESC, \a BEL, \r CR, \x9b and
	// \u202e the C1 CSI and a right-to-left override.
	name := `evil\e]52;c;cm0gLXJmIH4=\a\e[2J\x9b31m\rOK\u202eexe\x7f`
	conf := fmt.Sprintf(`node_name: "%s"
bind: %s
http: %s
gossip_key_file: %s
keyring: %s
state_dir: %s
kernel: sim:%s
unsafe_simulated_kernel: true
control_socket: %s
tags: {role: "\e[41mweb"}
`, name, freeAddr(t), freeAddr(t), keyFile, c.path("trusted.asc"), filepath.Join(dir, "state"), filepath.Join(dir, "kernel"), socket)
	config := c.write("evil.yaml", []byte(conf))
	var log bytes.Buffer
	cmd := exec.Command(os.Args[0], "agent", "--config", config)
	cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var members string
	waitFor(t, 60*time.Second, "the agent lists itself", func() error {
		code, out, errs := c.run("members", "--control-socket", socket)
		if code != 0 || !strings.Contains(out, " alive") {
			return fmt.Errorf("members: %s%s", out, errs)
		}
		members = out
		return nil
	})
	noTerminalControls(t, "members", members)
	if !strings.Contains(members, `evil\u001b]52;c;cm0gLXJmIH4=\u0007\u001b[2J\u009b31m\u000dOK\u202eexe\u007f`) {
		t.Errorf("members does not show the name escaped:\n%s", members)
	}
	noTerminalControls(t, "members --json", c.ok("members", "--json", "--control-socket", socket))
	fleet := c.ok("fleet", "status", "--timeout", "1s", "--control-socket", socket)
	noTerminalControls(t, "fleet status", fleet)
	raw := c.ok("fleet", "status", "--json", "--timeout", "1s", "--control-socket", socket)
	noTerminalControls(t, "fleet status --json", raw)
	var st []agent.MemberStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil || len(st) != 1 || st[0].Tags["role"] != "\x1b[41mweb" {
		t.Errorf("fleet status --json: %v %+v; the tags must decode as they are", err, st)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	noTerminalControls(t, "the agent's log", log.String())
	if !strings.Contains(log.String(), `evil\x1b]52`) {
		t.Errorf("the log does not name the node, escaped:\n%s", log.String())
	}
}
