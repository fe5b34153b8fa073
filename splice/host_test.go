package splice_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/agent"
	"github.com/splicefleet/splicefleet/internal/fakemodule"
	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

// hostEnv is one simulated host: a kernel folder, a state folder, a
// publisher key and a trust policy.
type hostEnv struct {
	t        *testing.T
	simDir   string
	stateDir string
	signer   *signing.Signer
	policy   *signing.Policy
}

func newHostEnv(t *testing.T) *hostEnv {
	t.Helper()
	e := &hostEnv{t: t, simDir: filepath.Join(t.TempDir(), "kernel"), stateDir: filepath.Join(t.TempDir(), "state")}
	if err := sim.Init(e.simDir, sim.Config{}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, 1)
	e.signer = f.signers[0]
	e.policy = f.policy(t, 1)
	return e
}

func (e *hostEnv) kernel() *agent.HostKernel {
	e.t.Helper()
	sk, err := sim.Open(e.simDir)
	if err != nil {
		e.t.Fatal(err)
	}
	k := agent.NewHostKernel(sk, true)
	k.Timeouts = kmod.Timeouts{Stall: 50 * time.Millisecond, AfterSignal: 50 * time.Millisecond, Poll: time.Millisecond}
	return k
}

func (e *hostEnv) open(opts ...func(*splice.HostConfig)) (*splice.Host, error) {
	cfg := splice.HostConfig{StateDir: e.stateDir, Kernel: e.kernel(), Inspect: agent.InspectModule, Policy: e.policy,
		Now: func() time.Time { return now }, LockWait: 50 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	return splice.OpenHost(context.Background(), cfg)
}

func (e *hostEnv) mustOpen(opts ...func(*splice.HostConfig)) *splice.Host {
	e.t.Helper()
	h, err := e.open(opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(h.Close)
	return h
}

type bundleOpt func(m *splice.Manifest)

// bundle builds a signed bundle for patch id, version, with a module named
// livepatch_<id>_<version>.
func (e *hostEnv) bundle(id string, version uint64, functions []string, opts ...bundleOpt) *splice.Bundle {
	e.t.Helper()
	return e.bundleNamed(strings.ReplaceAll("livepatch_"+id, "-", "_")+"_"+string(rune('0'+version)), id, version, functions, opts...)
}

// bundleNamed is bundle with the module named name.
func (e *hostEnv) bundleNamed(name, id string, version uint64, functions []string, opts ...bundleOpt) *splice.Bundle {
	e.t.Helper()
	mod := fakemodule.Build(fakemodule.Options{Name: name, Livepatch: true, Functions: functions})
	m := splice.Manifest{ID: id, Version: version, Target: splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
		Module: splice.ModuleRef{Name: name}, Functions: functions, Created: now.Add(-time.Hour)}
	for _, o := range opts {
		o(&m)
	}
	b, err := splice.New(m, mod)
	if err != nil {
		e.t.Fatal(err)
	}
	sig, err := e.signer.Sign(b.Manifest, now.Add(-time.Minute))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := b.AddSignature(sig); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *hostEnv) apply(h *splice.Host, b *splice.Bundle) *splice.Patch {
	e.t.Helper()
	p, err := h.Apply(context.Background(), b, e.policy)
	if err != nil {
		e.t.Fatalf("apply: %v", err)
	}
	return p
}

// kernelState returns "name:enabled" for every livepatch the simulated
// kernel has, in stack order.
func (e *hostEnv) kernelState() string {
	e.t.Helper()
	k, err := sim.Open(e.simDir)
	if err != nil {
		e.t.Fatal(err)
	}
	lps, err := k.Livepatches()
	if err != nil {
		e.t.Fatal(err)
	}
	var parts []string
	for _, lp := range lps {
		s := lp.Name + ":off"
		if lp.Enabled {
			s = lp.Name + ":on"
		}
		parts = append(parts, s)
	}
	mods, err := k.Modules()
	if err != nil {
		e.t.Fatal(err)
	}
	var loaded []string
	for _, m := range mods {
		loaded = append(loaded, m.Name)
	}
	return strings.Join(parts, " ") + " | modules " + strings.Join(loaded, " ")
}

// states returns "id@version=state" for every journaled patch, as View
// orders them.
func states(t *testing.T, h *splice.Host) string {
	t.Helper()
	v, err := h.View()
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, p := range v.Patches {
		parts = append(parts, p.ID+"@"+string(rune('0'+p.Version))+"="+string(p.State))
	}
	return strings.Join(parts, " ")
}

// snapshot reads every file of the state and kernel folders, to assert that
// a refusal changed nothing.
func (e *hostEnv) snapshot() map[string]string {
	e.t.Helper()
	files := map[string]string{}
	for _, dir := range []string{e.stateDir, e.simDir} {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Base(p) == "lock" {
				return err
			}
			b, _ := os.ReadFile(p)
			files[p] = string(b)
			return nil
		})
	}
	return files
}

