package splice_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/splicefleet/splicefleet/kmod"
	"github.com/splicefleet/splicefleet/kmod/sim"
	"github.com/splicefleet/splicefleet/splice"
)

func (e *hostEnv) faults(f sim.Faults) {
	e.t.Helper()
	if err := sim.SetFaults(e.simDir, f); err != nil {
		e.t.Fatal(err)
	}
}

func TestKernelRefusesLoad(t *testing.T) {
	for errno, want := range map[string]error{
		"ENOEXEC":      kmod.ErrWrongKernel,
		"EKEYREJECTED": kmod.ErrKeyRejected,
		"EPERM":        kmod.ErrNotPermitted,
	} {
		t.Run(errno, func(t *testing.T) {
			e := newHostEnv(t)
			h := e.mustOpen()
			e.faults(sim.Faults{sim.AnyModule: {LoadErrno: errno}})
			p, err := h.Apply(context.Background(), e.bundle("k", 1, []string{"f"}), e.policy)
			if !errors.Is(err, want) {
				t.Fatalf("error %v, want %v", err, want)
			}
			if p == nil || p.State != splice.StateFailed || !strings.Contains(p.Reason, "load livepatch_k_1") {
				t.Fatalf("patch %+v", p)
			}
			if got := e.kernelState(); got != " | modules " {
				t.Fatalf("kernel: %q", got)
			}
			// Once the kernel accepts it, applying again works.
			e.faults(nil)
			e.apply(h, e.bundle("k", 1, []string{"f"}))
		})
	}
}

func TestStalledTransitionIsReversed(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.faults(sim.Faults{sim.AnyModule: {Never: true}})
	p, err := h.Apply(context.Background(), e.bundle("s", 1, []string{"f"}), e.policy)
	var te *kmod.TransitionError
	if !errors.As(err, &te) || !te.Enabling || !te.Reverted || len(te.Blockers) == 0 {
		t.Fatalf("error %v (%T)", err, err)
	}
	if p.State != splice.StateFailed || !strings.Contains(p.Reason, "transition did not complete") || !strings.Contains(p.Reason, "blocked by") {
		t.Fatalf("patch %+v", p)
	}
	if got := e.kernelState(); got != " | modules " {
		t.Fatalf("kernel after a reversed transition: %q", got)
	}
}

func TestTimedTransitionsComplete(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.faults(sim.Faults{sim.AnyModule: {TransitionMillis: 20}})
	e.apply(h, e.bundle("a", 1, []string{"f"}))
	if _, _, err := h.Undo(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if got := states(t, h); got != "a@1=reverted" {
		t.Fatalf("states %s", got)
	}
}

func TestBootReappliesOnTheSameBuild(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("a", 1, []string{"fa"}))
	e.apply(h, e.bundle("b", 1, []string{"fb"}))
	h.Close()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	h = e.mustOpen()
	v, _ := h.View()
	for _, p := range v.Patches {
		if p.State != splice.StateApplied || p.InKernel {
			t.Fatalf("after reboot, before boot: %+v", p)
		}
	}
	done, err := h.Boot(context.Background())
	if err != nil || len(done) != 2 || done[0].ID != "a" || done[1].ID != "b" {
		t.Fatalf("boot: %v %v", done, err)
	}
	if got := e.kernelState(); got != "livepatch_a_1:on livepatch_b_1:on | modules livepatch_a_1 livepatch_b_1" {
		t.Fatalf("kernel after boot: %s", got)
	}
	// A second boot run has nothing to do.
	if done, err := h.Boot(context.Background()); err != nil || len(done) != 0 {
		t.Fatalf("second boot: %v %v", done, err)
	}
}

