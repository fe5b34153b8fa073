package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestBootUnit checks the systemd unit that re-applies patches at boot:
// systemd-analyze accepts it, it runs before the network, and its command
// line is one this binary understands.
func TestBootUnit(t *testing.T) {
	raw, err := os.ReadFile("../../dist/systemd/splicefleet-boot.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{`Before=(.* )?network-pre\.target( |$)`, `Wants=network-pre\.target`, `DefaultDependencies=no`, `Type=oneshot`, `RemainAfterExit=yes`, `WantedBy=sysinit\.target`} {
		if !regexp.MustCompile(`(?m)^` + want).MatchString(unit) {
			t.Errorf("unit lacks a line matching %s", want)
		}
	}
	m := regexp.MustCompile(`(?m)^ExecStart=/usr/bin/splicefleet (.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("no ExecStart running /usr/bin/splicefleet")
	}
	args := strings.Fields(m[1])
	if args[0] != "boot" {
		t.Fatalf("ExecStart runs %q, want boot", args[0])
	}
	c := newCLI(t)
	c.ok(append(args, "--help")...)

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: run `make test-deps` (or apt-get install systemd)")
	}
	// Verify a copy whose ExecStart points at a binary that exists here.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "splicefleet-boot.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(unit, "/usr/bin/splicefleet", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// maxExposure is the highest `systemd-analyze security` exposure the units
// may have (0 is best, 10 worst; the agent's unit had 8.5 before it was
// sandboxed, the boot unit 9.5).
const maxExposure = 4.0

// exposure runs systemd-analyze security --offline=yes on a unit file and
// returns its overall exposure level.
func exposure(t *testing.T, unit string) float64 {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: run `make test-deps` (or apt-get install systemd)")
	}
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security %s: %v\n%s", unit, err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security %s printed no exposure level:\n%s", unit, out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestUnitsAreSandboxed: both units score at most maxExposure in
// systemd-analyze security, keep what a module loader needs (the
// capability bounding set the lab runs the agent with, the livepatch
// interface writable, /dev/kmsg readable), and the agent's unit checks
// the configured paths with agent --check-config before it starts instead
// of hard-coding two of them.
func TestUnitsAreSandboxed(t *testing.T) {
	for _, name := range []string{"splicefleet.service", "splicefleet-boot.service"} {
		path := "../../dist/systemd/" + name
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(raw)
		if e := exposure(t, path); e > maxExposure {
			t.Errorf("%s: exposure %.1f, want at most %.1f", name, e, maxExposure)
		} else {
			t.Logf("%s: exposure %.1f", name, e)
		}
		m := regexp.MustCompile(`(?m)^CapabilityBoundingSet=(.*)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Errorf("%s: no CapabilityBoundingSet=", name)
		} else if got, want := strings.Fields(m[1]), strings.Split(sandboxCaps, ","); !slices.Equal(got, want) {
			t.Errorf("%s: CapabilityBoundingSet=%v; the lab runs the agent with %v (exec-limited): keep them the same", name, got, want)
		}
		for _, line := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=-/sys/kernel/livepatch",
			"DeviceAllow=/dev/kmsg r", "SystemCallFilter=@system-service @module"} {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(unit) {
				t.Errorf("%s lacks %s", name, line)
			}
		}
		for _, never := range []string{"ProtectKernelModules=yes", "ProtectKernelLogs=yes", "PrivateDevices=yes"} {
			if strings.Contains(unit, "\n"+never) {
				t.Errorf("%s sets %s: the agent could not load modules or read the kernel log", name, never)
			}
		}
	}

	raw, err := os.ReadFile("../../dist/systemd/splicefleet.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	if strings.Contains(unit, "ConditionPathExists=") {
		t.Error("splicefleet.service hard-codes paths in ConditionPathExists=; the configuration names them")
	}
	pre := regexp.MustCompile(`(?m)^ExecStartPre=/usr/bin/splicefleet (.*)$`).FindStringSubmatch(unit)
	if pre == nil {
		t.Fatal("splicefleet.service has no ExecStartPre running /usr/bin/splicefleet")
	}
	args := strings.Fields(pre[1])
	if !slices.Equal(args, []string{"agent", "--check-config", "--config", "/etc/splicefleet/agent.yaml"}) {
		t.Fatalf("ExecStartPre runs %q, want agent --check-config --config /etc/splicefleet/agent.yaml", args)
	}
	// The command fails, and says why, on the configuration the package
	// installs until the operator puts the keys in place.
	c := newCLI(t)
	code, _, errs := c.run(append(args[:3], "../../dist/agent.yaml")...)
	if code != exitRefused || !strings.Contains(errs, "keyring of trusted publishers") || !strings.Contains(errs, "the agent would not start") {
		t.Errorf("check of the shipped configuration without keys: exit %d\n%s", code, errs)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "splicefleet.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(unit, "/usr/bin/splicefleet", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", "--man=no", copyPath).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestExecLimited runs a program through exec-limited, the lab's stand-in
// for the unit's CapabilityBoundingSet= and NoNewPrivileges=: as root, it
// holds the unit's three capabilities and nothing else, with
// no_new_privs set; a capability the unit does not name is refused.
func TestExecLimited(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("exec-limited is run as root, as the agent is; CI runs the tests as root")
	}
	cmd := exec.Command(os.Args[0], "exec-limited", "--", "grep", "-E", "^(CapEff|CapBnd|NoNewPrivs):", "/proc/self/status")
	cmd.Env = append(os.Environ(), "SPLICEFLEET_TEST_AS_CLI=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("exec-limited: %v\n%s", err, out)
	}
	// CAP_DAC_READ_SEARCH (2), CAP_SYS_MODULE (16), CAP_SYSLOG (34).
	want := regexp.MustCompile(`^CapEff:\s+0000000400010004\nCapBnd:\s+0000000400010004\nNoNewPrivs:\s+1\n$`)
	if !want.Match(out) {
		t.Errorf("the limited program's privileges:\n%s", out)
	}
	c := newCLI(t)
	if code, _, errs := c.run("exec-limited", "--keep-caps", "CAP_SYS_ADMIN", "--", "true"); code != exitError || !strings.Contains(errs, `capability "CAP_SYS_ADMIN": want CAP_SYS_MODULE, CAP_SYSLOG or CAP_DAC_READ_SEARCH`) {
		t.Errorf("a capability the unit does not keep: exit %d\n%s", code, errs)
	}
}
