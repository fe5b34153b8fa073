package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
