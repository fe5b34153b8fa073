package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/internal/fileperm"
	"github.com/splicefleet/splicefleet/rollout"
	"github.com/splicefleet/splicefleet/splice"
)

// A host set up with the simulated kernel says so at WARN when it starts,
// and gossips it: a plan that does not allow simulated hosts leaves every
// such host out (no host applies, none counts towards a gate), and one
// with allow_simulated takes them in.
func TestSimulatedHostsStayOutOfRealRollouts(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	agents := []*Agent{f.start(f.config("node-00")), f.start(f.config("node-01"))}
	waitMembers(t, agents, 2)
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "UNSAFE: this agent runs the simulated kernel") {
		t.Errorf("no WARN about the simulated kernel at start:\n%s", logs.String())
	}

	v, err := agents[0].Publish(f.bundle("real", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	real := signPlan(t, "id: real\nbundle: "+v.ManifestDigest+"\nstages: [{percent: 100}]\ngates: {health_window: 100ms}\nallow_simulated: false\n", f.signer)
	st, err := agents[0].StartRollout(real)
	if err != nil {
		t.Fatal(err)
	}
	// With no host to take it, the rollout's one stage has an empty
	// cohort: it ends without a host applying.
	waitRollout(t, agents, st.Digest, rollout.Done, 60*time.Second)
	for _, a := range agents {
		s, _ := a.Rollout(st.Digest)
		if s.Self.Targeted || s.Stages[0].Cohort != 0 || s.Stages[0].Healthy != 0 {
			t.Errorf("%s: targeted %t, cohort %d, healthy %d; want a simulated host in no cohort", a.Name(), s.Self.Targeted, s.Stages[0].Cohort, s.Stages[0].Healthy)
		}
		if got := kernelState(t, a); len(got) != 0 {
			t.Errorf("%s applied %v from a plan that does not allow simulated hosts", a.Name(), got)
		}
	}

	v2, err := agents[1].Publish(f.bundle("demo", 1, f.signer, 0))
	if err != nil {
		t.Fatal(err)
	}
	demo := signPlan(t, "id: demo\nbundle: "+v2.ManifestDigest+"\nstages: [{percent: 100}]\ngates: {health_window: 100ms}\nallow_simulated: true\n", f.signer)
	st2, err := agents[1].StartRollout(demo)
	if err != nil {
		t.Fatal(err)
	}
	waitRollout(t, agents, st2.Digest, rollout.Done, 60*time.Second)
	for _, a := range agents {
		s, _ := a.Rollout(st2.Digest)
		if got := kernelState(t, a); fmt.Sprint(got) != "[lp_demo]" || s.Stages[0].Healthy != 2 {
			t.Errorf("%s: kernel runs %v, %d healthy; with allow_simulated both hosts take part", a.Name(), got, s.Stages[0].Healthy)
		}
	}
}

// An agent for the real kernel that lacks CAP_SYS_MODULE (run as a plain
// user, or under a capability bounding set without it) refuses to start
// and says why, before it creates its state or listens anywhere: its
// first apply would fail, and the failure would halt the rollout on
// every host.
func TestLinuxKernelNeedsCapSysModule(t *testing.T) {
	f := newTestFleet(t)
	cfg := f.config("node-00")
	cfg.Kernel, cfg.UnsafeSimulatedKernel = "linux", false
	root := t.TempDir()
	status := filepath.Join(root, "proc", "self", "status")
	if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
		t.Fatal(err)
	}
	// A plain user's set: nothing effective.
	if err := os.WriteFile(status, []byte("Name:\tsplicefleet\nUid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The check the systemd unit runs first says the same.
	if _, problems := checkConfig(cfg, root); len(problems) != 1 || !errors.Is(problems[0], ErrNoCapSysModule) {
		t.Errorf("check-config without CAP_SYS_MODULE: %v", problems)
	}
	a, err := New(Options{Config: cfg, Logger: warnLogger(t), kernelRoot: root})
	if err == nil {
		a.closeListeners()
		t.Fatal("an agent without CAP_SYS_MODULE started with kernel: linux")
	}
	if !errors.Is(err, ErrNoCapSysModule) || !strings.Contains(err.Error(), "needs CAP_SYS_MODULE") || !strings.Contains(err.Error(), "halt the rollout across the fleet") {
		t.Errorf("refusal does not say why: %v", err)
	}
	if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused agent made its state directory: %v", err)
	}
	if _, err := os.Stat(cfg.ControlSocket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused agent made its control socket: %v", err)
	}
}

// A local user who can write the keyring (mode 0666, or a group-writable
// folder above it) adds a key of their own and waits for the next reload.
// The reload refuses the keyring: it says so at WARN, counts it, and
// keeps the policy it had, so a bundle signed by the added key is still
// refused. Once the keyring is private again, the same reload goes
// through.
func TestReloadRefusesAKeyringOthersMayWrite(t *testing.T) {
	f := newTestFleet(t)
	logs := f.captureLogs()
	cfg := f.config("host")
	h := f.start(cfg)
	mallory := newSigner(t, "Mallory")
	writeKeyring(t, f.keyring, f.signer, mallory)
	check := func(want error) {
		t.Helper()
		raw, err := signedBundle(t, splice.Manifest{ID: "mallory", Version: 1}, 0, mallory).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.Publish(raw)
		if (want == nil) != (err == nil) {
			t.Fatalf("a bundle signed by the key added to the keyring: %v", err)
		}
	}

	for _, tt := range []struct {
		name    string
		path    string
		mode    os.FileMode
		refused float64
	}{
		{"world-writable keyring", f.keyring, 0o666, 1},
		{"group-writable keyring", f.keyring, 0o664, 2},
		{"world-writable folder", filepath.Dir(f.keyring), 0o777, 3},
	} {
		if err := os.Chmod(tt.path, tt.mode); err != nil {
			t.Fatal(err)
		}
		err := h.Reload(cfg)
		if !errors.Is(err, fileperm.ErrUnsafe) || !strings.Contains(err.Error(), "chmod go-w "+tt.path) {
			t.Errorf("%s: reload %v, want a refusal naming the fix", tt.name, err)
		}
		if got := metricValue(t, h, "splicefleet_config_reloads_total", "result", "refused"); got != tt.refused {
			t.Errorf("%s: %g reloads counted refused, want %g", tt.name, got, tt.refused)
		}
		check(errors.New("refused"))
		if err := os.Chmod(tt.path, map[bool]os.FileMode{true: 0o644, false: 0o700}[tt.path == f.keyring]); err != nil {
			t.Fatal(err)
		}
	}
	waitLog(t, logs, "level=WARN", "reload refused; keeping the running configuration and trust policy", "unsafe ownership or permissions")
	if got := metricValue(t, h, "splicefleet_config_reloads_total", "result", "applied"); got != 0 {
		t.Errorf("%g reloads counted applied", got)
	}

	// The same keyring, private, is read: the added key is trusted now.
	if err := h.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, h, "splicefleet_config_reloads_total", "result", "applied"); got != 1 {
		t.Errorf("%g reloads counted applied, want 1", got)
	}
	check(nil)
}