func TestRebootOnAnotherBuildIsNotApplicable(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("a", 1, []string{"fa"}))
	h.Close()
	if err := sim.Reboot(e.simDir, "0123456789abcdef0123"); err != nil {
		t.Fatal(err)
	}
	h = e.mustOpen()
	done, err := h.Boot(context.Background())
	if err != nil || len(done) != 0 {
		t.Fatalf("boot: %v %v", done, err)
	}
	if got := states(t, h); got != "a@1=not_applicable" {
		t.Fatalf("states %s", got)
	}
	if got := e.kernelState(); got != " | modules " {
		t.Fatalf("kernel: %q", got)
	}
}

// TestCrashLoopGuard: a host that goes down during an apply's health window
// does not re-apply that patch at boot; the others come back.
func TestCrashLoopGuard(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("good", 1, []string{"fg"}))
	h.Close()

	// The host dies while "bad" is in its health window: the step hook
	// stops the apply there, as a crash would.
	func() {
		h2, err := e.open(func(c *splice.HostConfig) {
			c.HealthWindow = time.Hour
			c.StepHook = func(step string) {
				if step == "apply:applied" {
					panic("host went down")
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer h2.Close()
		defer func() { _ = recover() }()
		_, _ = h2.Apply(context.Background(), e.bundle("bad", 1, []string{"fb"}), e.policy)
		t.Fatal("apply did not stop at the hook")
	}()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	h = e.mustOpen()
	done, err := h.Boot(context.Background())
	if err != nil || len(done) != 1 || done[0].ID != "good" {
		t.Fatalf("boot: %v %v", done, err)
	}
	v, _ := h.View()
	var bad *splice.PatchView
	for i := range v.Patches {
		if v.Patches[i].ID == "bad" {
			bad = &v.Patches[i]
		}
	}
	if bad == nil || bad.State != splice.StateFailed || !strings.Contains(bad.Reason, "crash-loop guard") || bad.InKernel || bad.Interrupted() {
		t.Fatalf("bad patch: %+v", bad)
	}
	if got := e.kernelState(); got != "livepatch_good_1:on | modules livepatch_good_1" {
		t.Fatalf("kernel: %s", got)
	}
	h.Close()
	// Boot opened the host without a callback: the verdict waits in the
	// journal for a host opened with one, which hears it once.
	var heard []splice.Guarded
	listen := func(c *splice.HostConfig) { c.OnCrashLoopGuard = func(g splice.Guarded) { heard = append(heard, g) } }
	for range 2 {
		h2, err := e.open(listen)
		if err != nil {
			t.Fatal(err)
		}
		h2.Close()
	}
	if len(heard) != 1 || heard[0].ID != "bad" || heard[0].Version != 1 {
		t.Fatalf("crash-loop guard verdicts heard: %+v, want bad version 1 once", heard)
	}
	h = e.mustOpen()
	// The operator can apply it again by hand.
	e.apply(h, e.bundle("bad", 1, []string{"fb"}))
}

// A process killed mid-apply (the kernel did not restart) is reconciled
// from the kernel: what the kernel runs is applied.
func TestReconcileAfterProcessCrash(t *testing.T) {
	e := newHostEnv(t)
	func() {
		h, err := e.open(func(c *splice.HostConfig) {
			c.StepHook = func(step string) {
				if step == "apply:loaded" {
					panic("killed")
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		defer func() { _ = recover() }()
		_, _ = h.Apply(context.Background(), e.bundle("a", 1, []string{"f"}), e.policy)
	}()
	h := e.mustOpen()
	if got := states(t, h); got != "a@1=applied" {
		t.Fatalf("states %s", got)
	}
	if _, err := h.Apply(context.Background(), e.bundle("a", 1, []string{"f"}), e.policy); !errors.Is(err, splice.ErrAlreadyApplied) {
		t.Fatalf("re-apply after crash: %v", err)
	}
}

// TestApplyInterruptedBeforeLoad: a process killed after journaling an
// apply and before the kernel loaded the module leaves the patch failed
// as interrupted (Patch.Interrupted), which the agent takes as "apply it
// again", and an apply by hand then succeeds.
func TestApplyInterruptedBeforeLoad(t *testing.T) {
	e := newHostEnv(t)
	e.crashDuring("apply:journaled", func(h *splice.Host) {
		_, _ = h.Apply(context.Background(), e.bundle("a", 1, []string{"f"}), e.policy)
	})
	h := e.mustOpen()
	v, err := h.View()
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Patches) != 1 || !v.Patches[0].Interrupted() || v.Patches[0].Reason != splice.ReasonInterruptedBeforeLoad || v.Patches[0].InKernel {
		t.Fatalf("after the kill: %+v", v.Patches)
	}
	e.apply(h, e.bundle("a", 1, []string{"f"}))
	if got := states(t, h); got != "a@1=applied" {
		t.Fatalf("states %s", got)
	}
	v, _ = h.View()
	if v.Patches[0].Interrupted() {
		t.Fatalf("an applied patch says it was interrupted: %+v", v.Patches[0])
	}
}

func TestStateDirectoryLock(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	_, err := e.open()
	if !errors.Is(err, splice.ErrLocked) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second open: %v", err)
	}
	h.Close()
	h2 := e.mustOpen()
	h2.Close()
}

func TestKernelWithoutLivepatch(t *testing.T) {
	e := newHostEnv(t)
	if err := sim.Init(e.simDir, sim.Config{NoLivepatch: true}); err != nil {
		t.Fatal(err)
	}
	h, err := e.open()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.Apply(context.Background(), e.bundle("a", 1, []string{"f"}), e.policy)
	if !errors.Is(err, splice.ErrNoLivepatch) {
		t.Fatalf("apply: %v", err)
	}
}

func TestLiveSummary(t *testing.T) {
	e := newHostEnv(t)
	if got, err := splice.LiveSummary(e.stateDir); err != nil || got != nil {
		t.Fatalf("no journal: %v %v", got, err)
	}
	h := e.mustOpen()
	e.apply(h, e.bundle("a", 1, []string{"fa"}))
	e.apply(h, e.bundle("b", 2, []string{"fb"}))
	if _, _, err := h.Undo(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	e.apply(h, e.bundle("c", 1, []string{"fc"}))
	got, err := splice.LiveSummary(e.stateDir)
	if err != nil || strings.Join(got, ",") != "a@1,c@1" {
		t.Fatalf("summary %v %v", got, err)
	}
}

// TestCrashLoopGuardPutsBackTheReplacedVersion: version 2 of a patch
// replaced version 1 and the host died in its health window; after the
// reboot the guard keeps version 2 off and version 1, which it had
// replaced, comes back.
func TestCrashLoopGuardPutsBackTheReplacedVersion(t *testing.T) {
	e := newHostEnv(t)
	h := e.mustOpen()
	e.apply(h, e.bundle("x", 1, []string{"f"}))
	h.Close()
	func() {
		h2, err := e.open(func(c *splice.HostConfig) {
			c.HealthWindow = time.Hour
			c.StepHook = func(step string) {
				if step == "apply:retired" {
					panic("host went down")
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer h2.Close()
		defer func() { _ = recover() }()
		_, _ = h2.Apply(context.Background(), e.bundle("x", 2, []string{"f"}), e.policy)
		t.Fatal("apply did not stop at the hook")
	}()
	if err := sim.Reboot(e.simDir, ""); err != nil {
		t.Fatal(err)
	}
	h = e.mustOpen()
	done, err := h.Boot(context.Background())
	if err != nil || len(done) != 1 || done[0].ID != "x" || done[0].Version != 1 {
		t.Fatalf("boot: %v %v", done, err)
	}
	if got := states(t, h); !strings.Contains(got, "x@1=applied") || !strings.Contains(got, "x@2=failed") {
		t.Fatalf("states: %s", got)
	}
	if got := e.kernelState(); got != "livepatch_x_1:on | modules livepatch_x_1" {
		t.Fatalf("kernel: %s", got)
	}
}

// crashDuring runs fn on a host whose process "dies" (the step hook
// panics) right after step, then abandons that host as a killed process
// would, without any further write.
func (e *hostEnv) crashDuring(step string, fn func(h *splice.Host)) {
	e.t.Helper()
	h, err := e.open(func(c *splice.HostConfig) {
		c.StepHook = func(s string) {
			if s == step {
				panic("killed at " + s)
			}
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	defer h.Close()
	defer func() {
		if r := recover(); r == nil {
			e.t.Fatalf("the process did not reach %s", step)
		}
	}()
	fn(h)
}

// TestCrashBetweenLoadAndRetire: the process dies after the kernel took an
// upgrade or an atomic-replace patch but before the patches it supersedes
// were journaled replaced. The next open finishes the retire: the host ends
// as an uninterrupted apply leaves it, and undoing the new patch puts the
// old one back.
func TestCrashBetweenLoadAndRetire(t *testing.T) {
	for _, step := range []string{"apply:loaded", "apply:transitioned", "apply:applied"} {
		t.Run("upgrade/"+step, func(t *testing.T) {
			e := newHostEnv(t)
			h := e.mustOpen()
			e.apply(h, e.bundle("x", 1, []string{"f"}))
			h.Close()
			e.crashDuring(step, func(h *splice.Host) { _, _ = h.Apply(context.Background(), e.bundle("x", 2, []string{"f"}), e.policy) })
			h = e.mustOpen()
			if got := states(t, h); got != "x@2=applied x@1=replaced" {
				t.Fatalf("states after the crash: %s", got)
			}
			if got := e.kernelState(); got != "livepatch_x_2:on | modules livepatch_x_2" {
				t.Fatalf("kernel after the crash: %s", got)
			}
			if _, err := h.Apply(context.Background(), e.bundle("x", 2, []string{"f"}), e.policy); !errors.Is(err, splice.ErrAlreadyApplied) {
				t.Fatalf("retry: %v", err)
			}
			_, back, err := h.Undo(context.Background(), "x")
			if err != nil || len(back) != 1 || back[0].Version != 1 {
				t.Fatalf("undo x: put back %v, %v", back, err)
			}
			if got := e.kernelState(); got != "livepatch_x_1:on | modules livepatch_x_1" {
				t.Fatalf("kernel after undoing the upgrade: %s", got)
			}
		})
		t.Run("replace/"+step, func(t *testing.T) {
			e := newHostEnv(t)
			h := e.mustOpen()
			e.apply(h, e.bundle("a", 1, []string{"fa"}))
			e.apply(h, e.bundle("b", 1, []string{"fb"}))
			h.Close()
			e.crashDuring(step, func(h *splice.Host) {
				_, _ = h.Apply(context.Background(), e.bundle("cum", 1, []string{"fa", "fb"}, func(m *splice.Manifest) { m.Replace = true }), e.policy)
			})
			h = e.mustOpen()
			if got := states(t, h); got != "cum@1=applied a@1=replaced b@1=replaced" {
				t.Fatalf("states after the crash: %s", got)
			}
			if got := e.kernelState(); got != "livepatch_cum_1:on | modules livepatch_cum_1" {
				t.Fatalf("kernel after the crash: %s", got)
			}
			_, back, err := h.Undo(context.Background(), "cum")
			if err != nil || len(back) != 2 {
				t.Fatalf("undo cum: put back %v, %v", back, err)
			}
			if got := e.kernelState(); got != "livepatch_a_1:on livepatch_b_1:on | modules livepatch_a_1 livepatch_b_1" {
				t.Fatalf("kernel after undoing the replace: %s", got)
			}
		})
	}
}

// TestCrashDuringUndoPutBack: the process dies after an upgrade was undone
// but before the older version it had replaced is back. The next open
// finishes the put-back, as the undo would have.
func TestCrashDuringUndoPutBack(t *testing.T) {
	// undo:reverted is the undone patch's last write; the apply steps
	// are those of loading the older version again.
	for _, step := range []string{"undo:reverted", "apply:journaled", "apply:loaded", "apply:applied"} {
		t.Run(step, func(t *testing.T) {
			e := newHostEnv(t)
			h := e.mustOpen()
			e.apply(h, e.bundle("x", 1, []string{"f"}))
			e.apply(h, e.bundle("x", 2, []string{"f"}))
			h.Close()
			e.crashDuring(step, func(h *splice.Host) { _, _, _ = h.Undo(context.Background(), "x") })
			h = e.mustOpen()
			if got := states(t, h); got != "x@1=applied x@2=reverted" {
				t.Fatalf("states after the crash: %s", got)
			}
			if got := e.kernelState(); got != "livepatch_x_1:on | modules livepatch_x_1" {
				t.Fatalf("kernel after the crash: %s", got)
			}
			v, err := h.View()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range v.Patches {
				if p.ReplacedBy != "" {
					t.Errorf("%s version %d is %s and still says it is replaced by %s", p.ID, p.Version, p.State, p.ReplacedBy)
				}
			}
		})
	}
}

// TestReapplyOfAReplacedPatchThatFails: x@1 was upgraded to x@2, and x@2
// replaced by an atomic-replace patch. Applying x@2 again on top, an apply
// that the kernel refuses or that a crash cuts short before the load
// leaves x@2 replaced as before, so undoing the atomic-replace patch
// still puts x@2 back. (Found by `make soak`: the cut-short apply left
// x@2 failed and x@1 replaced by it, so the undo would have put nothing
// back.)
func TestReapplyOfAReplacedPatchThatFails(t *testing.T) {
	setup := func(t *testing.T) *hostEnv {
		e := newHostEnv(t)
		h := e.mustOpen()
		e.apply(h, e.bundle("x", 1, []string{"f"}))
		e.apply(h, e.bundle("x", 2, []string{"f"}))
		e.apply(h, e.bundle("cum", 1, []string{"f", "g"}, func(m *splice.Manifest) { m.Replace = true }))
		h.Close()
		return e
	}
	const before = "cum@1=applied x@1=replaced x@2=replaced"
	check := func(t *testing.T, e *hostEnv, h *splice.Host) {
		t.Helper()
		if got := states(t, h); got != before {
			t.Fatalf("states: %s, want as before: %s", got, before)
		}
		if got := e.kernelState(); got != "livepatch_cum_1:on | modules livepatch_cum_1" {
			t.Fatalf("kernel: %s", got)
		}
		_, back, err := h.Undo(context.Background(), "cum")
		if err != nil || len(back) != 1 || back[0].ID != "x" || back[0].Version != 2 {
			t.Fatalf("undo cum: put back %v, %v; want x@2", back, err)
		}
		if got := e.kernelState(); got != "livepatch_x_2:on | modules livepatch_x_2" {
			t.Fatalf("kernel after the undo: %s", got)
		}
	}
	t.Run("refused", func(t *testing.T) {
		e := setup(t)
		e.faults(sim.Faults{"livepatch_x_2": {LoadErrno: "EBUSY"}})
		h := e.mustOpen()
		defer h.Close()
		if _, err := h.Apply(context.Background(), e.bundle("x", 2, []string{"f"}), e.policy); err == nil {
			t.Fatal("the kernel refused the module, and the apply succeeded")
		}
		e.faults(sim.Faults{})
		check(t, e, h)
	})
	t.Run("cut short", func(t *testing.T) {
		e := setup(t)
		e.crashDuring("apply:journaled", func(h *splice.Host) {
			_, _ = h.Apply(context.Background(), e.bundle("x", 2, []string{"f"}), e.policy)
		})
		h := e.mustOpen()
		defer h.Close()
		check(t, e, h)
	})
}
