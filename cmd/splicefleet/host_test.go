package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/splice"
)

// hostCLI is a cli with a simulated kernel and a state directory.
type hostCLI struct {
	*cli
	simDir, stateDir string
}

func newHostCLI(t *testing.T) *hostCLI {
	c := newCLI(t)
	h := &hostCLI{cli: c, simDir: c.path("kernel"), stateDir: c.path("state")}
	if err := sim.Init(h.simDir, sim.Config{}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *hostCLI) host(args ...string) []string {
	return append(args, "--state-dir", h.stateDir, "--kernel", "sim:"+h.simDir)
}

func (h *hostCLI) view() *splice.HostView {
	h.t.Helper()
	var v splice.HostView
	if err := json.Unmarshal([]byte(h.ok(h.host("view", "--json")...)), &v); err != nil {
		h.t.Fatal(err)
	}
	return &v
}

func TestApplyViewUndoBoot(t *testing.T) {
	h := newHostCLI(t)
	bundle := h.publish(1, 1)
	out := h.ok(h.host("apply", "--keyring", h.path("trusted.asc"), bundle)...)
	if !strings.Contains(out, "applied cve-2026-0001 version 2 (module livepatch_fix) to 6.1.0-56-cloud-amd64 [SIMULATED kernel]") {
		t.Fatalf("apply: %s", out)
	}
	out = h.ok(h.host("apply", "--keyring", h.path("trusted.asc"), bundle)...)
	if !strings.Contains(out, "already applied") {
		t.Fatalf("apply twice: %s", out)
	}
	text := h.ok(h.host("view")...)
	for _, want := range []string{`^SIMULATED kernel \(a test double, not a real kernel\) 6\.1\.0-56-cloud-amd64 x86_64`, `(?m)^1\s+cve-2026-0001\s+2\s+applied\s+livepatch_fix\s+enabled\s+\S+\s+cmdline_proc_show$`} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("view lacks %s:\n%s", want, text)
		}
	}
	if want := "(?m)^  kernel: livepatch_fix stack order 1, replace false, vmlinux patched$"; !regexp.MustCompile(want).MatchString(text) {
		t.Errorf("view lacks the kernel's own record %s:\n%s", want, text)
	}
	v := h.view()
	if len(v.Patches) != 1 || v.Patches[0].State != splice.StateApplied || !v.Patches[0].KernelEnabled || !v.Kernel.Simulated {
		t.Fatalf("view --json: %+v", v)
	}
	if k := v.Patches[0].Kernel; k == nil || k.StackOrder != 1 || k.Replace == nil || *k.Replace || len(k.Objects) != 1 || !k.Objects[0].Patched {
		t.Fatalf("view --json: the kernel's record %+v", k)
	}

	// Reboot the simulated host: boot re-applies.
	if err := sim.Reboot(h.simDir, ""); err != nil {
		t.Fatal(err)
	}
	if v := h.view(); v.Patches[0].InKernel {
		t.Fatal("patch still in the kernel after a reboot")
	}
	// Without the agent's configuration or --keyring, boot has no policy
	// to verify the stored bundle against: it says so and loads nothing.
	if code, _, errs := h.run(h.host("boot")...); code != exitError || !strings.Contains(errs, "no trust policy to verify the stored bundle against") {
		t.Fatalf("boot without a policy: exit %d, %s", code, errs)
	}
	if v := h.view(); v.Patches[0].InKernel || v.Patches[0].State != splice.StateApplied {
		t.Fatalf("boot without a policy changed the host: %+v", v.Patches[0])
	}
	out = h.ok(h.host("boot", "--keyring", h.path("trusted.asc"))...)
	if !strings.Contains(out, "re-applied cve-2026-0001 version 2") {
		t.Fatalf("boot: %s", out)
	}
	if v := h.view(); !v.Patches[0].KernelEnabled {
		t.Fatal("boot did not re-apply")
	}

	out = h.ok(h.host("undo", "cve-2026-0001")...)
	if !strings.Contains(out, "undone cve-2026-0001 version 2") {
		t.Fatalf("undo: %s", out)
	}
	if v := h.view(); v.Patches[0].State != splice.StateReverted || v.Patches[0].InKernel {
		t.Fatalf("after undo: %+v", v.Patches[0])
	}
	if code, _, errs := h.run(h.host("undo", "cve-2026-0001")...); code != exitError || !strings.Contains(errs, "not applied on this host") {
		t.Fatalf("undo twice: %d %s", code, errs)
	}
	if code, _, errs := h.run(h.host("undo")...); code != exitError || !strings.Contains(errs, "give one patch id, or --all") {
		t.Fatalf("undo without id: %d %s", code, errs)
	}
	if out := h.ok(h.host("undo", "--all")...); !strings.Contains(out, "nothing to undo") {
		t.Fatalf("undo --all: %s", out)
	}
}