func TestApplyViewUndo(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	p := e.apply(h, e.bundle("cve-1", 1, []string{"f1"}))
	if p.State != splice.StateApplied || p.Stack != 1 || len(p.Signers) != 1 {
		t.Fatalf("patch %+v", p)
	}
	if got := e.kernelState(); got != "livepatch_cve_1_1:on | modules livepatch_cve_1_1" {
		t.Fatalf("kernel: %s", got)
	}
	v, err := h.View()
	if err != nil {
		t.Fatal(err)
	}
	if !v.Kernel.Simulated || len(v.Patches) != 1 || !v.Patches[0].InKernel || !v.Patches[0].KernelEnabled || v.Patches[0].AppliedAt.IsZero() {
		t.Fatalf("view: %+v", v)
	}
	if _, err := h.Apply(context.Background(), e.bundle("cve-1", 1, []string{"f1"}), e.policy); !errors.Is(err, splice.ErrAlreadyApplied) {
		t.Fatalf("second apply: %v", err)
	}
	if _, _, err := h.Undo(context.Background(), "cve-1"); err != nil {
		t.Fatal(err)
	}
	if got := e.kernelState(); got != " | modules " {
		t.Fatalf("kernel after undo: %q", got)
	}
	if got := states(t, h); got != "cve-1@1=reverted" {
		t.Fatalf("states: %s", got)
	}
	if _, _, err := h.Undo(context.Background(), "cve-1"); !errors.Is(err, splice.ErrNotApplied) {
		t.Fatalf("undo twice: %v", err)
	}
	// Applying again after an undo is allowed.
	e.apply(h, e.bundle("cve-1", 1, []string{"f1"}))
	if got := states(t, h); got != "cve-1@1=applied" {
		t.Fatalf("states: %s", got)
	}
}

func TestStackOrderIsEnforced(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("a", 1, []string{"fa"}))
	e.apply(h, e.bundle("b", 1, []string{"fb"}))
	e.apply(h, e.bundle("c", 1, []string{"fc"}))
	before, kernel := e.snapshot(), e.kernelState()
	_, _, err := h.Undo(context.Background(), "a")
	if !errors.Is(err, splice.ErrStack) || !strings.Contains(err.Error(), "undo b version 1, c version 1 first") {
		t.Fatalf("undo below the top: %v", err)
	}
	if !sameMap(before, e.snapshot()) || e.kernelState() != kernel {
		t.Fatal("a refused undo changed state or kernel")
	}
	done, err := h.UndoAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, p := range done {
		order = append(order, p.ID)
	}
	if strings.Join(order, ",") != "c,b,a" {
		t.Fatalf("undo --all order %v", order)
	}
	if got := e.kernelState(); got != " | modules " {
		t.Fatalf("kernel: %q", got)
	}
}

func TestAtomicReplaceSupersedes(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("a", 1, []string{"fa"}))
	e.apply(h, e.bundle("b", 1, []string{"fb"}))
	e.apply(h, e.bundle("cumulative", 1, []string{"fa", "fb"}, func(m *splice.Manifest) { m.Replace = true }))
	if got := states(t, h); got != "cumulative@1=applied a@1=replaced b@1=replaced" {
		t.Fatalf("states: %s", got)
	}
	if got := e.kernelState(); got != "livepatch_cumulative_1:on | modules livepatch_cumulative_1" {
		t.Fatalf("kernel: %s", got)
	}
}

