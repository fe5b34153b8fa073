package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentCheckConfig runs agent --check-config, as the systemd unit does
// before the agent: a configuration whose files are in place passes (exit
// 0); each problem an operator can make (a key file moved away, a keyring
// others may write, a threshold no keyring meets, a readable gossip key,
// the simulated kernel without its opt-in, a state directory that is a
// file, a health command that is not there) is refused with exit 1 and a
// line that names it, and several problems are all listed.
func TestAgentCheckConfig(t *testing.T) {
	c := newCLI(t)
	c.ok("signing-key", "generate", "--uid", "Release <rel@example.com>", "--out", c.path("rel"))
	keyring := c.path("rel.pub.asc")
	gossipKeys := c.path("gossip.keys")
	if err := os.WriteFile(gossipKeys, []byte(strings.TrimSpace(c.ok("gossip-key", "generate"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := c.path("state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// config writes the configuration: extra's keys replace the base's.
	config := func(extra string) string {
		text := extra
		for _, line := range []string{"node_name: web-1", "keyring: " + keyring, "gossip_key_file: " + gossipKeys, "state_dir: " + stateDir} {
			key, _, _ := strings.Cut(line, ":")
			if !strings.Contains(extra, key+":") {
				text += line + "\n"
			}
		}
		return c.write("agent.yaml", []byte(text))
	}

	// kernel: linux; the tests run as root, with CAP_SYS_MODULE.
	code, out, errs := c.run("agent", "--check-config", "--config", config(""))
	if code != exitOK || !strings.Contains(out, "configuration "+c.path("agent.yaml")+": ok") || !strings.Contains(out, "ok: keyring "+keyring+": 1 trusted key(s), threshold 1") ||
		!strings.Contains(out, "ok: kernel: linux, with CAP_SYS_MODULE, the kernel log readable") || errs != "" {
		t.Fatalf("a good configuration: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = c.run("agent", "--check-config", "--config", config("kernel: sim:"+c.path("kernel")+"\nunsafe_simulated_kernel: true\n"))
	if code != exitOK || !strings.Contains(out, "the SIMULATED kernel") {
		t.Errorf("the simulated kernel, opted in: exit %d\n%s", code, out)
	}

	for _, tt := range []struct {
		name  string
		extra string
		setup func() func()
		want  string
	}{
		{"keyring moved", "keyring: " + c.path("elsewhere.asc") + "\n", nil, "keyring of trusted publishers: open " + c.path("elsewhere.asc") + ": no such file"},
		{"keyring others may write", "", func() func() {
			chmod(t, keyring, 0o666)
			return func() { chmod(t, keyring, 0o644) }
		}, "chmod go-w " + keyring},
		{"threshold above the keyring", "threshold: 2\n", nil, "threshold 2 is more than the 1 trusted key(s)"},
		{"gossip keys moved", "gossip_key_file: " + c.path("nokeys") + "\n", nil, "gossip_key_file: stat " + c.path("nokeys") + ": no such file"},
		{"gossip keys readable", "", func() func() {
			chmod(t, gossipKeys, 0o644)
			return func() { chmod(t, gossipKeys, 0o600) }
		}, "readable by others"},
		{"simulated kernel without the opt-in", "kernel: sim:" + c.path("kernel") + "\n", nil, "set unsafe_simulated_kernel: true"},
		{"state directory is a file", "state_dir: " + keyring + "\n", nil, "state_dir " + keyring + ": not a folder"},
		{"state directory others may write", "", func() func() {
			chmod(t, stateDir, 0o777)
			return func() { chmod(t, stateDir, 0o700) }
		}, "state_dir: " + stateDir + " unsafe ownership or permissions"},
		{"health command missing", "health_command: [/nonexistent/check-health]\n", nil, "health_command: exec: \"/nonexistent/check-health\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				defer tt.setup()()
			}
			code, out, errs := c.run("agent", "--check-config", "--config", config(tt.extra))
			if code != exitRefused || !strings.Contains(errs, "error: ") || !strings.Contains(errs, tt.want) || !strings.Contains(errs, "1 problem(s); the agent would not start") {
				t.Errorf("exit %d, want 1 and an error line with %q\nstdout:\n%s\nstderr:\n%s", code, tt.want, out, errs)
			}
		})
	}

	code, _, errs = c.run("agent", "--check-config", "--config", config("threshold: 3\nkernel: sim:x\ngossip_key_file: "+c.path("nokeys")+"\n"))
	if code != exitRefused || strings.Count(errs, "error: ") != 3 || !strings.Contains(errs, "3 problem(s)") {
		t.Errorf("three problems: exit %d\n%s", code, errs)
	}
	code, _, errs = c.run("agent", "--check-config", "--config", c.path("missing.yaml"))
	if code != exitRefused || !strings.Contains(errs, "missing.yaml: no such file") {
		t.Errorf("a configuration file that is not there: exit %d\n%s", code, errs)
	}
	// Nothing was made or changed: the check starts nothing.
	if entries, err := os.ReadDir(stateDir); err != nil || len(entries) != 0 {
		t.Errorf("the check wrote to the state directory: %v %v", entries, err)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "kernel")); !os.IsNotExist(err) {
		t.Errorf("the check made the simulated kernel's folder: %v", err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