// TestApplyRefusalChangesNothing: refused bundles exit 1 with one line and
// leave the state directory and the kernel as they were.
func TestApplyRefusalChangesNothing(t *testing.T) {
	h := newHostCLI(t)
	bundle := h.publish(1, 1)
	h.ok(h.host("view")...) // create the state directory
	raw := h.read("fix.splice")
	b, err := splice.Decode(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(raw), string(b.Module)) + len(b.Module)/2
	raw[i] ^= 1
	h.write("tampered.splice", raw)
	if err := sim.Init(h.c2("other"), sim.Config{Release: "6.1.0-57-cloud-amd64"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"tampered", h.host("apply", "--keyring", h.path("trusted.asc"), h.path("tampered.splice")), "module does not match the manifest"},
		{"untrusted", h.host("apply", "--keyring", h.path("keya.pub.asc"), "--threshold", "2", bundle), "trust policy: threshold 2 is more than the 1 trusted key(s) in the keyring"},
		{"wrong kernel", []string{"apply", "--keyring", h.path("trusted.asc"), bundle, "--state-dir", h.stateDir, "--kernel", "sim:" + h.c2("other")},
			"bundle does not target this kernel: cve-2026-0001 version 2 is for kernel 6.1.0-56-cloud-amd64; this host runs 6.1.0-57-cloud-amd64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshot()
			code, _, errs := h.run(tc.args...)
			if code == 0 || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Fatalf("exit %d, stderr %q, want %q", code, errs, tc.want)
			}
			after := h.snapshot()
			for k, v := range before {
				if filepath.Base(k) != "lock" && after[k] != v {
					t.Errorf("%s changed", k)
				}
			}
		})
	}
}

func (h *hostCLI) c2(name string) string { return h.path(name) }

func TestNoLivepatchKernel(t *testing.T) {
	h := newHostCLI(t)
	bundle := h.publish(1, 1)
	if err := sim.Init(h.simDir, sim.Config{NoLivepatch: true}); err != nil {
		t.Fatal(err)
	}
	code, _, errs := h.run(h.host("apply", "--keyring", h.path("trusted.asc"), bundle)...)
	if code != exitError || errs != "splicefleet: this kernel has no livepatch support (no /sys/kernel/livepatch; it needs CONFIG_LIVEPATCH)\n" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(h.stateDir); err != nil {
		t.Fatal(err)
	}
}