func TestVersionRules(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("x", 2, []string{"f", "g"}))
	before, kernel := e.snapshot(), e.kernelState()
	_, err := h.Apply(context.Background(), e.bundle("x", 1, []string{"f", "g"}), e.policy)
	if !errors.Is(err, splice.ErrDowngrade) || !strings.Contains(err.Error(), "x version 2 is applied; version 1 is older") {
		t.Fatalf("downgrade: %v", err)
	}
	_, err = h.Apply(context.Background(), e.bundle("x", 3, []string{"f"}), e.policy)
	if !errors.Is(err, splice.ErrStack) || !strings.Contains(err.Error(), "but not g") {
		t.Fatalf("upgrade that drops a function: %v", err)
	}
	if !sameMap(before, e.snapshot()) || e.kernelState() != kernel {
		t.Fatal("a refused apply changed state or kernel")
	}
	// An upgrade whose module has the applied version's name would fail
	// in the kernel (EEXIST): refused before it is touched.
	_, err = h.Apply(context.Background(), e.bundleNamed("livepatch_x_2", "x", 3, []string{"f", "g", "h"}), e.policy)
	if !errors.Is(err, splice.ErrStack) || !strings.Contains(err.Error(), "x version 3 uses module name livepatch_x_2, as version 2 does, which is loaded") {
		t.Fatalf("upgrade reusing the module name: %v", err)
	}
	if !sameMap(before, e.snapshot()) || e.kernelState() != kernel {
		t.Fatal("a refused apply changed state or kernel")
	}
	// An upgrade that covers the old version's functions supersedes it.
	e.apply(h, e.bundle("x", 3, []string{"f", "g", "h"}))
	if got := states(t, h); got != "x@3=applied x@2=replaced" {
		t.Fatalf("states: %s", got)
	}
	if got := e.kernelState(); got != "livepatch_x_3:on | modules livepatch_x_3" {
		t.Fatalf("kernel: %s", got)
	}
	// Undoing the upgrade puts version 2 back, where the host was
	// before it; a repeated rollback of version 3 takes nothing off.
	undone, back, err := h.Undo(context.Background(), "x")
	if err != nil || undone.Version != 3 || len(back) != 1 || back[0].Version != 2 {
		t.Fatalf("undo x: undone %+v, put back %+v, %v", undone, back, err)
	}
	if got := states(t, h); got != "x@2=applied x@3=reverted" {
		t.Fatalf("states after undoing the upgrade: %s", got)
	}
	if got := e.kernelState(); got != "livepatch_x_2:on | modules livepatch_x_2" {
		t.Fatalf("kernel after undoing the upgrade: %s", got)
	}
	if _, _, err := h.UndoVersion(context.Background(), "x", 3); !errors.Is(err, splice.ErrNotApplied) {
		t.Fatalf("undo version 3 again: %v, want ErrNotApplied", err)
	}
	if got := e.kernelState(); got != "livepatch_x_2:on | modules livepatch_x_2" {
		t.Fatalf("a repeated rollback changed the kernel: %s", got)
	}
	// The operator may go back after undoing version 2 as well.
	if _, back, err := h.Undo(context.Background(), "x"); err != nil || len(back) != 0 {
		t.Fatalf("undo x version 2: put back %v, %v", back, err)
	}
	e.apply(h, e.bundle("x", 1, []string{"f", "g"}))
}

// TestUndoAtomicReplacePutsBack: undoing an atomic-replace patch puts back
// the patches it superseded, in their order.
func TestUndoAtomicReplacePutsBack(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("a", 1, []string{"fa"}))
	e.apply(h, e.bundle("b", 1, []string{"fb"}))
	e.apply(h, e.bundle("cumulative", 1, []string{"fa", "fb"}, func(m *splice.Manifest) { m.Replace = true }))
	_, back, err := h.Undo(context.Background(), "cumulative")
	if err != nil || len(back) != 2 || back[0].ID != "a" || back[1].ID != "b" {
		t.Fatalf("undo cumulative: put back %v, %v", back, err)
	}
	if got := states(t, h); got != "a@1=applied b@1=applied cumulative@1=reverted" {
		t.Fatalf("states: %s", got)
	}
	if got := e.kernelState(); got != "livepatch_a_1:on livepatch_b_1:on | modules livepatch_a_1 livepatch_b_1" {
		t.Fatalf("kernel: %s", got)
	}
	// The stack order is kept: b above a.
	if _, _, err := h.Undo(context.Background(), "a"); !errors.Is(err, splice.ErrStack) {
		t.Fatalf("undo a under b: %v, want ErrStack", err)
	}
	// undo --all puts nothing back, not even at the next boot.
	e.apply(h, e.bundle("cumulative", 2, []string{"fa", "fb"}, func(m *splice.Manifest) { m.Replace = true }))
	if _, err := h.UndoAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	h = e.mustOpen()
	if done, err := h.Boot(context.Background()); err != nil || len(done) != 0 {
		t.Fatalf("boot after undo --all: %v %v", done, err)
	}
	if got := e.kernelState(); got != " | modules " {
		t.Fatalf("kernel after undo --all and a reboot: %q", got)
	}
}

