package main

import (
	"os"
	"strings"
	"testing"
)

// agentConfig writes the test's agent.yaml, which the host verbs read as
// the machine's /etc/splicefleet/agent.yaml.
func (h *hostCLI) agentConfig(threshold string) string {
	h.t.Helper()
	p := h.write("agent.yaml", []byte("keyring: "+h.path("trusted.asc")+"\nthreshold: "+threshold+
		"\nstate_dir: "+h.stateDir+"\nkernel: sim:"+h.simDir+"\nunsafe_simulated_kernel: true\n"))
	if err := os.Chmod(p, 0o640); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// A bundle applied by hand meets the agent's threshold: with a
// configuration that requires 2 keys, apply (no flags) refuses a bundle
// one key signed, and applies it once a second key signed it. verify
// judges by the same policy.
func TestApplyByHandMeetsTheConfiguredThreshold(t *testing.T) {
	h := newHostCLI(t)
	bundle := h.publish(2, 1)
	h.agentConfig("2")
	h.ok("view") // creates the state directory, in the configuration's place
	before := h.snapshot()
	code, out, errs := h.run("apply", bundle)
	if code != exitRefused || out != "" || !strings.Contains(errs, "signature check failed: verification failed: 1 of 2 required signatures valid") {
		t.Fatalf("apply with 1 of 2 signatures: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := h.run("verify", bundle); code != exitRefused || !strings.Contains(errs, "1 of 2 required signatures valid") {
		t.Fatalf("verify with 1 of 2 signatures: exit %d %s", code, errs)
	}
	if after := h.snapshot(); !sameFiles(before, after) {
		t.Fatal("a refused apply changed the state or the kernel")
	}
	h.ok("sign", "--key", h.path("keyb.sec.asc"), bundle)
	if out := h.ok("verify", bundle); !strings.Contains(out, "signed by 2 of 2 required keys") {
		t.Fatalf("verify: %s", out)
	}
	if out := h.ok("apply", bundle); !strings.Contains(out, "applied cve-2026-0001 version 2") {
		t.Fatalf("apply: %s", out)
	}
	// The state directory and kernel were the configuration's.
	if v := h.view(); len(v.Patches) != 1 || !v.Patches[0].KernelEnabled {
		t.Fatalf("view: %+v", v)
	}
	// --config names another file; --threshold overrides, for a lab.
	other := h.write("lab.yaml", []byte("keyring: "+h.path("trusted.asc")+"\nthreshold: 2\n"))
	if code, _, errs := h.run("verify", "--config", other, "--threshold", "1", h.path("fix.splice")); code != exitOK {
		t.Fatalf("verify --threshold 1 over a configuration: exit %d %s", code, errs)
	}
}

// Without a configuration, a verb that needs a policy says so instead of
// falling back to a threshold of 1.
func TestApplyWithoutConfigurationSaysSo(t *testing.T) {
	h := newHostCLI(t)
	bundle := h.publish(1, 1)
	code, _, errs := h.run(h.host("apply", bundle)...)
	want := "splicefleet: no trust policy: there is no " + h.path("agent.yaml") + ", where this host's keyring and threshold are configured; give --config FILE, or --keyring KEYS.asc (and --threshold K) to use keys of your own\n"
	if code != exitError || errs != want {
		t.Fatalf("exit %d\n got %q\nwant %q", code, errs, want)
	}
	if _, err := os.Stat(h.stateDir); err == nil {
		t.Fatal("apply without a policy created the state directory")
	}
	if code, _, errs := h.run("verify", "--config", h.path("missing.yaml"), bundle); code != exitError || !strings.Contains(errs, "missing.yaml: no such file or directory") {
		t.Fatalf("verify --config missing: exit %d %s", code, errs)
	}
}

// A configuration, a keyring or a state directory that another user could
// write is refused, with the path, its owner and mode, and the fix.
func TestHostVerbsRefuseFilesOthersCanWrite(t *testing.T) {
	h := newHostCLI(t)
	bundle := h.publish(1, 1)
	cfg := h.agentConfig("1")
	for _, tc := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{cfg, 0o664, cfg + ": writable by group (owner uid 0, mode 0664): refusing a path another user could change; fix: chmod go-w " + cfg},
		{h.path("trusted.asc"), 0o646, "keyring: " + h.path("trusted.asc") + ": writable by others (owner uid 0, mode 0646)"},
	} {
		if err := os.Chmod(tc.path, tc.mode); err != nil {
			t.Fatal(err)
		}
		code, _, errs := h.run("apply", bundle)
		if code != exitError || !strings.Contains(errs, tc.want) {
			t.Errorf("%s mode %04o: exit %d\n got %s\nwant %s", tc.path, tc.mode, code, errs, tc.want)
		}
		if err := os.Chmod(tc.path, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(h.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.stateDir, 0o1777); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := h.run("apply", bundle); code != exitError || !strings.Contains(errs, h.stateDir+": writable by group and others") {
		t.Errorf("a world-writable state directory: exit %d %s", code, errs)
	}
	if code, _, errs := h.run("view"); code != exitError || !strings.Contains(errs, "fix: chmod go-w "+h.stateDir) {
		t.Errorf("view of a world-writable state directory: exit %d %s", code, errs)
	}
}