// TestViewOnePatch: view ID shows one patch in full (state, reason,
// module, digests, CVEs, description, signers), view ID@VERSION one
// version; an unknown patch exits 1, a malformed version 2.
func TestViewOnePatch(t *testing.T) {
	h := newHostCLI(t)
	bundle := h.publish(1, 1)
	h.ok(h.host("apply", "--keyring", h.path("trusted.asc"), bundle)...)
	out := h.ok(h.host("view", "cve-2026-0001")...)
	for _, want := range []string{`(?m)^patch:\s+cve-2026-0001 version 2$`, `(?m)^state:\s+applied$`, `(?m)^stack:\s+1 \(1 is the oldest\)$`,
		`(?m)^kernel:\s+enabled, stack order 1, replace false, vmlinux patched$`, `(?m)^module:\s+livepatch_fix$`, `(?m)^module sha256:\s+[0-9a-f]{64}$`,
		`(?m)^manifest:\s+[0-9a-f]{64}$`, `(?m)^functions:\s+cmdline_proc_show$`, `(?m)^cves:\s+CVE-2026-0001$`, `(?m)^description:\s+demo fix$`,
		`(?m)^signers:\s+[0-9A-F]{40}$`, `(?m)^built for:\s+6\.1\.0-56-cloud-amd64 x86_64`, `(?m)^applied:\s+\d{4}-`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("view cve-2026-0001 lacks %s:\n%s", want, out)
		}
	}
	var one []splice.PatchView
	if err := json.Unmarshal([]byte(h.ok(h.host("view", "cve-2026-0001@2", "--json")...)), &one); err != nil || len(one) != 1 || one[0].Version != 2 || !one[0].KernelEnabled {
		t.Errorf("view ID@VERSION --json: %+v, %v", one, err)
	}
	h.ok(h.host("undo", "cve-2026-0001")...)
	if out := h.ok(h.host("view", "cve-2026-0001")...); !regexp.MustCompile(`(?m)^state:\s+reverted$`).MatchString(out) || !regexp.MustCompile(`(?m)^kernel:\s+not loaded$`).MatchString(out) {
		t.Errorf("view after undo:\n%s", out)
	}
	for _, tt := range []struct {
		key  string
		code int
		want string
	}{
		{"cve-2026-9999", 1, "no patch cve-2026-9999 on this host"},
		{"cve-2026-0001@3", 1, "no patch cve-2026-0001@3 on this host"},
		{"cve-2026-0001@two", 2, "want ID or ID@VERSION"},
	} {
		code, out, errs := h.run(h.host("view", tt.key)...)
		if code != tt.code || !strings.Contains(errs, tt.want) {
			t.Errorf("view %s: exit %d, want %d and %q\n%s%s", tt.key, code, tt.code, tt.want, out, errs)
		}
	}
}

func TestOpenKernel(t *testing.T) {
	for _, bad := range []string{"", "sim:", "windows", "sim"} {
		if _, err := openHostKernel(bad, nil); err == nil || !strings.Contains(err.Error(), `want "linux" or "sim:DIR"`) {
			t.Errorf("openHostKernel(%q) = %v", bad, err)
		}
	}
	k, err := openHostKernel("sim:"+t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(k.Note(), "SIMULATED") {
		t.Errorf("note %q", k.Note())
	}
	info, err := k.Info()
	if err != nil || !info.Simulated {
		t.Fatalf("info %+v %v", info, err)
	}
}

// TestViewOffersOnlyItsFlags: view only reads, so its help offers no
// flag that only changes what apply, undo and boot do (the transition
// timeouts, the trust policy), and a script that gives one is told.
func TestViewOffersOnlyItsFlags(t *testing.T) {
	c := newCLI(t)
	help := c.ok("view", "--help")
	for _, flag := range []string{"--transition-timeout", "--signal-timeout", "--keyring", "--threshold", "--health-window", "keyring, threshold"} {
		if strings.Contains(help, flag) {
			t.Errorf("view --help offers %s:\n%s", flag, help)
		}
	}
	for _, flag := range []string{"--state-dir", "--kernel", "--config", "--json", "-v, --verbose"} {
		if !strings.Contains(help, flag) {
			t.Errorf("view --help lacks %s:\n%s", flag, help)
		}
	}
	for _, verb := range []string{"apply", "undo", "boot"} {
		help := c.ok(verb, "--help")
		for _, flag := range []string{"--transition-timeout", "--signal-timeout", "--keyring"} {
			if !strings.Contains(help, flag) {
				t.Errorf("%s --help lacks %s", verb, flag)
			}
		}
	}
	if code, _, errs := c.run("view", "--transition-timeout", "1s"); code != exitError || !strings.Contains(errs, "unknown flag: --transition-timeout") {
		t.Errorf("view --transition-timeout: exit %d, %s", code, errs)
	}
}