// TestApplyRefuses: each bad bundle is refused with its reason, and neither
// the host's state nor the kernel changes.
func TestApplyRefuses(t *testing.T) {
	cases := []struct {
		name string
		make func(e *hostEnv) *splice.Bundle
		want error
		msg  string
	}{
		{"tampered module", func(e *hostEnv) *splice.Bundle {
			b := e.bundle("t", 1, []string{"f"})
			b.Module[len(b.Module)-10] ^= 1
			return b
		}, splice.ErrModuleDigest, "module sha256"},
		{"unsigned", func(e *hostEnv) *splice.Bundle {
			b := e.bundle("t", 1, []string{"f"})
			b.Signatures = nil
			return b
		}, signing.ErrNoSignatures, "no signatures"},
		{"wrong kernel release", func(e *hostEnv) *splice.Bundle {
			return e.bundle("t", 1, []string{"f"}, func(m *splice.Manifest) { m.Target.Release = "6.1.0-99-cloud-amd64" })
		}, splice.ErrTargetMismatch, "is for kernel 6.1.0-99-cloud-amd64; this host runs 6.1.0-56-cloud-amd64"},
		{"wrong build id", func(e *hostEnv) *splice.Bundle {
			return e.bundle("t", 1, []string{"f"}, func(m *splice.Manifest) { m.Target.BuildID = "00112233445566778899" })
		}, splice.ErrTargetMismatch, "is for kernel build 00112233445566778899"},
		{"wrong arch", func(e *hostEnv) *splice.Bundle {
			return e.bundle("t", 1, []string{"f"}, func(m *splice.Manifest) { m.Target.Arch = "aarch64" })
		}, splice.ErrTargetMismatch, "is for aarch64; this host is x86_64"},
		{"module vermagic for another kernel", func(e *hostEnv) *splice.Bundle {
			mod := fakemodule.Build(fakemodule.Options{Name: "livepatch_v", Livepatch: true, Functions: []string{"f"}, Vermagic: "6.1.0-57-cloud-amd64 SMP preempt mod_unload modversions "})
			return e.resign(splice.Manifest{ID: "v", Version: 1, Target: splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
				Module: splice.ModuleRef{Name: "livepatch_v"}, Functions: []string{"f"}, Created: now}, mod)
		}, splice.ErrTargetMismatch, "module vermagic is for kernel 6.1.0-57-cloud-amd64"},
		{"not a livepatch module", func(e *hostEnv) *splice.Bundle {
			mod := fakemodule.Build(fakemodule.Options{Name: "plain"})
			return e.resign(splice.Manifest{ID: "p", Version: 1, Target: splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
				Module: splice.ModuleRef{Name: "plain"}, Functions: []string{"f"}, Created: now}, mod)
		}, splice.ErrNotLivepatch, `module "plain" is not a livepatch module`},
		{"missing dependency", func(e *hostEnv) *splice.Bundle {
			mod := fakemodule.Build(fakemodule.Options{Name: "livepatch_d", Livepatch: true, Functions: []string{"f"}, Extra: map[string]string{"depends": "nf_tables"}})
			return e.resign(splice.Manifest{ID: "d", Version: 1, Target: splice.Target{Release: "6.1.0-56-cloud-amd64", Arch: "x86_64"},
				Module: splice.ModuleRef{Name: "livepatch_d"}, Functions: []string{"f"}, Created: now}, mod)
		}, splice.ErrTargetMismatch, "depends on module nf_tables, which is not loaded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newHostEnv(t)
			h := e.mustOpen()
			e.apply(h, e.bundle("base", 1, []string{"g"}))
			before, kernel := e.snapshot(), e.kernelState()
			_, err := h.Apply(context.Background(), tc.make(e), e.policy)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want %v with %q", err, tc.want, tc.msg)
			}
			if !splice.IsReject(err) {
				t.Errorf("%v is not a refusal", err)
			}
			if !sameMap(before, e.snapshot()) {
				t.Error("refusal changed the state or kernel folders")
			}
			if e.kernelState() != kernel {
				t.Error("refusal changed the kernel")
			}
		})
	}
}

func (e *hostEnv) resign(m splice.Manifest, mod []byte) *splice.Bundle {
	e.t.Helper()
	b, err := splice.New(m, mod)
	if err != nil {
		e.t.Fatal(err)
	}
	sig, _ := e.signer.Sign(b.Manifest, now.Add(-time.Minute))
	if _, err := b.AddSignature(sig); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