// A sandbox set too tight (the kernel log hidden, as ProtectKernelLogs=
// or PrivateDevices= do) is refused at start and by the check the unit
// runs first, not at the first apply.
func TestLinuxKernelNeedsTheKernelLog(t *testing.T) {
	f := newTestFleet(t)
	cfg := f.config("node-00")
	cfg.Kernel, cfg.UnsafeSimulatedKernel = "linux", false
	root := t.TempDir()
	status := filepath.Join(root, "proc", "self", "status")
	if err := os.MkdirAll(filepath.Dir(status), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(status, []byte("CapEff:\t0000000000010000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, problems := checkConfig(cfg, root)
	if len(problems) != 1 || !errors.Is(problems[0], os.ErrNotExist) || !strings.Contains(problems[0].Error(), "read the kernel log") ||
		!strings.Contains(problems[0].Error(), "/dev/kmsg readable") {
		t.Errorf("check-config without the kernel log: %v", problems)
	}
	if a, err := New(Options{Config: cfg, Logger: warnLogger(t), kernelRoot: root}); err == nil {
		a.closeListeners()
		t.Fatal("an agent that cannot read the kernel log started")
	} else if !strings.Contains(err.Error(), "read the kernel log") {
		t.Errorf("refusal: %v", err)
	}
	if _, err := os.Stat(cfg.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused agent made its state directory: %v", err)
	}
}
